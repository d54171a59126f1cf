"""Turning a run's state into summaries: counts by outcome, per-node rows, rich tables."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.adapters.redis.keys import REQUESTS, RETRIES
from shared.core.run_model import UNSUCCESSFUL, NodeState, RunKind, RunMeta, RunState, Status

if TYPE_CHECKING:
    from shared.ports import RunStore

OUTCOMES = ("created", "updated", "unchanged", "validated", "deleted", "drifted", "failed", "skipped", "pending")


def outcome_of(state: NodeState) -> str:
    status = state.get("status")
    if status == Status.DONE:
        return str(state.get("outcome", "created"))
    if status == Status.CACHED:
        return "unchanged"
    if state.get("drifted"):
        return "drifted"  # edited in Studio since the sync wrote it, and left alone
    if status in UNSUCCESSFUL:
        return str(status)
    return Status.PENDING


def state_of(meta: RunMeta) -> str | None:
    """A run's state as reports say it: a cancelled run is finished, and said to be cancelled."""
    return RunState.CANCELLED if meta.get("cancelled") else meta.get("state")


def run_report(store: RunStore, run_id: str) -> dict[str, Any] | None:
    meta = store.meta(run_id)
    if meta is None:
        return None
    nodes = store.node_states(run_id)
    counts = {o: 0 for o in OUTCOMES}
    for state in nodes.values():
        counts[outcome_of(state)] += 1
    requests = store.tally(run_id, REQUESTS)
    finished = meta.get("finished")
    return {
        "run_id": run_id,
        "state": state_of(meta),
        "tree": meta.get("tree"),
        "studio_url": meta.get("studio_url"),
        "gallery": meta.get("gallery_name"),
        "seconds": round(finished - meta["created"], 3) if finished else None,
        "counts": counts,
        "error": meta.get("error"),
        "studio_requests": requests,
        "nodes": dict(sorted(nodes.items())),
    }


