"""`producer watch`: a sync, then one per settled batch of changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from producer import embedded

if TYPE_CHECKING:
    from producer.watch import SyncLine, Watcher

from producer.cli import app as cli
from producer.cli.common import AS_CONFIGURED, Flower, Target, check_flower, target_options, with_local_studio


@cli.app.command()
@target_options()
def watch(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to watch")],
    debounce: Annotated[
        int,
        typer.Option("--debounce", min=10, max=60_000, help="Milliseconds with no further change before a sync starts"),
    ] = 100,
    local_studio: cli.LocalStudio = False,
    flower: Flower = False,
    target: Target = AS_CONFIGURED,
    as_json: cli.AsJson = False,
) -> None:
    """Sync the tree now and again each time its files settle after an edit; one line per sync.
    Ctrl-C stops it (exit 0) with the services it started."""
    import threading

    from producer.pipeline import Services
    from producer.scanner import ScanMemo
    from producer.watch import Watcher
    from shared.settings import check_store

    cli.check_dir(directory)
    settings = target.settings(flower=flower or None)
    check_store(settings)  # before a local Studio is started for nothing
    embedded_default = settings.redis_url is None
    check_flower(flower, embedded_default)
    stop = threading.Event()
    try:
        with embedded.LocalServices() as services:
            settings = with_local_studio(settings, services, local_studio)
            with cli.redis_session(settings, services, quiet=as_json) as (store, settings):
                if embedded_default:  # its own Redis: nobody else's worker listens there
                    cli.start_local_worker(settings, services)
                with_us = Services(settings, store, cache(lambda: cli.dispatcher_for(settings)), _warn, ScanMemo())
                say = _say_json if as_json else _say_text
                watcher = Watcher(directory, with_us, say, target.gallery, debounce)
                plain = not (embedded_default or local_studio or flower or target.any_given())
                with _handoff(watcher, settings.cache_dir, plain):
                    cli.err().print(f"Watching {cli.escape(str(directory))} (Ctrl-C stops).")
                    watcher.run(stop)
    except KeyboardInterrupt:
        stop.set()
    cli.err().print("Watch stopped.")
    raise typer.Exit(0)


@contextmanager
def _handoff(watcher: Watcher, cache_dir: Path, plain: bool) -> Iterator[None]:
    """A plain watch (REDIS_URL and Studio as configured, no flag) takes the plain `producer sync`s
    of its tree (producer/handoff.py), and leaves the no-change record a plain sync would."""
    from producer.handoff_server import HandoffServer, settings_differ
    from producer.sync_run import settings_names

    if not plain:
        yield
        return
    server = HandoffServer(watcher.root, cache_dir, settings_differ(settings_names()))
    watcher.handoff, watcher.remember = (server if server.start() else None), True
    try:
        yield
    finally:
        server.close()


def _say_json(line: SyncLine) -> None:
    typer.echo(json.dumps(line.as_json()))


def _say_text(line: SyncLine) -> None:
    cli.console().print(cli.escape(line.text()), soft_wrap=True, highlight=False)
    for problem in line.problems:
        cli.console().print(f"  {cli.escape(problem)}", soft_wrap=True, highlight=False)


def _warn(text: str) -> None:
    cli.err().print(f"[yellow]{cli.escape(text)}[/yellow]", soft_wrap=True)
