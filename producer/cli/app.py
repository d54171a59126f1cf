"""The `producer` command group (typer): the app, what every command shares (console, exit codes,
options, the Redis session, the watchdog), and one way to fail. Each command lives in a module of
its own in this package and imports what it uses when it runs, so that `--help` and `--version` pay
only for typer (producer/cli/__init__.py is the entry point)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from producer import embedded, session
from producer.session import dispatcher_for as dispatcher_for  # the commands take it from here
from producer.session import store_for as store_for  # the commands take it from here
from producer.terminal_text import escape as escape  # the commands take it from here
from producer.walk import Walks
from producer.walk import check_dir as check_dir  # the commands take it from here
from shared.core.exceptions import AgentqError, InvalidInput, RunTimedOut, ServiceUnavailable, StartInterrupted
from shared.core.secrets import shown_url

if TYPE_CHECKING:
    from rich.console import Console

    from shared.ports import Storage
    from shared.settings import Settings


def _readable_help() -> None:
    """typer 0.2x writes an argument as `{directory}` and an option's value as `<list[str]>`:
    here as click always did and as people read them, NAME in capitals (`DIR`, `RUN_ID`, `LABEL`
    where a command names its metavar; otherwise the parameter's own name)."""
    from typer import core

    def usage_name(self: Any) -> str:
        name = str(self.metavar or (self.name or "").upper())
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def value_name(self: Any, _ctx: Any) -> str:
        return str(self.metavar or (self.name or "").upper())

    def listed_name(self: Any) -> str:  # an argument in the Arguments list: its name once (not `DIR DIR`)
        return str(self.metavar or (self.name or "").upper()) + ("..." if self.nargs != 1 else "")

    core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    core.TyperArgument._rich_display_name = listed_name  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    core._TyperParameter.display_type = value_name  # type: ignore[method-assign, assignment]


_readable_help()

app = typer.Typer(
    help="Sync AutoGen component trees into AutoGen Studio through Celery workers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# Output that goes to a file or a pipe is not cut to rich's 80 columns (tables cut labels mid-word
# there): this wide, unless COLUMNS says otherwise
PIPED_WIDTH = 200


def _width(stream: object) -> int | None:
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or os.environ.get("COLUMNS"):
        return None  # rich asks the terminal, or reads COLUMNS
    return PIPED_WIDTH


@cache
def console() -> Console:
    from rich.console import Console

    return Console(width=_width(sys.stdout))


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, width=_width(sys.stderr))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"producer (agentq) {version('agentq')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Sync AutoGen component trees into AutoGen Studio through Celery workers, and run workflows."""


class Exit:
    """Exit codes, one per kind of failure (README, "Exit codes")."""

    OK = 0
    PARTIAL = 1  # the run finished, but some components or tasks failed
    CONFIG = 2  # bad input or usage: nothing was enqueued
    UNAVAILABLE = 3  # Redis, Studio, a worker or another service could not be reached or started
    TIMEOUT = 4  # the run did not finish within --timeout
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells say it


RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis URL for run state, and the broker unless BROKER_URL is set (env REDIS_URL); unset: embedded local Redis",
    ),
]
# for the commands that act on a cluster's runs (cancel, monitor): the embedded Redis is only its command's
ClusterRedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis URL of the cluster's run state (env REDIS_URL); an embedded Redis lives only while its command runs",
    ),
]
StudioUrl = Annotated[str | None, typer.Option("--studio-url", help="AutoGen Studio base URL (env STUDIO_URL)")]
StudioUser = Annotated[
    str | None, typer.Option("--studio-user-id", help="Studio user id the rows belong to (env STUDIO_USER_ID)")
]


def _gallery_name(value: str | None) -> str | None:
    if value and not value.strip():  # "" is the default: the folder's name
        raise InvalidInput(f"--gallery {value!r}: a gallery entry's name cannot be blank")
    return value


