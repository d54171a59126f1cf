"""The workflow run state a worker reads and writes while its tasks run, on the asyncio client (so
one task's Redis calls never block the others on the worker's event loop)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from shared.adapters.redis import keys
from shared.adapters.redis.cache import entries
from shared.adapters.redis.keys import run_key
from shared.adapters.redis.nodes import SET_STATES_LUA, read_states, set_states_call
from shared.adapters.redis.part import RedisPart
from shared.core.json_text import dumps
from shared.core.records import CacheEntry, TaskRecord, TranscriptMessage
from shared.core.run_model import NodeState, RunMeta, Status
from shared.metrics import Metrics, counter_field

END_TASK_LUA = (Path(__file__).parent / "lua" / "end_task.lua").read_text()
# the run parts end_task.lua takes, in its KEYS order
END_TASK_PARTS = (
    keys.NODES,
    keys.COUNTS,
    keys.OPEN,
    keys.ENDED,
    keys.OUTBOX,
    keys.LEFT,
    keys.OUTPUTS,
    keys.TRANSCRIPTS,
)


@dataclass(frozen=True)
class TaskEnd:
    """A task's end as end_task.lua records it. `old_status`: its status before; `cache`: its cache
    entry (key, entry) when it has one; `counted`: the task ran, so it counts in
    agentq_workflow_tasks_total on its first end, and as a redelivery after."""

    task_id: str
    state: NodeState
    old_status: str
    dependents: Sequence[str]
    output: str | None = None
    transcript: list[TranscriptMessage] | None = None
    cache: tuple[str, CacheEntry] | None = None
    counted: bool = True


@dataclass
class Ended:
    left: int  # tasks of the run still to end
    released: list[str]  # tasks to publish now
    first: bool  # this was the task's first end (False: it had ended before; nothing was changed)


def _counter(name: str, end: TaskEnd, labels: list[str]) -> str:
    return counter_field(name, labels) if end.counted else ""


class AsyncRunState:
    def __init__(self, client: aioredis.Redis, store: RedisPart) -> None:
        """`store`: the sync store, whose TTLs this one keeps."""
        self.r = client
        self.store = store
        self._end_task = client.register_script(END_TASK_LUA)
        self._set_states = client.register_script(SET_STATES_LUA)

    async def held_alive(
        self, states: Mapping[str, NodeState], mine: tuple[str, int], dead_after: float, heard_since: float = 0.0
    ) -> set[str]:
        """The tasks running on another live worker process: its heartbeat, from the process that
        claimed them (same pid), is newer than `dead_after` seconds, counted from Redis' own start
        at the earliest (a restarted Redis heard nobody before) and from `heard_since` (this worker
        was cut off until then: so may the others have been, and their heartbeats say nothing of
        that time; a broker that dropped everyone's connections hands their messages to the first
        worker back, before any other could beat)."""
        running = {t: st for t, st in states.items() if st.status == Status.RUNNING and (st.worker, st.pid) != mine}
        workers = sorted({str(st.worker) for st in running.values() if st.worker})
        if not workers:
            return set()
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(keys.HOSTS, workers)
        pipe.info("server")
        beats, server = await pipe.execute()
        now = time.time()
        floor = max(now - float(server.get("uptime_in_seconds", 0)), heard_since)  # nobody could beat before
        alive = set()
        for worker, raw in zip(workers, beats, strict=True):
            beat = json.loads(raw) if raw else None
            if beat is not None and now - max(float(beat.get("ts", 0.0)), floor) <= dead_after:
                alive.add((worker, beat.get("pid")))
        # a heartbeat without a pid (a worker of an earlier version) vouches for any process of it
        return {t for t, st in running.items() if (st.worker, st.pid) in alive or (st.worker, None) in alive}

    async def states(self, run_id: str, task_ids: list[str]) -> dict[str, NodeState]:
        """The tasks' states as Redis holds them now (one round trip)."""
        return read_states(task_ids, await self.r.hmget(run_key(run_id, keys.NODES), task_ids))

    async def cancelled(self, run_id: str) -> bool:
        """Whether `producer cancel` ended the run, or it is gone (Redis lost its data): nobody
        would see what its tasks did, so no more model calls are paid for it."""
        raw = await self.r.get(run_key(run_id, keys.META))
        return raw is None or RunMeta.from_json(raw).cancelled

    async def load(
        self, run_id: str, task_ids: list[str]
    ) -> tuple[dict[str, TaskRecord], dict[str, NodeState], dict[str, str]]:
        """One round trip: the tasks' records, the states of them and their inputs, and the inputs' outputs."""
        specs = await self.r.hmget(run_key(run_id, keys.SPECS), task_ids)
        # written by the producer as TaskRecord (producer/workflow_run.py), read back as such
        records: dict[str, TaskRecord] = {t: json.loads(v) for t, v in zip(task_ids, specs, strict=False) if v}
        deps = sorted({d for r in records.values() for d in r["task"]["dependencies"]})
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(run_key(run_id, keys.NODES), [*task_ids, *deps])
        pipe.hmget(run_key(run_id, keys.OUTPUTS), deps or ["-"])
        states_raw, outputs_raw = await pipe.execute()
        outputs = {d: v for d, v in zip(deps, outputs_raw, strict=False) if v is not None}
        return records, read_states([*task_ids, *deps], states_raw), outputs

    async def set_states(self, run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]) -> None:
        if updates:
            script_keys, args = set_states_call(run_id, updates, previous)
            await self._set_states(keys=script_keys, args=args)

    def _end_args(self, end: TaskEnd, metrics: Metrics) -> list[str | int]:
        """end_task.lua's ARGV (its header says each)."""
        return [
            end.task_id,
            end.state.to_json(),
            end.old_status,
            end.state.status,
            "1" if end.output is not None else "0",
            end.output or "",
            dumps(end.transcript) if end.transcript else "",
            self.store.run_ttl,
            dumps(metrics.drain()),
            dumps(end.cache[1]) if end.cache else "",
            self.store.cache_ttl,
            _counter("agentq_workflow_tasks_total", end, [end.state.status]),
            _counter("agentq_workflow_task_redeliveries_total", end, []),
            *end.dependents,
        ]

    async def end_task(self, run_id: str, end: TaskEnd, metrics: Metrics) -> Ended:
        """Record a task's end, its cache entry, and its worker's metrics so far; release its
        dependents. One call of end_task.lua."""
        script_keys = [
            *(run_key(run_id, p) for p in END_TASK_PARTS),
            keys.COUNTERS,
            keys.HISTOGRAMS,
            *([keys.task_cache_key(end.cache[0])] if end.cache else []),
        ]
        left, released, first = await self._end_task(keys=script_keys, args=self._end_args(end, metrics))
        return Ended(int(left), [t.decode() if isinstance(t, bytes) else t for t in released], bool(first))

    async def cached(self, cache_keys: list[str]) -> list[CacheEntry | None]:
        return entries(await self.r.mget([keys.task_cache_key(k) for k in cache_keys]) if cache_keys else [])

    async def count_retry(self, run_id: str, cause: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(run_key(run_id, keys.RETRIES), cause, 1)
        pipe.expire(run_key(run_id, keys.RETRIES), self.store.run_ttl)
        await pipe.execute()
