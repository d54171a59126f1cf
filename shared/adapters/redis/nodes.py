"""How a run's node states lie in Redis, for the sync store and the workers' asyncio one alike: a
hash of NodeState JSON by label, and a hash of how many nodes have each status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis
import redis.asyncio as aioredis

from shared.adapters.redis import keys
from shared.adapters.redis.keys import run_key
from shared.core.run_model import NodeState

Pipeline = redis.client.Pipeline | aioredis.client.Pipeline


def queue_states(pipe: Pipeline, run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]) -> None:
    """Queue the writes of new node states on `pipe`; `previous` gives each node's old status, so
    the counters stay exact."""
    pipe.hset(run_key(run_id, keys.NODES), mapping={k: v.to_json() for k, v in updates.items()})
    counts_key = run_key(run_id, keys.COUNTS)
    for label, state in updates.items():
        old = previous.get(label)
        if old != state.status:
            if old:
                pipe.hincrby(counts_key, old, -1)
            pipe.hincrby(counts_key, state.status, 1)


def read_states(labels: Iterable[str], values: Iterable[str | bytes | None]) -> dict[str, NodeState]:
    """The states of `labels` from their JSON as read (None: no state)."""
    return {lbl: NodeState.from_json(v) for lbl, v in zip(labels, values, strict=False) if v}
