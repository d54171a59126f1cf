"""What shared/core/reconcile.py compares with the broker, read from a run's state in Redis."""

from __future__ import annotations

import json
from collections.abc import Mapping

import redis

from shared.adapters.redis import keys
from shared.adapters.redis.keys import run_key
from shared.core import reconcile
from shared.core.reconcile import NodeView, SyncView, WorkflowView
from shared.core.run_model import NodeState, RunKind, RunMeta


def node_views(states: Mapping[str, NodeState]) -> dict[str, NodeView]:
    return {label: NodeView(str(st.status), st.worker, st.task_id) for label, st in states.items()}


def reconcile_view(
    r: redis.Redis, run_id: str, meta: RunMeta, states: Mapping[str, NodeState]
) -> WorkflowView | SyncView:
    """The run's nodes and steps, as its kind has them."""
    if meta.kind == RunKind.WORKFLOW:
        return workflow_view(r, run_id, meta, states)
    return sync_view(r, run_id, meta, states)


def workflow_view(r: redis.Redis, run_id: str, meta: RunMeta, states: Mapping[str, NodeState]) -> WorkflowView:
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(run_key(run_id, keys.OPEN))
    pipe.exists(run_key(run_id, keys.claim(reconcile.START)))
    pipe.get(run_key(run_id, keys.LEFT))
    pipe.smembers(run_key(run_id, keys.OUTBOX))
    open_inputs, started, left, outbox = pipe.execute()
    return WorkflowView(
        node_views(states),
        {str(k): int(v) for k, v in open_inputs.items()},
        bool(started),
        int(left) if left is not None else -1,
        meta.is_finished,
        frozenset(str(t) for t in outbox),
    )


def sync_view(r: redis.Redis, run_id: str, meta: RunMeta, states: Mapping[str, NodeState]) -> SyncView:
    waves = range(meta.waves)
    steps = [reconcile.START, *(reconcile.wave_done_item(w) for w in waves)]
    pipe = r.pipeline(transaction=False)
    for w in waves:
        pipe.lrange(run_key(run_id, keys.wave(w)), 0, -1)
    for step in steps:
        pipe.exists(run_key(run_id, keys.claim(step)))
    replies = pipe.execute()
    batches = [[json.loads(b) for b in wave] for wave in replies[: len(waves)]]
    return SyncView(node_views(states), batches, _taken(steps, replies[len(waves) :]), meta.is_finished)


def _taken(steps: list[str], exists: list[int]) -> frozenset[str]:
    """The steps whose claim was taken, from EXISTS on each."""
    return frozenset(step for step, taken in zip(steps, exists, strict=True) if taken)
