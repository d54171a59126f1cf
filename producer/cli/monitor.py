"""`producer monitor`: the cluster in a terminal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.core import json_text
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from shared.ports import RunStore

from producer.cli.app import (
    Exit,
    RedisUrl,
    app,
    check_seconds,
    console,
    err,
    escape,
    store_for,
)


@app.command()
def monitor(
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between readings")] = 5.0,
    save_session: Annotated[
        Path | None, typer.Option("--save-session", help="Write what was seen (JSON) on exit")
    ] = None,
    exporter_url: Annotated[
        str | None, typer.Option("--exporter-url", help="Exporter base URL (env EXPORTER_URL)")
    ] = None,
    redis_url: RedisUrl = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one reading (two polls --refresh apart, for rates) as JSON and exit")
    ] = False,
) -> None:
    """Live terminal dashboard: hosts, workers, queues, Studio, throughput and alerts (Ctrl-C to quit)."""
    from rich.live import Live

    from producer.monitor import Monitor
    from shared.settings import load_settings

    check_seconds("--refresh", refresh)
    settings = load_settings(redis_url=redis_url, exporter_url=exporter_url)
    watcher = Monitor(settings.exporter_url)
    store = store_for(settings, settings.redis_url) if settings.redis_url else None
    if as_json:
        watcher.poll()
        time.sleep(refresh)
        snapshot = watcher.poll()
        typer.echo(json_text.dumps({**snapshot.__dict__, "recent_runs": _recent_runs(store)}, indent=True))
        unreachable = any(alert["name"] == "ExporterUnreachable" for alert in snapshot.alerts)
        raise typer.Exit(Exit.UNAVAILABLE if unreachable else Exit.OK)
    try:
        with Live(console=console(), screen=False, auto_refresh=False) as live:
            while True:
                snapshot = watcher.poll()
                live.update(watcher.render(snapshot, _recent_runs(store)), refresh=True)
                time.sleep(refresh)
    except KeyboardInterrupt:
        pass
    finally:
        if save_session:
            try:
                watcher.save(str(save_session))
            except OSError as exc:
                raise InvalidInput(f"--save-session {save_session}: cannot write it: {exc.strerror or exc}") from None
            err().print(f"session saved to {escape(str(save_session))}")


def _recent_runs(store: RunStore | None) -> list[dict[str, Any]]:
    if store is None:
        return []
    try:
        return store.recent_runs()
    except store.errors:
        return []
