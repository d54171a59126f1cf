"""Turning a run's state into summaries: counts by outcome, per-node rows, rich tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from producer.terminal_text import escape
from shared.core.records import Settled, TranscriptMessage, as_data
from shared.core.run_model import UNSUCCESSFUL, NodeState, RunKind, RunState, Status

if TYPE_CHECKING:
    from shared.ports import RunStore

# A run's report: JSON data, what `--json` prints and the renderers below read (a node's state and
# a task's row in it are JSON objects too).
Report = dict[str, Any]
Row = dict[str, Any]

OUTCOMES = ("created", "updated", "unchanged", "validated", "deleted", "drifted", "failed", "skipped", "pending")


def outcome_of(state: Mapping[str, object]) -> str:
    """A node's outcome, from its state as a report holds it."""
    return NodeState.model_validate(state).outcome_said()


def run_report(
    store: RunStore,
    run_id: str,
    planned: Mapping[str, NodeState] | None = None,
    settled: Mapping[str, Settled] | None = None,
) -> Report | None:
    """`planned`: the states the run was written with, when the caller holds them (the producer
    that submitted it): then only the states that may have changed since are read. `settled`:
    states made before, with their data (producer/planner.py)."""
    meta = store.meta(run_id)
    if meta is None:
        return None
    nodes = {**planned, **store.open_states(run_id, meta)} if planned is not None else store.node_states(run_id)
    made = settled or {}
    counts = {o: 0 for o in OUTCOMES}
    for state in nodes.values():
        counts[state.outcome_said()] += 1
    requests = store.studio_requests(run_id)
    return {
        "run_id": run_id,
        "state": meta.said_state,
        "tree": meta.tree,
        "studio_url": meta.studio_url,
        "gallery": meta.gallery_name,
        "seconds": meta.seconds(),
        "counts": counts,
        "error": meta.error,
        "studio_requests": requests,
        "nodes": {label: as_data(state, made.get(label)) for label, state in sorted(nodes.items())},
    }


def stored_report(store: RunStore, run_id: str) -> Report | None:
    """A run's report, whichever its kind: a workflow's (with `"kind": "workflow"`) or a sync's."""
    meta = store.meta(run_id)
    if meta is None:
        return None
    report = (workflow_report if meta.kind == RunKind.WORKFLOW else run_report)(store, run_id)
    return None if report is None else {"kind": meta.kind, **report}


def succeeded(report: Report) -> bool:
    counts = report["counts"]
    return (
        report["state"] == RunState.FINISHED
        and not counts["failed"]
        and not counts.get("drifted")
        and not report.get("error")
    )


def workflow_succeeded(report: Report) -> bool:
    """Every task of the workflow run ended done: none failed, none skipped for a failed input."""
    counts = report["counts"]
    return report.get("state") == RunState.FINISHED and not counts["failed"] and not counts["skipped"]


def studio_writes(report: Report) -> int:
    """Requests that change Studio's data (validation is a POST but writes nothing)."""
    return sum(v for k, v in report["studio_requests"].items() if not k.startswith("GET") and "/validate/" not in k)


LABEL_WIDTH = 80  # a label or path longer than this is cut in tables (a hostile file's can be thousands)


def clipped(text: str, width: int = LABEL_WIDTH) -> str:
    """`text` cut to `width` characters, its end kept (where names differ); markup escaped."""
    return escape(text if len(text) <= width else "…" + text[-(width - 1) :])


def _said(st: Mapping[str, object], *fields: str) -> str:
    """The first of `fields` the node's state has, or ""."""
    return next((str(st[f]) for f in fields if st.get(f)), "")


def _detail_table(rows: list[tuple[str, Row]]) -> Table:
    """A row per node: its label, type, file, outcome, and why it failed or was skipped."""
    detail = Table(show_lines=False)
    for col in ("component", "type", "file", "result", "detail"):
        detail.add_column(col, overflow="fold")
    for label, st in rows:
        kind, path = _said(st, "type") or "-", _said(st, "path") or "-"
        why = _said(st, "error", "reason").removeprefix(f"{path}: ").replace(f"; {path}: ", "; ")  # it has its column
        detail.add_row(clipped(label), escape(kind), clipped(path), outcome_of(st), escape(why))
    return detail


def _timed(report: Report) -> str:
    """The run's state, and how long it took once it has finished."""
    return report["state"] if report["seconds"] is None else f"{report['state']} in {report['seconds']:.2f} s"


ALWAYS_SHOWN = ("created", "updated", "unchanged", "failed", "skipped")  # outcomes a sync's table shows at 0 too


def _counts_table(report: Report) -> Table:
    counts = report["counts"]
    table = Table(title=escape(f"sync run {report['run_id']} — {report['tree']}"))
    shown = [o for o in OUTCOMES if counts[o] or o in ALWAYS_SHOWN]
    for outcome in shown:
        table.add_column(outcome, justify="right")
    table.add_row(*(str(counts[o]) for o in shown))
    return table


def render_report(console: Console, report: Report, verbose: bool = False) -> None:
    console.print(_counts_table(report))
    rows = [(lbl, st) for lbl, st in report["nodes"].items() if verbose or st.get("status") in UNSUCCESSFUL]
    if rows:
        console.print(_detail_table(rows))
    if report.get("error"):
        console.print(f"[red]{escape(report['error'])}[/red]")
    requests = sum(report["studio_requests"].values())
    console.print(f"{_timed(report)}; Studio requests: {requests} ({studio_writes(report)} writes)")