Gallery = Annotated[
    str | None,
    typer.Option(
        "--gallery", help="Gallery entry name for the tree (default: the folder's name)", callback=_gallery_name
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
LocalStudio = Annotated[
    bool,
    typer.Option(
        "--local-studio",
        help="Use the local AutoGen Studio (`producer studio up`'s, or one started for this command; data in the cache dir)",
    ),
]


@contextmanager
def redis_session(
    settings: Settings, services: embedded.LocalServices, quiet: bool
) -> Iterator[tuple[Storage, Settings]]:
    """producer/session.py's, said on stderr unless `quiet`."""
    say = None if quiet else lambda line: err().print(escape(line), soft_wrap=True)
    with session.redis_session(settings, services, say) as (store, settings):
        try:
            yield store, settings
        except StartInterrupted as exc:  # said with the run it ended
            raise Interrupted(exc.run_id, goes_on=False, started=False) from None


def check_seconds(option: str, value: float | None, finite: bool = True) -> None:
    """A number of seconds above 0 (`inf` too, where `finite` is false), or InvalidInput naming the option."""
    if value is not None and (math.isnan(value) or value <= 0 or (finite and math.isinf(value))):
        raise InvalidInput(f"{option} {value:g}: expected a number of seconds above 0")


def say_watchdog(line: str) -> None:
    """What the watchdog has to say while a run is waited for (lost messages sent again, a stall)."""
    err().print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def start_local_studio(settings: Settings, services: embedded.LocalServices) -> str:
    """--local-studio: the Studio `producer studio up` keeps running, or one for this command; its URL."""
    say = lambda line: err().print(escape(line), soft_wrap=True)  # noqa: E731
    return embedded.local_studio(
        services, settings.cache_dir / "studio", settings.local_studio_port, settings.autogenstudio_bin, say
    )


def start_local_worker(settings: Settings, services: embedded.LocalServices) -> None:
    """The embedded default's worker, and its exporter (so `producer monitor` shows the run) where
    EXPORTER_PORT is free."""
    assert settings.redis_url is not None
    services.add_worker(embedded.start_worker(settings.redis_url, log_path=settings.cache_dir / "worker.log"))
    err().print(f"Started a local worker (log: {escape(str(settings.cache_dir / 'worker.log'))}).")
    port = settings.exporter_port
    if embedded.port_free(port):
        log = settings.cache_dir / "exporter.log"
        # the Studio this command uses (--local-studio's, --studio-url's), not the default, is the one it probes
        env = {"STUDIO_URL": settings.studio_url}
        services.add_process(embedded.start_exporter(settings.redis_url, port, env=env, log_path=log, wait=False))
        err().print(f"Metrics at http://127.0.0.1:{port}/metrics (`producer monitor` shows them) while this runs.")
    if settings.flower:
        start_local_flower(settings, services)


def start_local_flower(settings: Settings, services: embedded.LocalServices) -> None:
    """--flower: Flower beside the embedded worker, behind basic auth. Without FLOWER_BASIC_AUTH its
    password is made here and kept in a file only the user reads: never printed, never logged."""
    import secrets

    assert settings.redis_url is not None
    port = settings.flower_port
    if not embedded.port_free(port):
        err().print(f"[yellow]warning:[/yellow] FLOWER_PORT {port} is taken: no Flower for this command")
        return
    where = "FLOWER_BASIC_AUTH"
    if settings.flower_basic_auth is not None:
        auth = settings.flower_basic_auth.get_secret_value()
    else:
        auth, saved = f"producer:{secrets.token_urlsafe(16)}", settings.cache_dir / "flower.auth"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.touch(mode=0o600)
        saved.chmod(0o600)
        saved.write_text(auth + "\n")
        where = f"user producer, the password in {saved}"
    log = settings.cache_dir / "flower.log"
    services.add_process(embedded.start_flower(settings.redis_url, port, auth, log_path=log))
    err().print(f"Flower at http://127.0.0.1:{port} ({escape(where)}) while this runs.")


LAST = "last"  # the run id that stands for the newest run
SIGNALLED = (128 + signal.SIGTERM, 128 + signal.SIGHUP)  # the exit codes of producer/cli/__init__.py's _terminated


def what_becomes(run_id: str, goes_on: bool, named: bool = True) -> str:
    """What becomes of a run its command stops waiting for (`named`: said with its id, else "it")."""
    run = f"run {run_id}" if named else "it"
    if goes_on:
        return (
            f"{run} goes on on the workers: follow it with `producer status {run_id}`, "
            f"cancel it with `producer cancel {run_id}`"
        )
    return f"{run} stops with the embedded Redis and worker; run the command again to pick up what is cached"


class Interrupted(AgentqError):
    """Ctrl-C while a command waited for its run, or started it: says which run, and what became of it."""

    def __init__(self, run_id: str, goes_on: bool, started: bool = True) -> None:
        if started:
            super().__init__(f"interrupted: {what_becomes(run_id, goes_on)}")
        else:
            super().__init__(f"interrupted: run {run_id} ended before its start reached the broker; nothing of it ran")


@contextmanager
def interruptible(run_id: str, embedded_default: bool) -> Iterator[None]:
    """The wait for `run_id`: Ctrl-C ends it saying what became of the run (exit code 130), as
    does a `--timeout` or a stall that ends the wait."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(run_id, goes_on=not embedded_default) from None
    except RunTimedOut as exc:
        raise RunTimedOut(f"{exc}; {what_becomes(run_id, not embedded_default, named=False)}") from None
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        said = _redis_failed(exc)
        raise ServiceUnavailable(f"{said}; {what_becomes(run_id, not embedded_default)}") from None
    except SystemExit as exc:
        if exc.code in SIGNALLED:  # `kill`, `timeout`: said as Ctrl-C is, with the signal's exit code
            with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no line
                _fail([str(Interrupted(run_id, goes_on=not embedded_default))], int(exc.code))
        raise


def stored_report_of(
    redis_url: str | None, build: Callable[[Storage, str], dict[str, Any] | None], run_id: str, what: str
) -> dict[str, Any]:
    """The report `build(store, run_id)` makes of a stored run; `last` is the newest run."""
    from shared.settings import load_settings

    if not run_id.strip():
        raise InvalidInput("the run id is blank: give one that `producer runs` lists, or `last`")
    settings = load_settings(redis_url=redis_url)
    with embedded.LocalServices() as services, redis_session(settings, services, quiet=True) as (store, settings):
        if run_id == LAST:
            run_id = store.last_run_id() or ""
            if not run_id:
                raise InvalidInput("no runs yet: none is kept in this Redis (`producer runs` lists them)")
        report = build(store, run_id)
    if report is None:
        raise InvalidInput(f"no {what} {run_id} (unknown or expired; `producer runs` lists the runs kept)")
    return report


def _said(exc: Exception) -> list[str]:
    """The lines that say a failure: one per error of a workflow that does not validate."""
    errors = getattr(exc, "errors", None)
    return [str(e) for e in errors] if isinstance(errors, list) and errors else [str(exc)]


def _fail(lines: list[str], code: int) -> NoReturn:
    """Say a failure on stderr, and with --json also as JSON on stdout (stdout is never left empty
    for a program that reads it), then exit with the failure's code."""
    for line in lines:
        err().print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
    args = sys.argv[1:]
    if "--json" in (args[: args.index("--")] if "--" in args else args):
        typer.echo(json.dumps({"error": "\n".join(lines), "errors": lines, "exit_code": code}))
    raise SystemExit(code)


def _usage_error() -> type[Exception]:
    """click's ClickException, the root of typer.BadParameter (typer 0.2x ships click inside itself)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main(walks: Walks | None = None) -> None:
    """The `producer` command: failures we can name end in one line and their exit code, never a
    traceback. `walks`: the trees walked before the commands were imported (producer/cli/__init__.py)."""
    usage_error = _usage_error()
    try:
        code = app(standalone_mode=False, obj=walks)  # standalone off: a usage error also reaches --json's reader
    except usage_error as exc:  # a missing argument, an unknown option, a value of the wrong type
        _usage_failed(exc)
    except typer.Abort:
        err().print("Aborted!")
        raise SystemExit(1) from None
    except (AgentqError, TimeoutError) as exc:
        _fail(*_failure(exc))
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        _fail([_redis_failed(exc)], Exit.UNAVAILABLE)
    if code == Exit.INTERRUPTED:  # typer's word for a Ctrl-C no command said: before a run, or after it ended
        _fail(["interrupted (Ctrl-C); `producer runs` lists any run the command started"], Exit.INTERRUPTED)
    raise SystemExit(code or 0)


def _redis_failed(exc: Exception) -> str:
    """A Redis error as said: one Redis answered (a full Redis, a refused command) is no lost Redis."""
    redis = sys.modules["redis"]
    how = "answered with an error" if isinstance(exc, redis.ResponseError) else "is unreachable"
    return f"Redis at {shown_url(_redis_named())} {how}: {exc}"


def _redis_named() -> str:
    """The Redis the command was told to use: --redis-url (read from argv, as --json is above: the
    parsed options are gone once the command raised), else REDIS_URL, else the embedded one."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--redis-url" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--redis-url="):
            return arg.removeprefix("--redis-url=")
    return os.environ.get("REDIS_URL") or "the embedded Redis"


def _usage_failed(exc: Exception) -> NoReturn:
    """click's own message and exit code; with --json, also as JSON on stdout."""
    if "--json" in sys.argv[1:]:
        _fail([exc.format_message()], exc.exit_code)  # type: ignore[attr-defined]
    exc.show()  # type: ignore[attr-defined]
    raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]


# (a failure, its exit code, whether each of its errors is a line of its own), the first that matches
FAILURES: tuple[tuple[type[Exception], int, bool], ...] = (
    (Interrupted, Exit.INTERRUPTED, False),
    (ServiceUnavailable, Exit.UNAVAILABLE, True),
    (InvalidInput, Exit.CONFIG, True),
    (TimeoutError, Exit.TIMEOUT, False),  # RunTimedOut is an AgentqError too
    (AgentqError, Exit.PARTIAL, True),
)


def _failure(exc: AgentqError | TimeoutError) -> tuple[list[str], int]:
    """The lines that say a failure, and its exit code."""
    code, each = next((code, each) for kind, code, each in FAILURES if isinstance(exc, kind))
    return (_said(exc) if each else [str(exc)]), code


def _is_redis_error(exc: Exception) -> bool:
    redis = sys.modules.get("redis")  # not imported: the error cannot be Redis's
    return redis is not None and isinstance(exc, redis.RedisError)


# the commands register themselves on `app` when imported, in the order `--help` lists them
# isort: off
from producer.cli import sync, watch, pull, runs, history, bench, team, monitor, studio  # noqa: E402, F401
# isort: on
