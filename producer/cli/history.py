"""`producer runs` and `producer cancel`: the runs Redis keeps, newest first, and ending one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer import embedded
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from rich.table import Table

    from shared.ports import Dispatcher, RunStore

from producer.cli.app import (
    LAST,
    AsJson,
    ClusterRedisUrl,
    RedisUrl,
    app,
    console,
    dispatcher_for,
    escape,
    redis_session,
)
from producer.cli.common import echo_json


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _row(meta: dict[str, Any], now: float) -> dict[str, Any]:
    from shared.core.run_model import TERMINAL, RunKind, RunState  # with pydantic: not imported for --help

    counts: dict[str, int] = meta.get("counts", {})
    state = RunState.CANCELLED if meta.get("cancelled") else meta.get("state")
    return {
        "run_id": meta.get("run_id"),
        "kind": meta.get("kind", RunKind.SYNC),
        "state": state,
        "what": meta.get("workflow") or meta.get("tree"),
        "total": meta.get("total", 0),
        "ended": sum(counts.get(s, 0) for s in TERMINAL),
        "counts": counts,
        "error": meta.get("error"),  # why it ended early (interrupted, no broker ...)
        "created": meta.get("created"),
        "age_seconds": round(now - float(meta.get("created", now)), 1),
    }


@app.command()
def runs(
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, max=1000, help="How many of the newest runs to list (Redis keeps 1,000)"),
    ] = 20,
    redis_url: RedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """List the newest runs, syncs and workflows: kind, state, tasks ended of all, counts, age."""
    from shared.settings import load_settings

    settings = load_settings(redis_url=redis_url)
    with embedded.LocalServices() as services, redis_session(settings, services, quiet=True) as (store, _):
        now, rows = time.time(), [_row(m, time.time()) for m in store.recent_runs(limit)]
    if as_json:
        echo_json({"runs": rows})
    elif not rows:
        console().print("No runs kept in this Redis yet.")
    else:
        console().print(_table(rows, now))


def _table(rows: list[dict[str, Any]], now: float) -> Table:
    from rich.table import Table

    table = Table(title=f"{len(rows)} newest run(s)", title_justify="left")
    for column in ("run", "kind", "state", "ended", "failed", "skipped", "what", "age"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*_cells(row, now))
    return table


def _cells(row: dict[str, Any], now: float) -> tuple[str, ...]:
    return (
        escape(str(row["run_id"])),
        str(row["kind"]),
        escape(
            f"{row['state']}: {row['error']}" if row["error"] and row["error"] != row["state"] else str(row["state"])
        ),
        f"{row['ended']}/{row['total']}",
        str(row["counts"].get("failed", 0)),
        str(row["counts"].get("skipped", 0)),
        escape(str(row["what"] or "")),
        _age(now - float(row["created"] or now)),
    )


def cancel_and_revoke(store: RunStore, dispatcher: Dispatcher | None, run_id: str) -> dict[str, Any]:
    """Cancel `run_id` and revoke the messages of it still queued; what became of it, for people and --json."""
    meta, cancelled = store.cancel_run(run_id)
    if meta is None:
        raise InvalidInput(f"no run {run_id} (unknown or expired; `producer runs` lists the runs kept)")
    if not cancelled:
        return {"run_id": run_id, "cancelled": False, "message": f"run {run_id} had already ended: nothing to cancel"}
    revoked = dispatcher.revoke_run(run_id) if dispatcher is not None else 0
    counts = store.counts(run_id)
    running = counts.get("running", 0)
    return {
        "run_id": run_id,
        "cancelled": True,
        "revoked_messages": revoked,
        "skipped": counts.get("skipped", 0),
        "still_running": running,
        "message": f"run {run_id} cancelled: nothing new of it starts; {running} task(s) running end on their own",
    }


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id printed by sync or run, or `last`")],
    redis_url: ClusterRedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a run: its queued messages are revoked, nothing new of it starts, what runs ends on
    its own, its nodes not started are skipped and the run is marked cancelled (a sync writes no
    gallery entry)."""
    from shared.settings import load_settings

    if not run_id.strip():
        raise InvalidInput("the run id is blank: give one that `producer runs` lists, or `last`")
    settings = load_settings(redis_url=redis_url)
    if settings.redis_url is None:
        raise InvalidInput("cancel needs REDIS_URL: an embedded run ends with the command that started it (Ctrl-C)")
    with embedded.LocalServices() as services, redis_session(settings, services, quiet=True) as (store, settings):
        run_id = _run_id(store, run_id)
        outcome = cancel_and_revoke(store, dispatcher_for(settings), run_id)
    if as_json:
        echo_json(outcome)
    else:
        console().print(escape(outcome["message"]))


def _run_id(store: RunStore, run_id: str) -> str:
    """`run_id`, or the newest run's for `last`."""
    if run_id != LAST:
        return run_id
    newest = store.last_run_id()
    if not newest:
        raise InvalidInput("no runs yet: none is kept in this Redis")
    return newest