def _task_row(st: NodeState, output: str | None, transcript: list[TranscriptMessage]) -> Row:
    """A workflow task as its report says it."""
    return {
        "status": st.status,
        "agent": st.agent,
        "priority": st.priority,
        "cached": st.status == Status.CACHED,
        "seconds": st.seconds,
        "started": st.started,
        "finished": st.finished,
        "prompt_tokens": st.prompt_tokens,
        "completion_tokens": st.completion_tokens,
        "model_calls": st.calls,
        "error": st.error,
        "reason": st.reason,
        "stop_reason": st.stop_reason,
        "output": output,
        "transcript": transcript,
    }


def workflow_report(store: RunStore, run_id: str) -> Report | None:
    meta = store.meta(run_id)
    if meta is None or meta.kind != RunKind.WORKFLOW:
        return None
    states = store.node_states(run_id)
    outputs = store.outputs(run_id)
    transcripts = store.transcripts(run_id)
    order = {tid: i for i, tid in enumerate(store.task_order(run_id))}
    ranked = sorted(states, key=lambda t: (order.get(t, -1), t))
    tasks = {tid: _task_row(states[tid], outputs.get(tid), transcripts.get(tid, [])) for tid in ranked}
    counts = {str(s): 0 for s in Status}
    for st in states.values():
        counts[st.status] += 1
    return {
        "run_id": run_id,
        "workflow": meta.workflow,
        "state": meta.said_state,
        "mode": meta.mode,
        "seconds": meta.seconds(),
        "counts": counts,
        "error": meta.error,
        "retries": store.retries(run_id),
        "tasks": tasks,
    }


def _task_cells(tid: str, t: Row) -> tuple[str, ...]:
    """A workflow task's row in the run's table: id, agent, status, seconds, tokens, detail."""
    tokens = "-" if t["prompt_tokens"] is None else f"{t['prompt_tokens']}+{t['completion_tokens']}"
    detail = t["error"] or t["reason"] or (t["output"] or "")[:80]
    seconds = "-" if t["seconds"] is None else f"{t['seconds']:.2f}"
    return clipped(tid), clipped(t["agent"] or "-"), t["status"], seconds, tokens, escape(detail)


def render_workflow(console: Console, report: Report) -> None:
    table = Table(title=escape(f"workflow {report['workflow']} — run {report['run_id']}"))
    for col in ("task", "agent", "status", "seconds", "tokens", "detail"):
        table.add_column(col, overflow="fold")
    for tid, t in report["tasks"].items():
        table.add_row(*_task_cells(tid, t))
    console.print(table)
    c = report["counts"]
    retries = ", ".join(f"{k} {v}" for k, v in report["retries"].items()) or "none"
    console.print(
        f"{_timed(report)}: {c['done']} ran, {c['cached']} from cache, {c['failed']} failed, {c['skipped']} skipped; retries: {retries}"
    )


def _arguments(call: Mapping[str, Any]) -> str:
    """A tool call's arguments as `a=2, b=3`; as they came when they are no JSON object."""
    try:
        arguments = json.loads(call.get("arguments") or "{}")
    except ValueError:
        arguments = None
    if isinstance(arguments, dict):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return str(call.get("arguments", ""))


def tool_call(call: Mapping[str, Any], result: Mapping[str, Any] | None) -> str:
    """`add(a=2, b=3) → 5`: a call as a reader writes it, with what it returned (when it has)."""
    text = f"{call.get('name')}({_arguments(call)})"
    if result is not None:
        text += f" → {'error: ' if result.get('is_error') else ''}{result.get('content')}"
    return text


def _transcript_line(message: TranscriptMessage, transcript: list[TranscriptMessage]) -> str:
    """One message of a transcript in Markdown; a tool call with its result, which is not shown apart."""
    content = str(message["content"])
    if message.get("calls"):
        results = {r.get("call_id"): r for m in transcript for r in m.get("results") or []}
        content = "; ".join(tool_call(c, results.get(c.get("id"))) for c in message["calls"])
    return f"- **{message['source']}** ({message['kind']}): {content}".replace("\n", "\n  ")


def _task_facts(t: Row) -> str:
    """A workflow task's status, time and tokens, as its Markdown section's first line says them."""
    facts = [t["status"] + (" (cache)" if t["cached"] else "")]
    if t["seconds"] is not None:
        facts.append(f"{t['seconds']:.2f} s")
    if t["prompt_tokens"] is not None:
        facts.append(f"{t['prompt_tokens']} + {t['completion_tokens']} tokens")
    return f"*{t['agent']}: {', '.join(facts)}*"


def _transcript_section(t: Row) -> list[str]:
    if not t.get("transcript"):
        return []
    lines = ["### Transcript", ""]
    lines += [_transcript_line(m, t["transcript"]) for m in t["transcript"] if not m.get("results")]
    return lines + [""] + ([f"*stopped: {t['stop_reason']}*", ""] if t.get("stop_reason") else [])


def workflow_markdown(report: Report) -> str:
    lines = [f"# {report['workflow']} (run {report['run_id']})", ""]
    for tid, t in report["tasks"].items():
        lines += [f"## {tid}", "", _task_facts(t), ""]
        lines += [t["output"] or t["error"] or t["reason"] or "", ""]
        lines += _transcript_section(t)
    return "\n".join(lines)
