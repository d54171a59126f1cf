"""Pieces the commands that start a run share: their options, the local services they start, and
how they wait for a run and print its id or a JSON object."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer import session
from producer.cli.app import (
    Gallery,
    RedisUrl,
    StudioUrl,
    StudioUser,
    interruptible,
    start_local_studio,
    start_local_worker,
)
from shared.core import json_text
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from producer import embedded
    from producer.recovery import Watchdog
    from shared.ports import Dispatcher, RunStore
    from shared.settings import Settings

NoWait = Annotated[bool, typer.Option("--no-wait", help="Enqueue, print the run id and return")]
Timeout = Annotated[
    float | None,
    typer.Option(
        help="Seconds to wait for the run at most (default: as long as it moves; it fails when no node ends for STALL_SECONDS)"
    ),
]
Flower = Annotated[
    bool,
    typer.Option(
        "--flower",
        help="With the embedded default (no REDIS_URL): also start Flower on FLOWER_PORT (5555) while the command runs",
    ),
]
NO_WAIT_EMBEDDED = "--no-wait needs REDIS_URL: the embedded Redis and worker stop when this command ends"


@dataclass(frozen=True)
class Target:
    """Where `plan`, `sync`, `watch` and `pull` take a tree: --redis-url, --studio-url,
    --studio-user-id and --gallery, each None when not given (the environment's, or the default)."""

    redis_url: str | None = None
    studio_url: str | None = None
    studio_user_id: str | None = None
    gallery: str | None = None

    def settings(self, **overrides: object) -> Settings:
        """The settings, with the Redis, Studio and user given here (and `overrides`)."""
        from shared.settings import load_settings

        urls = {"redis_url": self.redis_url, "studio_url": self.studio_url, "studio_user_id": self.studio_user_id}
        return load_settings(**urls, **overrides)

    def any_given(self) -> bool:
        """Whether any of them was given a value (an empty one says nothing)."""
        return any(astuple(self))


AS_CONFIGURED = Target()  # no option given


# Target's options as typer declares them (producer/cli/app.py), in the order --help lists them
TARGET_OPTIONS = {"redis_url": RedisUrl, "studio_url": StudioUrl, "studio_user_id": StudioUser, "gallery": Gallery}


def target_options(redis: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command's `target: Target` parameter, shown by typer as the options --redis-url (unless
    `redis` is false), --studio-url, --studio-user-id and --gallery in its place; the command is
    called with them in one Target. (Typer reads a command's options from `inspect.signature`.)"""
    names = [name for name in TARGET_OPTIONS if redis or name != "redis_url"]
    options = [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=TARGET_OPTIONS[n])
        for n in names
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        params = [q for p in signature.parameters.values() for q in (options if p.name == "target" else [p])]

        @functools.wraps(command)
        def with_target(**given: Any) -> None:
            target = Target(**{name: given.pop(name, None) for name in names})
            command(**given, target=target)

        with_target.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        with_target.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return with_target

    return decorate


def with_local_studio(settings: Settings, services: embedded.LocalServices, local_studio: bool) -> Settings:
    """The settings, naming the local Studio (started if need be) when --local-studio asks for it."""
    from shared.settings import with_overrides

    if not local_studio:
        return settings
    return with_overrides(settings, studio_url=start_local_studio(settings, services))


def local_dispatcher(
    settings: Settings, services: embedded.LocalServices, embedded_default: bool
) -> Callable[[], Dispatcher]:
    """producer/session.py's, the embedded default's worker said as it starts (with its exporter)."""
    return session.local_dispatcher(settings, embedded_default, lambda: start_local_worker(settings, services))


def wait_for_run(
    store: RunStore,
    run_id: str,
    timeout: float | None,
    watch: Watchdog,
    embedded_default: bool,
    follow: Callable[[], None] | None,
) -> None:
    """Wait for the run quietly (`follow` None: --json) or as `follow` shows it; Ctrl-C says how."""
    from producer.run_wait import wait

    with interruptible(run_id, embedded_default):
        if follow is None:
            wait(store, run_id, timeout=timeout, watch=watch)
        else:
            follow()


def echo_run_id(run_id: str, as_json: bool) -> None:
    """--no-wait: the run id alone, or as a JSON object."""
    typer.echo(json.dumps({"run_id": run_id}) if as_json else run_id)


def echo_json(data: object) -> None:
    typer.echo(json_text.dumps(data, indent=True))


def check_flower(flower: bool, embedded_default: bool) -> None:
    """--flower starts the embedded default's Flower; a cluster's runs beside its workers."""
    if flower and not embedded_default:
        raise InvalidInput(
            "--flower needs the embedded default (no REDIS_URL): run `celery -A workers flower` beside your workers"
        )