def stored_report(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """A run's report, whichever its kind: a workflow's (with `"kind": "workflow"`) or a sync's."""
    meta = store.meta(run_id)
    if meta is None:
        return None
    if meta.get("kind") == RunKind.WORKFLOW:
        report = workflow_report(store, run_id)
        return None if report is None else {"kind": RunKind.WORKFLOW, **report}
    report = run_report(store, run_id)
    return None if report is None else {"kind": RunKind.SYNC, **report}


def succeeded(report: dict[str, Any]) -> bool:
    counts = report["counts"]
    return (
        report["state"] == RunState.FINISHED
        and not counts["failed"]
        and not counts.get("drifted")
        and not report.get("error")
    )


def studio_writes(report: dict[str, Any]) -> int:
    """Requests that change Studio's data (validation is a POST but writes nothing)."""
    return sum(v for k, v in report["studio_requests"].items() if not k.startswith("GET") and "/validate/" not in k)


LABEL_WIDTH = 80  # a label or path longer than this is cut in tables (a hostile file's can be thousands)


def clipped(text: str, width: int = LABEL_WIDTH) -> str:
    """`text` cut to `width` characters, its end kept (where names differ); markup escaped."""
    return escape(text if len(text) <= width else "…" + text[-(width - 1) :])


def render_report(console: Console, report: dict[str, Any], verbose: bool = False) -> None:
    counts = report["counts"]
    table = Table(title=escape(f"sync run {report['run_id']} — {report['tree']}"))
    shown = [o for o in OUTCOMES if counts[o] or o in ("created", "updated", "unchanged", "failed", "skipped")]
    for outcome in shown:
        table.add_column(outcome, justify="right")
    table.add_row(*(str(counts[o]) for o in shown))
    console.print(table)
    rows = [(lbl, st) for lbl, st in report["nodes"].items() if verbose or st.get("status") in UNSUCCESSFUL]
    if rows:
        detail = Table(show_lines=False)
        for col in ("component", "type", "file", "result", "detail"):
            detail.add_column(col, overflow="fold")
        for label, st in rows:
            text = st.get("error") or st.get("reason") or ""
            path = st.get("path") or "-"
            detail.add_row(clipped(label), escape(st.get("type") or "-"), clipped(path), outcome_of(st), escape(text))
        console.print(detail)
    if report.get("error"):
        console.print(f"[red]{escape(report['error'])}[/red]")
    writes = studio_writes(report)
    state = report["state"] if report["seconds"] is None else f"{report['state']} in {report['seconds']:.2f} s"
    console.print(f"{state}; Studio requests: {sum(report['studio_requests'].values())} ({writes} writes)")


def workflow_report(store: RunStore, run_id: str) -> dict[str, Any] | None:
    meta = store.meta(run_id)
    if meta is None or meta.get("kind") != "workflow":
        return None
    states = store.node_states(run_id)
    outputs = store.outputs(run_id)
    transcripts = store.transcripts(run_id)
    order = {tid: i for i, tid in enumerate(store.run_list(run_id, "order"))}
    ranked = sorted(states, key=lambda t: (order.get(t, -1), t))
    tasks = {}
    for tid in ranked:
        st = states[tid]
        tasks[tid] = {
            "status": st.get("status"),
            "agent": st.get("agent"),
            "priority": st.get("priority"),
            "cached": st.get("status") == Status.CACHED,
            "seconds": st.get("seconds"),
            "started": st.get("started"),
            "finished": st.get("finished"),
            "prompt_tokens": st.get("prompt_tokens"),
            "completion_tokens": st.get("completion_tokens"),
            "model_calls": st.get("calls"),
            "error": st.get("error"),
            "reason": st.get("reason"),
            "stop_reason": st.get("stop_reason"),
            "output": outputs.get(tid),
            "transcript": transcripts.get(tid, []),
        }
    counts = {str(s): 0 for s in Status}
    for st in states.values():
        counts[st.get("status", Status.PENDING)] = counts.get(st.get("status", Status.PENDING), 0) + 1
    finished = meta.get("finished")
    retries = store.tally(run_id, RETRIES)
    return {
        "run_id": run_id,
        "workflow": meta.get("workflow"),
        "state": state_of(meta),
        "mode": meta.get("mode"),
        "seconds": round(finished - meta["created"], 3) if finished else None,
        "counts": counts,
        "retries": retries,
        "tasks": tasks,
    }


def render_workflow(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=escape(f"workflow {report['workflow']} — run {report['run_id']}"))
    for col in ("task", "agent", "status", "seconds", "tokens", "detail"):
        table.add_column(col, overflow="fold")
    for tid, t in report["tasks"].items():
        tokens = "-" if t["prompt_tokens"] is None else f"{t['prompt_tokens']}+{t['completion_tokens']}"
        detail = t["error"] or t["reason"] or (t["output"] or "")[:80]
        seconds = "-" if t["seconds"] is None else f"{t['seconds']:.2f}"
        table.add_row(clipped(tid), clipped(t["agent"] or "-"), t["status"], seconds, tokens, escape(detail))
    console.print(table)
    c = report["counts"]
    state = report["state"] if report["seconds"] is None else f"{report['state']} in {report['seconds']:.2f} s"
    retries = ", ".join(f"{k} {v}" for k, v in report["retries"].items()) or "none"
    console.print(
        f"{state}: {c['done']} ran, {c['cached']} from cache, {c['failed']} failed, {c['skipped']} skipped; retries: {retries}"
    )


def tool_call(call: dict[str, Any], result: dict[str, Any] | None) -> str:
    """`add(a=2, b=3) → 5`: a call as a reader writes it, with what it returned (when it has)."""
    try:
        arguments = json.loads(call.get("arguments") or "{}")
    except ValueError:
        arguments = None
    if isinstance(arguments, dict):
        shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    else:
        shown = str(call.get("arguments", ""))
    text = f"{call.get('name')}({shown})"
    if result is not None:
        text += f" → {'error: ' if result.get('is_error') else ''}{result.get('content')}"
    return text


def _transcript_line(message: dict[str, Any], transcript: list[dict[str, Any]]) -> str:
    """One message of a transcript in Markdown; a tool call with its result, which is not shown apart."""
    content = str(message["content"])
    if message.get("calls"):
        results = {r.get("call_id"): r for m in transcript for r in m.get("results") or []}
        content = "; ".join(tool_call(c, results.get(c.get("id"))) for c in message["calls"])
    return f"- **{message['source']}** ({message['kind']}): {content}".replace("\n", "\n  ")


def workflow_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['workflow']} (run {report['run_id']})", ""]
    for tid, t in report["tasks"].items():
        facts = [t["status"] + (" (cache)" if t["cached"] else "")]
        if t["seconds"] is not None:
            facts.append(f"{t['seconds']:.2f} s")
        if t["prompt_tokens"] is not None:
            facts.append(f"{t['prompt_tokens']} + {t['completion_tokens']} tokens")
        lines += [f"## {tid}", "", f"*{t['agent']}: {', '.join(facts)}*", ""]
        lines += [t["output"] or t["error"] or t["reason"] or "", ""]
        if t.get("transcript"):
            lines += ["### Transcript", ""]
            lines += [_transcript_line(m, t["transcript"]) for m in t["transcript"] if not m.get("results")]
            lines += [""] + ([f"*stopped: {t['stop_reason']}*", ""] if t.get("stop_reason") else [])
    return "\n".join(lines)
