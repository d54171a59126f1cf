"""Turning a run's state into summaries: counts by outcome, per-node rows, rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from shared.store import Store

OUTCOMES = ("created", "updated", "unchanged", "validated", "failed", "skipped", "pending")


def outcome_of(state: dict[str, Any]) -> str:
    status = state.get("status")
    if status == "done":
        return str(state.get("outcome", "created"))
    if status == "cached":
        return "unchanged"
    if status in ("failed", "skipped"):
        return str(status)
    return "pending"


def run_report(store: Store, run_id: str) -> dict[str, Any] | None:
    meta = store.meta(run_id)
    if meta is None:
        return None
    nodes = store.node_states(run_id)
    counts = {o: 0 for o in OUTCOMES}
    for state in nodes.values():
        counts[outcome_of(state)] += 1
    requests = {k: int(v) for k, v in store.r.hgetall(store.run_key(run_id, "requests")).items()}
    finished = meta.get("finished")
    return {
        "run_id": run_id,
        "state": meta.get("state"),
        "tree": meta.get("tree"),
        "studio_url": meta.get("studio_url"),
        "gallery": meta.get("gallery_name"),
        "seconds": round(finished - meta["created"], 3) if finished else None,
        "counts": counts,
        "error": meta.get("error"),
        "studio_requests": requests,
        "nodes": dict(sorted(nodes.items())),
    }


def succeeded(report: dict[str, Any]) -> bool:
    return report["state"] == "finished" and not report["counts"]["failed"] and not report.get("error")


def studio_writes(report: dict[str, Any]) -> int:
    """Requests that change Studio's data (validation is a POST but writes nothing)."""
    return sum(v for k, v in report["studio_requests"].items() if not k.startswith("GET") and "/validate/" not in k)


def render_report(console: Console, report: dict[str, Any], verbose: bool = False) -> None:
    counts = report["counts"]
    table = Table(title=f"run {report['run_id']} — {report['tree']}")
    shown = [o for o in OUTCOMES if counts[o] or o in ("created", "updated", "unchanged", "failed", "skipped")]
    for outcome in shown:
        table.add_column(outcome, justify="right")
    table.add_row(*(str(counts[o]) for o in shown))
    console.print(table)
    rows = [(lbl, st) for lbl, st in report["nodes"].items() if verbose or st.get("status") in ("failed", "skipped")]
    if rows:
        detail = Table(show_lines=False)
        for col in ("component", "type", "file", "result", "detail"):
            detail.add_column(col, overflow="fold")
        for label, st in rows:
            text = st.get("error") or st.get("reason") or ""
            detail.add_row(label, st.get("type") or "-", st.get("path") or "-", outcome_of(st), text)
        console.print(detail)
    if report.get("error"):
        console.print(f"[red]{report['error']}[/red]")
    writes = studio_writes(report)
    state = report["state"] if report["seconds"] is None else f"{report['state']} in {report['seconds']:.2f} s"
    console.print(f"{state}; Studio requests: {sum(report['studio_requests'].values())} ({writes} writes)")
