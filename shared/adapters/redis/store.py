"""Run state and the result cache in Redis (the RunStore and ResultCache ports, shared/ports.py).
Values are JSON; run keys expire. Key names: keys.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from shared.adapters.redis import keys
from shared.adapters.redis.conn import sync_client
from shared.adapters.redis.keys import run_key
from shared.adapters.redis.metrics import flush, read_counters, read_histograms
from shared.core.drift import WrittenRow
from shared.core.json_text import dumps
from shared.core.reconcile import NodeView, SyncView, WorkflowView
from shared.core.run_model import NodeState, RunKind, RunMeta, RunState, Status
from shared.metrics import Metrics, counter_field
from shared.settings import Settings

LUA = Path(__file__).parent / "lua"
END_TASK_LUA = (LUA / "end_task.lua").read_text()
MARK_ROOT_LUA = (LUA / "mark_root.lua").read_text()
# Meta fields as long as the run: kept apart from the meta, which workers read with every message
# and the producer with every poll (a 2,000-task workflow's lists are 60 KB of JSON)
RUN_LISTS = ("gallery_members", "ready", "order")


def _json(value: Any) -> str:
    return dumps(value)


class Store:
    errors: tuple[type[Exception], ...] = (redis.RedisError,)  # what a call that failed raises

    def __init__(self, client: redis.Redis, *, cache_ttl: int, run_ttl: int, url: str | None = None) -> None:
        self.r = client
        self.cache_ttl = cache_ttl
        self.run_ttl = run_ttl
        self.url = url

    @classmethod
    def from_url(cls, url: str, *, cache_ttl: int, run_ttl: int, outage: float = 60.0) -> Store:
        """`outage`: seconds without Redis that every command rides out (conn.py)."""
        return cls(sync_client(url, outage), cache_ttl=cache_ttl, run_ttl=run_ttl, url=url)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> Store:
        return cls.from_url(
            url or settings.redis_url or "redis://127.0.0.1:6379/0",
            cache_ttl=settings.cache_ttl_seconds,
            run_ttl=settings.run_ttl_seconds,
            outage=settings.redis_outage_seconds,
        )

    # ---- result cache (per Studio + user namespace) -------------------------------------------
    @staticmethod
    def node_cache_key(ns: str, key: str) -> str:
        return keys.node_cache_key(ns, key)

    @staticmethod
    def gallery_cache_key(ns: str, key: str) -> str:
        return keys.gallery_cache_key(ns, key)

    def ping(self, ride_out: bool = False) -> None:
        """Redis answers now: a first contact is not waited out as an outage is (a wrong URL is said
        at once); `ride_out`: Redis answers within the outage every command rides out."""
        if self.url is None or ride_out:
            self.r.ping()
            return
        with sync_client(self.url, 1.0) as quick:
            quick.ping()

    def flush(self, metrics: Metrics) -> None:
        """Add a process's metrics to the cluster's totals (shared/metrics.py)."""
        flush(self.r, metrics)

    def counters(self) -> dict[tuple[str, tuple[str, ...]], float]:
        """The cluster's counters so far: (name, labels) -> total (the exporter)."""
        return read_counters(self.r)

    def histograms(self) -> dict[tuple[str, tuple[str, ...]], list[float]]:
        """The cluster's latency histograms so far (shared/metrics.py), for the exporter and benchmarks."""
        return read_histograms(self.r)

    def limit_queues(self) -> dict[str, tuple[int, int]]:
        """Each cluster-wide limit (semaphore.py): (slots held, tasks waiting), for benchmarks."""
        names = sorted(keys.limit_of_waiters(str(k)) for k in self.r.scan_iter(keys.LIMIT_WAITERS, count=1000))
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.zcard(keys.limit_part(name, "holders"))
            pipe.zcard(keys.limit_part(name, "waiters"))
        counts = pipe.execute()
        return {name: (int(counts[2 * i]), int(counts[2 * i + 1])) for i, name in enumerate(names)}

    # ---- workers' heartbeats and the messages each is running (producer/recovery.py) -------------
    def heartbeats(self) -> dict[str, float]:
        """Worker node name -> when it last reported (workers/resources.py)."""
        return {str(name): json.loads(raw).get("ts", 0.0) for name, raw in self.r.hgetall(keys.HOSTS).items()}

    def host_readings(self) -> dict[str, dict[str, Any]]:
        """Worker node name -> its last resource reading: host, cpu, memory, disk, throttled, ts."""
        return {str(name): json.loads(raw) for name, raw in self.r.hgetall(keys.HOSTS).items()}

    def live_workers(self, fresh_within: float) -> dict[str, list[str] | None]:
        """Workers that reported within `fresh_within` seconds -> the queues each takes (None: a
        worker of an earlier version, which does not say)."""
        now, live = time.time(), {}
        for name, raw in self.r.hgetall(keys.HOSTS).items():
            beat = json.loads(raw)
            if now - float(beat.get("ts", 0.0)) <= fresh_within:
                queues = beat.get("queues")
                live[str(name)] = [str(q) for q in queues] if isinstance(queues, list) else None
        return live

    def running_messages(self) -> dict[str, dict[str, float]]:
        """Worker node name -> the Celery task ids it is running -> since when."""
        out: dict[str, dict[str, float]] = {}
        for key in self.r.scan_iter(keys.IN_FLIGHT + "*", count=1000):
            out[str(key).removeprefix(keys.IN_FLIGHT)] = {str(t): float(ts) for t, ts in self.r.hgetall(key).items()}
        return out

    def message_started(self, worker: str, task_id: str) -> None:
        self.r.hset(keys.in_flight_key(worker), task_id, time.time())

    def messages_ended(self, worker: str, *task_ids: str) -> None:
        if task_ids:
            self.r.hdel(keys.in_flight_key(worker), *task_ids)

    # ---- small per-run values and tallies ------------------------------------------------------
    def run_value(self, run_id: str, part: str) -> str | None:
        value = self.r.get(run_key(run_id, part))
        return None if value is None else str(value)

    def set_run_value(self, run_id: str, part: str, value: str, only_if_new: bool = False) -> None:
        self.r.set(run_key(run_id, part), value, ex=self.run_ttl, nx=only_if_new)

    def tally(self, run_id: str, part: str) -> dict[str, int]:
        """A run's counters: `requests` (Studio requests by endpoint), `retries` (by cause)."""
        return {str(k): int(v) for k, v in self.r.hgetall(run_key(run_id, part)).items()}

    def add_to_tally(self, run_id: str, part: str, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        pipe = self.r.pipeline(transaction=False)
        for name, count in counts.items():
            pipe.hincrby(run_key(run_id, part), name, count)
        pipe.expire(run_key(run_id, part), self.run_ttl)
        pipe.execute()

    def outputs(self, run_id: str) -> dict[str, str]:
        """A workflow run's task outputs by task id."""
        return {str(k): str(v) for k, v in self.r.hgetall(run_key(run_id, keys.OUTPUTS)).items()}

    def task_results(self, cache_keys: list[str]) -> list[dict[str, Any] | None]:
        """Cached workflow task results for these content keys, in order (one round trip)."""
        values = self.r.mget([keys.task_cache_key(k) for k in cache_keys]) if cache_keys else []
        return [json.loads(v) if v else None for v in values]

    def recent_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        """Runs' metadata with their counts, newest first (`producer runs`, `producer monitor`); runs
        that expired are left out."""
        run_ids = [str(r) for r in self.r.zrevrange(keys.RUNS, 0, limit - 1)]
        if not run_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.get(run_key(run_id, keys.META))
            pipe.hgetall(run_key(run_id, keys.COUNTS))
        replies = pipe.execute()
        return [
            {**json.loads(meta), "counts": {str(k): int(v) for k, v in counts.items()}}
            for meta, counts in zip(replies[::2], replies[1::2], strict=True)
            if meta
        ]

    def last_run_id(self) -> str | None:
        """The newest run still kept, or None."""
        for meta in self.recent_runs(5):
            return str(meta["run_id"])
        return None

    def cancel_run(self, run_id: str) -> tuple[RunMeta | None, bool]:
        """End a run that has not finished: marked cancelled and finished (its waiters wake), every
        node that has not started skipped. Workers start nothing of it any more; what runs now
        ends on its own. (its meta, whether this call cancelled it); (None, False): no such run."""
        meta = self.meta(run_id)
        if meta is None or meta.get("state") == RunState.FINISHED:
            return meta, False
        pending = {
            label: NodeState(**{**st, "status": Status.SKIPPED, "reason": "the run was cancelled"})
            for label, st in self.node_states(run_id).items()
            if st.get("status", Status.PENDING) == Status.PENDING
        }
        self.set_states(run_id, pending, {label: Status.PENDING for label in pending})
        ending = RunMeta(state=RunState.FINISHED, cancelled=True, finished=time.time(), error="cancelled")
        return self.update_meta(run_id, ending), True

    def mark_root(self, digest: str, run_id: str, cache_keys: list[str]) -> bool:
        """Record a clean sync's root; every cache entry under it is kept at least as long as the
        root, so a root that is present means every entry is. False (nothing recorded) when one is gone."""
        # one script call: a pipeline of 10,000 EXPIREs costs redis-py three times the CPU to pack
        return bool(
            self.r.eval(
                MARK_ROOT_LUA, len(cache_keys) + 1, keys.ROOT_PREFIX + digest, *cache_keys, run_id, self.cache_ttl
            )
        )

    def lookup(
        self, ns: str, node_keys: list[str], gallery_key: str | None, tree: str
    ) -> tuple[list[Any], Any, dict[str, str]]:
        """One round trip: cached results for every node key, the gallery key, and last synced keys by label."""
        pipe = self.r.pipeline(transaction=False)
        pipe.mget([keys.node_cache_key(ns, k) for k in node_keys] or ["-"])
        pipe.get(keys.gallery_cache_key(ns, gallery_key or "-"))
        pipe.hgetall(keys.labels_key(ns, tree))
        nodes, gallery, labels = pipe.execute()
        return (
            [json.loads(v) if v else None for v in nodes[: len(node_keys)]],
            (json.loads(gallery) if gallery else None),
            labels,
        )

    def cache_results(self, ns: str, tree: str, results: dict[str, tuple[str, Any]]) -> None:
        """results: label -> (node key, result). Also remembers each label's last synced key."""
        if not results:
            return
        pipe = self.r.pipeline(transaction=False)
        for _, (key, result) in results.items():
            pipe.set(keys.node_cache_key(ns, key), _json(result), ex=self.cache_ttl)
        pipe.hset(keys.labels_key(ns, tree), mapping={label: key for label, (key, _) in results.items()})
        pipe.execute()

    def cache_gallery(self, ns: str, key: str, result: Any) -> None:
        self.r.set(keys.gallery_cache_key(ns, key), _json(result), ex=self.cache_ttl)

    # ---- Studio row ids, so updates go in place --------------------------------------------
    def team_id(self, ns: str, label: str) -> int | None:
        value = self.r.hget(keys.team_ids_key(ns), label)
        return int(value) if value else None

    # ---- what the sync wrote, for drift and prune (shared/core/drift.py) ---------------------
    def written_rows(self, ns: str, tree: str | None = None) -> dict[str, WrittenRow]:
        """Label -> the record of the team row the sync last wrote for it (only `tree`'s when given)."""
        rows = (WrittenRow.from_json(raw) for raw in self.r.hgetall(keys.written_key(ns)).values())
        return {w.label: w for w in rows if tree is None or w.tree == tree}

    def written_row(self, ns: str, label: str) -> WrittenRow | None:
        raw = self.r.hget(keys.written_key(ns), label)
        return WrittenRow.from_json(raw) if raw else None

    def record_written(self, ns: str, row: WrittenRow) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.written_key(ns), row.label, row.to_json())
        pipe.hset(keys.team_ids_key(ns), row.label, str(row.row_id))
        pipe.execute()

    def forget_written(self, ns: str, label: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.written_key(ns), label)
        pipe.hdel(keys.team_ids_key(ns), label)
        pipe.execute()

    def create_lock(self, ns: str, what: str, seconds: float = 30.0) -> redis.lock.Lock:
        """redis-py's lock on creating the Studio row `what` in this namespace: one create per row
        at a time across runs and workers. It expires after `seconds`, should its holder die."""
        # redis-py leaves lock() unannotated; without a lock_class it makes this one
        lock: redis.lock.Lock = self.r.lock(keys.creating_key(ns, what), timeout=seconds)
        return lock

    def owned_gallery(self, ns: str, name: str) -> tuple[int, str] | None:
        """(row id, tree) of the gallery entry `name` when the sync created it."""
        raw = self.r.hget(keys.owned_galleries_key(ns), name)
        if not raw:
            return None
        data = json.loads(raw)
        return int(data["id"]), str(data["tree"])

    def own_gallery(self, ns: str, name: str, gallery_id: int, tree: str) -> None:
        self.r.hset(keys.owned_galleries_key(ns), name, _json({"id": gallery_id, "tree": tree}))

    def disown_gallery(self, ns: str, name: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.owned_galleries_key(ns), name)
        pipe.hdel(keys.galleries_key(ns), name)
        pipe.execute()

    def gallery_id(self, ns: str, name: str) -> int | None:
        value = self.r.hget(keys.galleries_key(ns), name)
        return int(value) if value else None

    def set_gallery_id(self, ns: str, name: str, gallery_id: int) -> None:
        self.r.hset(keys.galleries_key(ns), name, str(gallery_id))

    # ---- run state ------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        meta: RunMeta,
        nodes: Mapping[str, NodeState],
        specs: dict[str, dict[str, Any]],
        waves: list[list[list[str]]],
    ) -> None:
        written = [run_key(run_id, p) for p in (keys.META, keys.NODES, keys.SPECS, keys.COUNTS, keys.LISTS)]
        pipe = self.r.pipeline(transaction=False)
        lists: dict[Any, Any] = {name: _json(meta[name]) for name in RUN_LISTS if name in meta}  # type: ignore[literal-required]
        pipe.set(written[0], _json({k: v for k, v in meta.items() if k not in lists}))
        if lists:
            pipe.hset(written[4], mapping=lists)
        if nodes:
            pipe.hset(written[1], mapping={k: _json(v) for k, v in nodes.items()})
        counts: dict[Any, int] = {}  # Any: redis-py's mapping type is invariant in its keys
        for v in nodes.values():
            counts[v["status"]] = counts.get(v["status"], 0) + 1
        if counts:
            pipe.hset(written[3], mapping=counts)
        if specs:
            pipe.hset(written[2], mapping={k: _json(v) for k, v in specs.items()})
        for w, batches in enumerate(waves):
            wave_key = run_key(run_id, keys.wave(w))
            pipe.rpush(wave_key, *[_json(b) for b in batches])
            written.append(wave_key)
        for key in written:
            pipe.expire(key, self.run_ttl)
        # the index of recent runs: the newest RUNS_KEPT, gone with the last run's TTL
        pipe.zadd(keys.RUNS, {run_id: float(meta.get("created", time.time()))})
        pipe.zremrangebyrank(keys.RUNS, 0, -keys.RUNS_KEPT - 1)
        pipe.expire(keys.RUNS, self.run_ttl)
        pipe.execute()

    def run_list(self, run_id: str, name: str) -> list[Any]:
        """One of the run's RUN_LISTS, as it was given in its meta."""
        value = self.r.hget(run_key(run_id, keys.LISTS), name)
        return json.loads(value) if value else []

    def meta(self, run_id: str) -> RunMeta | None:
        value = self.r.get(run_key(run_id, keys.META))
        return cast(RunMeta, json.loads(value)) if value else None

    def update_meta(self, run_id: str, changes: RunMeta) -> RunMeta:
        """Change the run's meta; a run marked finished also wakes whoever waits for it."""
        meta = self.meta(run_id) or RunMeta()
        meta.update(changes)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(run_key(run_id, keys.META), _json(meta), ex=self.run_ttl)
        if changes.get("state") == RunState.FINISHED:
            pipe.rpush(run_key(run_id, keys.FINISHED), "1")
            pipe.expire(run_key(run_id, keys.FINISHED), self.run_ttl)
        pipe.execute()
        return meta

    def await_finish(self, run_id: str, seconds: float) -> None:
        """Wait up to `seconds`, returning at once when the run is marked finished meanwhile (a
        poll interval that costs no latency: a run ending just after a poll is seen at once)."""
        self.r.blpop([run_key(run_id, keys.FINISHED)], timeout=seconds)

    def batch(self, run_id: str, wave: int, index: int) -> list[str]:
        value = self.r.lindex(run_key(run_id, keys.wave(wave)), index)
        return json.loads(value) if value else []

    def wave_size(self, run_id: str, wave: int) -> int:
        return int(self.r.llen(run_key(run_id, keys.wave(wave))))

    def specs(self, run_id: str, labels: Iterable[str]) -> dict[str, dict[str, Any]]:
        labels = list(labels)
        if not labels:
            return {}
        values = self.r.hmget(run_key(run_id, keys.SPECS), labels)
        return {lbl: json.loads(v) for lbl, v in zip(labels, values, strict=False) if v}

    def node_states(self, run_id: str, labels: Iterable[str] | None = None) -> dict[str, NodeState]:
        key = run_key(run_id, keys.NODES)
        if labels is None:
            return {str(k): json.loads(v) for k, v in self.r.hgetall(key).items()}
        labels = list(labels)
        if not labels:
            return {}
        return {lbl: json.loads(v) for lbl, v in zip(labels, self.r.hmget(key, labels), strict=False) if v}

    def set_states(self, run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]) -> None:
        """Write new node states; `previous` gives each node's old status so the counters stay exact."""
        if not updates:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(run_key(run_id, keys.NODES), mapping={k: _json(v) for k, v in updates.items()})
        counts_key = run_key(run_id, keys.COUNTS)
        for label, state in updates.items():
            old = previous.get(label)
            if old != state["status"]:
                if old:
                    pipe.hincrby(counts_key, old, -1)
                pipe.hincrby(counts_key, state["status"], 1)
        pipe.execute()

    def counts(self, run_id: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.r.hgetall(run_key(run_id, keys.COUNTS)).items()}

    def claim(self, run_id: str, what: str) -> bool:
        """True once per run for `what`: makes redelivered wave callbacks harmless."""
        return bool(self.r.set(run_key(run_id, keys.claim(what)), "1", nx=True, ex=self.run_ttl))

    def release(self, run_id: str, what: str) -> None:
        self.r.delete(run_key(run_id, keys.claim(what)))

    # ---- workflow runs: each task released when its own inputs have ended ------------------------
    def create_workflow_run(
        self,
        run_id: str,
        meta: RunMeta,
        states: Mapping[str, NodeState],
        specs: dict[str, dict[str, Any]],
        open_inputs: dict[str, int],
        ready: list[str],
        outputs: dict[str, str],
        transcripts: dict[str, str],
    ) -> None:
        """Run state plus the release bookkeeping: open inputs per task, tasks left, and an outbox
        holding the tasks released but not yet published (here: the ones ready at the start)."""
        self.create_run(run_id, meta, states, specs, [])
        pipe = self.r.pipeline(transaction=False)
        parts: dict[str, Mapping[Any, Any]] = {
            keys.OPEN: open_inputs,
            keys.OUTPUTS: outputs,
            keys.TRANSCRIPTS: transcripts,
        }
        for part, mapping in parts.items():
            if mapping:
                pipe.hset(run_key(run_id, part), mapping=dict(mapping))
                pipe.expire(run_key(run_id, part), self.run_ttl)
        if ready:
            pipe.sadd(run_key(run_id, keys.OUTBOX), *ready)
        pipe.set(run_key(run_id, keys.LEFT), len(specs))
        for part in (keys.OUTBOX, keys.LEFT):
            pipe.expire(run_key(run_id, part), self.run_ttl)
        pipe.execute()

    def outbox(self, run_id: str) -> set[str]:
        return {str(m) for m in self.r.smembers(run_key(run_id, keys.OUTBOX))}

    def published(self, run_id: str, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if ids:
            self.r.srem(run_key(run_id, keys.OUTBOX), *ids)

    def reconcile_view(self, run_id: str) -> WorkflowView | SyncView | None:
        """What shared/core/reconcile.py compares with the broker: the run's nodes and steps (None: no such run)."""
        meta = self.meta(run_id)
        if meta is None:
            return None
        nodes = {
            label: NodeView(str(st.get("status", Status.PENDING)), st.get("worker"), st.get("task_id"))
            for label, st in self.node_states(run_id).items()
        }
        finished = meta.get("state") == RunState.FINISHED
        if meta.get("kind") == RunKind.WORKFLOW:
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(run_key(run_id, keys.OPEN))
            pipe.exists(run_key(run_id, keys.claim("start")))
            pipe.get(run_key(run_id, keys.LEFT))
            pipe.smembers(run_key(run_id, keys.OUTBOX))
            open_inputs, started, left, outbox = pipe.execute()
            opened = {str(k): int(v) for k, v in open_inputs.items()}
            unpublished = frozenset(str(t) for t in outbox)
            left_count = int(left) if left is not None else -1
            return WorkflowView(nodes, opened, bool(started), left_count, finished, unpublished)
        waves = int(meta.get("waves", 0))
        pipe = self.r.pipeline(transaction=False)
        for w in range(waves):
            pipe.lrange(run_key(run_id, keys.wave(w)), 0, -1)
        steps = ["start", *(f"wave-done:{w}" for w in range(waves))]
        for step in steps:
            pipe.exists(run_key(run_id, keys.claim(step)))
        replies = pipe.execute()
        batches = [[json.loads(b) for b in wave] for wave in replies[:waves]]
        claims = frozenset(step for step, taken in zip(steps, replies[waves:], strict=True) if taken)
        return SyncView(nodes, batches, claims, finished)

    def transcripts(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        return {str(k): json.loads(v) for k, v in self.r.hgetall(run_key(run_id, keys.TRANSCRIPTS)).items()}


@dataclass
class Ended:
    left: int  # tasks of the run still to end
    released: list[str]  # tasks to publish now
    first: bool  # this was the task's first end (False: it had ended before; nothing was changed)


class AsyncRunState:
    """The workflow run state a worker reads and writes while its tasks run, on the asyncio client
    (so one task's Redis calls never block the others on the worker's event loop)."""

    def __init__(self, client: aioredis.Redis, store: Store) -> None:
        self.r = client
        self.store = store
        self._end_task = client.register_script(END_TASK_LUA)

    async def cancelled(self, run_id: str) -> bool:
        """Whether `producer cancel` ended the run."""
        raw = await self.r.get(run_key(run_id, keys.META))
        return bool(raw and json.loads(raw).get("cancelled"))

    async def load(
        self, run_id: str, task_ids: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, NodeState], dict[str, str]]:
        """One round trip: the tasks' records, the states of them and their inputs, and the inputs' outputs."""
        records = {
            t: json.loads(v)
            for t, v in zip(task_ids, await self.r.hmget(run_key(run_id, keys.SPECS), task_ids), strict=False)
            if v
        }
        deps = sorted({d for r in records.values() for d in r["task"].get("dependencies", [])})
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(run_key(run_id, keys.NODES), [*task_ids, *deps])
        pipe.hmget(run_key(run_id, keys.OUTPUTS), deps or ["-"])
        states_raw, outputs_raw = await pipe.execute()
        states = {t: json.loads(v) for t, v in zip([*task_ids, *deps], states_raw, strict=False) if v}
        outputs = {d: v for d, v in zip(deps, outputs_raw, strict=False) if v is not None}
        return records, states, outputs

    async def set_states(self, run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(run_key(run_id, keys.NODES), mapping={k: _json(v) for k, v in updates.items()})
        for label, state in updates.items():
            if previous.get(label) != state["status"]:
                if previous.get(label):
                    pipe.hincrby(run_key(run_id, keys.COUNTS), previous[label], -1)
                pipe.hincrby(run_key(run_id, keys.COUNTS), state["status"], 1)
        await pipe.execute()

    async def end_task(
        self,
        run_id: str,
        task_id: str,
        state: NodeState,
        old_status: str,
        output: str | None,
        transcript: list[dict[str, Any]] | None,
        dependents: list[str],
        metrics: Metrics,
        cache: tuple[str, dict[str, Any]] | None = None,
        counted: bool = True,
    ) -> Ended:
        """Record a task's end, its cache entry (key, entry) when it has one, and its worker's
        metrics so far; release its dependents. One call of end_task.lua. `counted`: the task ran,
        so it counts in agentq_workflow_tasks_total on its first end, and as a redelivery after."""
        parts = (keys.NODES, keys.COUNTS, keys.OPEN, keys.ENDED, keys.OUTBOX, keys.LEFT, keys.OUTPUTS, keys.TRANSCRIPTS)
        script_keys = [
            *(run_key(run_id, p) for p in parts),
            keys.COUNTERS,
            keys.HISTOGRAMS,
            *([keys.task_cache_key(cache[0])] if cache else []),
        ]
        args = [
            task_id,
            _json(state),
            old_status,
            state["status"],
            "1" if output is not None else "0",
            output or "",
            _json(transcript) if transcript else "",
            self.store.run_ttl,
            _json(metrics.drain()),
            _json(cache[1]) if cache else "",
            self.store.cache_ttl,
            counter_field("agentq_workflow_tasks_total", [state["status"]]) if counted else "",
            counter_field("agentq_workflow_task_redeliveries_total", []) if counted else "",
            *dependents,
        ]
        left, released, first = await self._end_task(keys=script_keys, args=args)
        return Ended(int(left), [t.decode() if isinstance(t, bytes) else t for t in released], bool(first))

    async def cached(self, cache_keys: list[str]) -> list[dict[str, Any] | None]:
        values = await self.r.mget([keys.task_cache_key(k) for k in cache_keys]) if cache_keys else []
        return [json.loads(v) if v else None for v in values]

    async def count_retry(self, run_id: str, cause: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(run_key(run_id, keys.RETRIES), cause, 1)
        pipe.expire(run_key(run_id, keys.RETRIES), self.store.run_ttl)
        await pipe.execute()
