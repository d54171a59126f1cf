"""Metrics about a finished run: outcomes by component type, task statuses, duration."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from shared.core.run_model import NodeState, RunKind, RunMeta, Status
from shared.metrics import Metrics
from shared.ports import RunStore

# what a sync node's status says of its outcome (a node done says its own)
OUTCOME_OF_STATUS = {Status.CACHED: "unchanged"}


def sync_outcome(state: NodeState) -> str:
    if state.status == Status.DONE:
        return state.outcome or "created"
    return OUTCOME_OF_STATUS.get(state.status, str(state.status))


def count_outcomes(metrics: Metrics, states: Iterable[NodeState]) -> None:
    for labels, count in Counter((st.type or "file", sync_outcome(st)) for st in states).items():
        metrics.inc("agentq_sync_outcomes_total", labels, count)


def count_settled(metrics: Metrics, states: Iterable[NodeState]) -> None:
    """The outcomes a sync's plan settled (cached, invalid, skipped ...), counted as the run is
    written: nothing changes them later, and record_run counts the rest."""
    count_outcomes(metrics, (st for st in states if st.status != Status.PENDING))


def record_run(store: RunStore, meta: RunMeta | None) -> None:
    """Count a finished run's duration and, for a sync, the outcomes of the nodes it ran (None:
    the run expired; nothing to count)."""
    if meta is None:
        return
    metrics = Metrics()
    if meta.kind == RunKind.SYNC:  # workflow tasks are counted as each ends (workers) or is found cached (producer)
        count_outcomes(metrics, store.open_states(meta.run_id, meta).values())
    if meta.finished is not None:
        metrics.observe("agentq_run_duration_seconds", [meta.kind], meta.finished - meta.created)
    store.flush(metrics)
