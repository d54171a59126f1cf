"""How a run's node states lie in Redis, for the sync store and the workers' asyncio one alike: a
hash of NodeState JSON by label, and a hash of how many nodes have each status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from shared.adapters.redis import keys
from shared.adapters.redis.keys import run_key
from shared.core.run_model import NodeState

SET_STATES_LUA = (Path(__file__).parent / "lua" / "set_states.lua").read_text()


def set_states_call(
    run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """set_states.lua's KEYS and ARGV: each node's new state, written only over the status its
    writer read (`previous`; none given: over any), the counters moved from the status stored."""
    args: list[str] = []
    for label, state in updates.items():
        args += [label, str(previous.get(label) or ""), str(state.status), state.to_json()]
    return [run_key(run_id, keys.NODES), run_key(run_id, keys.COUNTS)], args


def read_states(labels: Iterable[str], values: Iterable[str | bytes | None]) -> dict[str, NodeState]:
    """The states of `labels` from their JSON as read (None: no state)."""
    return {lbl: NodeState.from_json(v) for lbl, v in zip(labels, values, strict=False) if v}
