"""Metrics about a finished run: outcomes by component type, task statuses, duration."""

from __future__ import annotations

from shared.core.run_model import RunKind, RunMeta, Status
from shared.metrics import Metrics
from shared.ports import RunStore


def record_run(store: RunStore, meta: RunMeta) -> None:
    metrics = Metrics()
    kind = meta.get("kind", RunKind.SYNC)
    # workflow tasks are counted as each ends (workers) or is found cached (producer)
    states = store.node_states(meta["run_id"]) if kind == RunKind.SYNC else {}
    for st in states.values():
        status = st.get("status", Status.PENDING)
        outcome = (
            st.get("outcome", "created")
            if status == Status.DONE
            else "unchanged"
            if status == Status.CACHED
            else status
        )
        metrics.inc("agentq_sync_outcomes_total", [st.get("type") or "file", outcome])
    if "finished" in meta:
        metrics.observe("agentq_run_duration_seconds", [kind], meta["finished"] - meta["created"])
    store.flush(metrics)
