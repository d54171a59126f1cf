"""`producer monitor`: the cluster in a terminal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from producer.monitor import Monitor
    from shared.ports import RunStore

from producer.cli.app import (
    ClusterRedisUrl,
    Exit,
    app,
    check_seconds,
    console,
    err,
    escape,
    store_for,
)
from producer.cli.common import echo_json


@app.command()
def monitor(
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between readings")] = 5.0,
    save_session: Annotated[
        Path | None, typer.Option("--save-session", help="Write what was seen (JSON) on exit")
    ] = None,
    exporter_url: Annotated[
        str | None, typer.Option("--exporter-url", help="Exporter base URL (env EXPORTER_URL)")
    ] = None,
    redis_url: ClusterRedisUrl = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one reading (two polls --refresh apart, for rates) as JSON and exit")
    ] = False,
) -> None:
    """Live terminal dashboard: hosts, workers, queues, Studio, throughput and alerts (Ctrl-C to quit)."""
    from producer.monitor import Monitor
    from shared.settings import load_settings

    check_seconds("--refresh", refresh)
    settings = load_settings(redis_url=redis_url, exporter_url=exporter_url)
    watcher = Monitor(settings.exporter_url)
    # a reading is not held up by Redis out of reach: said at once (the exporter says it too)
    quick = settings.model_copy(update={"redis_outage_seconds": min(settings.redis_outage_seconds, 2.0)})
    store = store_for(quick, settings.redis_url) if settings.redis_url else None
    if as_json:
        _one_reading(watcher, store, refresh, save_session)
    try:
        _live(watcher, store, refresh)
    except KeyboardInterrupt:
        pass
    finally:
        if save_session:
            _save(watcher, save_session)


def _one_reading(watcher: Monitor, store: RunStore | None, refresh: float, save_session: Path | None) -> NoReturn:
    """--json: two polls `refresh` apart (for rates), printed (and saved with --save-session);
    exit code 3 when the exporter was not reached, or could not read Redis."""
    watcher.poll()
    time.sleep(refresh)
    snapshot = watcher.poll()
    if save_session:
        _save(watcher, save_session)
    unreachable = any(alert["name"] in ("ExporterUnreachable", "RedisDown") for alert in snapshot.alerts)
    redis_down = any(alert["name"] == "RedisDown" for alert in snapshot.alerts)  # not waited for twice
    echo_json({**snapshot.__dict__, "recent_runs": [] if redis_down else _recent_runs(store)})
    raise typer.Exit(Exit.UNAVAILABLE if unreachable else Exit.OK)


def _live(watcher: Monitor, store: RunStore | None, refresh: float) -> None:
    """The dashboard, redrawn every `refresh` seconds until Ctrl-C."""
    from rich.live import Live

    with Live(console=console(), screen=False, auto_refresh=False) as live:
        while True:
            snapshot = watcher.poll()
            live.update(watcher.render(snapshot, _recent_runs(store)), refresh=True)
            time.sleep(refresh)


def _save(watcher: Monitor, save_session: Path) -> None:
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
