"""Run state in Redis, and the Store that holds every part of what the project keeps there (the
RunStore and ResultCache ports, shared/ports.py): the result cache (cache.py), the cluster's
metrics and heartbeats (cluster.py), the rows the syncs wrote (studio_rows.py). Values are JSON;
run keys expire. Key names: keys.py."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from shared.adapters.redis import keys
from shared.adapters.redis.async_state import AsyncRunState, Ended, TaskEnd
from shared.adapters.redis.cache import ResultCacheStore
from shared.adapters.redis.cluster import ClusterState
from shared.adapters.redis.conn import sync_client
from shared.adapters.redis.keys import run_key
from shared.adapters.redis.nodes import SET_STATES_LUA, read_states, set_states_call
from shared.adapters.redis.run_view import reconcile_view
from shared.adapters.redis.studio_rows import StudioRows
from shared.core.json_text import dumps
from shared.core.reconcile import START, SyncView, WorkflowView
from shared.core.records import NewRun, Release, Spec, encoded
from shared.core.run_model import RUN_LISTS, TERMINAL, NodeState, RunKind, RunMeta, Status
from shared.core.task_names import MODELS_QUEUE, STUDIO_QUEUE
from shared.settings import Settings

RELEASE_LUA = (Path(__file__).parent / "lua" / "release.lua").read_text()

__all__ = ["AsyncRunState", "Ended", "Store", "TaskEnd"]  # the workers take the asyncio part from here too


def _run_hashes(run: NewRun) -> dict[str, dict[FieldT, EncodableT]]:
    """A new run's hashes by run part: its nodes' states, their specs, how many nodes have each
    status, and the meta's long lists (RUN_LISTS). FieldT keys: redis-py's mapping type is
    invariant in its keys."""
    meta = run.meta
    return {
        keys.NODES: {k: encoded(v, run.settled.get(k)) for k, v in run.nodes.items()},
        keys.SPECS: {k: dumps(v) for k, v in run.specs.items()},
        keys.COUNTS: dict(Counter(str(state.status) for state in run.nodes.values())),
        keys.LISTS: {name: dumps(getattr(meta, name)) for name in RUN_LISTS if name in meta.model_fields_set},
    }


class Store(ResultCacheStore, ClusterState, StudioRows):
    errors: tuple[type[Exception], ...] = (redis.RedisError,)  # what a call that failed raises

    def __init__(self, client: redis.Redis, *, cache_ttl: int, run_ttl: int, url: str | None = None) -> None:
        self.r = client
        self._set_states = client.register_script(SET_STATES_LUA)
        self._release = client.register_script(RELEASE_LUA)
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

    def ping(self, ride_out: bool = False) -> None:
        """Redis answers now: a first contact is not waited out as an outage is (a wrong URL is said
        at once); `ride_out`: Redis answers within the outage every command rides out."""
        if self.url is None or ride_out:
            self.r.ping()
            return
        with sync_client(self.url, 1.0) as quick:
            quick.ping()

    # ---- small per-run values and tallies ------------------------------------------------------
    # ---- what a run found and counted on the way ------------------------------------------------
    def studio_version(self, run_id: str) -> str | None:
        return self._value(run_id, keys.STUDIO_VERSION)

    def set_studio_version(self, run_id: str, version: str, only_if_new: bool = False) -> None:
        self._set_value(run_id, keys.STUDIO_VERSION, version, only_if_new)

    def team_listing(self, run_id: str) -> str | None:
        """Studio's teams for the run's user, as one worker listed them for all (JSON)."""
        return self._value(run_id, keys.STUDIO_TEAMS)

    def set_team_listing(self, run_id: str, listing: str) -> None:
        self._set_value(run_id, keys.STUDIO_TEAMS, listing)

    def studio_requests(self, run_id: str) -> dict[str, int]:
        return self._tally(run_id, keys.REQUESTS)

    def add_studio_requests(self, run_id: str, counts: Mapping[str, int]) -> None:
        self._add_to_tally(run_id, keys.REQUESTS, counts)

    def retries(self, run_id: str) -> dict[str, int]:
        return self._tally(run_id, keys.RETRIES)  # counted with each task's end (async_state.py)

    def _value(self, run_id: str, part: str) -> str | None:
        value = self.r.get(run_key(run_id, part))
        return None if value is None else str(value)

    def _set_value(self, run_id: str, part: str, value: str, only_if_new: bool = False) -> None:
        self.r.set(run_key(run_id, part), value, ex=self.run_ttl, nx=only_if_new)

    def _tally(self, run_id: str, part: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.r.hgetall(run_key(run_id, part)).items()}

    def _add_to_tally(self, run_id: str, part: str, counts: Mapping[str, int]) -> None:
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

    def transcripts(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        return {str(k): json.loads(v) for k, v in self.r.hgetall(run_key(run_id, keys.TRANSCRIPTS)).items()}

    # ---- the runs kept ------------------------------------------------------------------------
    def recent_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        """Runs' metadata with their counts, newest first (`producer runs`, `producer monitor`); runs
        that expired are left out."""
        run_ids = [str(r) for r in self.r.zrevrange(keys.RUNS, 0, limit - 1)]
        pipe = self.r.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.get(run_key(run_id, keys.META))
            pipe.hgetall(run_key(run_id, keys.COUNTS))
        replies = pipe.execute() if run_ids else []
        return [
            {**RunMeta.from_json(meta).to_dict(), "counts": {str(k): int(v) for k, v in counts.items()}}
            for meta, counts in zip(replies[::2], replies[1::2], strict=True)
            if meta
        ]

    def unstarted_runs(self, since: float, before: float) -> list[RunMeta]:
        """Runs made between `since` and `before` (epoch seconds), neither ended nor cancelled,
        whose start no worker took: their producer lost Redis or the broker between writing the run
        and publishing its start, or the start message was lost, and nobody waits for them."""
        run_ids = [str(r) for r in self.r.zrangebyscore(keys.RUNS, since, before)]
        pipe = self.r.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.get(run_key(run_id, keys.META))
            pipe.exists(run_key(run_id, keys.claim(START)))
        replies = pipe.execute() if run_ids else []
        metas = [
            RunMeta.from_json(meta)
            for meta, started in zip(replies[::2], replies[1::2], strict=True)
            if meta and not started
        ]
        return [meta for meta in metas if not meta.is_finished and not meta.cancelled]

    def last_run_id(self) -> str | None:
        """The newest run still kept, or None."""
        for meta in self.recent_runs(5):
            return str(meta["run_id"])
        return None

    # ---- run state ------------------------------------------------------------------------
    def create_run(self, run: NewRun) -> None:
        self._create(run, None)

    def create_workflow_run(self, run: NewRun, release: Release) -> None:
        """Run state plus the release bookkeeping: open inputs per task, tasks left, and an outbox
        holding the tasks released but not yet published (here: the ones ready at the start)."""
        self._create(run, release)

    def _create(self, run: NewRun, release: Release | None) -> None:
        """One pipeline, the meta last: Redis runs a connection's commands in order, so a run whose
        meta is there is whole, even when the connection was cut as it was written (the workers
        start a run its producer wrote but could not start: workers/resources.py)."""
        run_id, meta = run.meta.run_id, run.meta
        pipe = self.r.pipeline(transaction=False)
        for part, mapping in _run_hashes(run).items():
            if mapping:
                pipe.hset(run_key(run_id, part), mapping=mapping)
                pipe.expire(run_key(run_id, part), self.run_ttl)
        for w, batches in enumerate(run.waves):
            key = run_key(run_id, keys.wave(w))
            # written anew, not added to: a pipeline whose answer was lost is sent again (conn.py),
            # and its RPUSH alone would put every batch in twice, each dispatched twice
            pipe.delete(key)
            pipe.rpush(key, *[dumps(b) for b in batches])
            pipe.expire(key, self.run_ttl)
        if release is not None:
            self._write_release(pipe, run, release)
        if meta.finished is not None:  # finished as written (nothing to enqueue): no start to take
            pipe.set(run_key(run_id, keys.claim(START)), "finished as written", ex=self.run_ttl)
        pipe.set(run_key(run_id, keys.META), meta.to_json(without=RUN_LISTS), ex=self.run_ttl)
        # the index of recent runs: the newest RUNS_KEPT, gone with the last run's TTL
        pipe.zadd(keys.RUNS, {run_id: meta.created})
        pipe.zremrangebyrank(keys.RUNS, 0, -keys.RUNS_KEPT - 1)
        pipe.expire(keys.RUNS, self.run_ttl)
        pipe.execute()

    def _write_release(self, pipe: redis.client.Pipeline, run: NewRun, release: Release) -> None:
        run_id = run.meta.run_id
        parts: dict[str, Mapping[str, str | int]] = {
            keys.OPEN: release.open_inputs,
            keys.OUTPUTS: release.outputs,
            keys.TRANSCRIPTS: release.transcripts,
        }
        for part, mapping in parts.items():
            if mapping:
                pipe.hset(run_key(run_id, part), mapping=dict[FieldT, EncodableT](mapping.items()))
                pipe.expire(run_key(run_id, part), self.run_ttl)
        if release.ready:
            pipe.sadd(run_key(run_id, keys.OUTBOX), *release.ready)
        pipe.set(run_key(run_id, keys.LEFT), len(run.specs))
        for part in (keys.OUTBOX, keys.LEFT):
            pipe.expire(run_key(run_id, part), self.run_ttl)

    def _run_list(self, run_id: str, name: str) -> list[Any]:
        value = self.r.hget(run_key(run_id, keys.LISTS), name)
        return json.loads(value) if value else []

    def gallery_members(self, run_id: str) -> dict[str, str]:
        """The sync's gallery members, in order, each with its node key (RUN_LISTS)."""
        members, member_keys = self._run_list(run_id, "gallery_members"), self._run_list(run_id, "gallery_keys")
        return {str(m): str(k) for m, k in zip(members, member_keys, strict=True)}

    def gallery_variables(self, run_id: str) -> list[str]:
        """The ${VAR}s the sync's tree uses (RUN_LISTS)."""
        return [str(v) for v in self._run_list(run_id, "gallery_variables")]

    def ready_tasks(self, run_id: str) -> list[tuple[str, int, int]]:
        """A workflow's tasks released at its start: (task id, rank, message priority) (RUN_LISTS)."""
        return [(str(t), int(rank), int(prio)) for t, rank, prio in self._run_list(run_id, "ready")]

    def task_order(self, run_id: str) -> list[str]:
        """A workflow's tasks in schedule order (RUN_LISTS)."""
        return [str(t) for t in self._run_list(run_id, "order")]

    def meta(self, run_id: str) -> RunMeta | None:
        value = self.r.get(run_key(run_id, keys.META))
        return RunMeta.from_json(value) if value else None

    def finish_run(self, run_id: str, *, error: str | None = None, cancelled: bool = False) -> RunMeta | None:
        """Mark the run finished now (with its error, or cancelled) and wake whoever waits for it;
        its meta as it now is (None: the run expired)."""
        meta = self.meta(run_id)
        if meta is None:
            return None
        meta = meta.ended(time.time(), error=error, cancelled=cancelled)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(run_key(run_id, keys.META), meta.to_json(), ex=self.run_ttl)
        pipe.rpush(run_key(run_id, keys.FINISHED), "1")
        pipe.expire(run_key(run_id, keys.FINISHED), self.run_ttl)
        pipe.execute()
        return meta

    def cancel_run(self, run_id: str) -> tuple[RunMeta | None, bool]:
        """End a run that has not finished: marked cancelled and finished (its waiters wake), every
        node that has not started skipped. Workers start nothing of it any more; what runs now
        ends on its own. (its meta, whether this call cancelled it); (None, False): no such run."""
        meta = self.meta(run_id)
        if meta is None or meta.is_finished:
            return meta, False
        skipped = {"status": Status.SKIPPED, "reason": "the run was cancelled"}
        pending = {
            label: st.model_copy(update=skipped)
            for label, st in self.open_states(run_id, meta).items()
            if st.status == Status.PENDING
        }
        self.set_states(run_id, pending, {label: Status.PENDING for label in pending})
        return self.finish_run(run_id, error="cancelled", cancelled=True), True

    def retire_leftovers(self, reason: str) -> list[str]:
        """For a Redis that only this process's commands use, started again from its data (the
        embedded default): no worker or producer from before is alive. End their unfinished runs
        with `reason`, drop the messages they left (queued, and delivered but not acknowledged) and
        forget their workers, so that nothing of those runs is done again unasked. The ended runs."""
        ended = [str(run["run_id"]) for run in self.recent_runs(keys.RUNS_KEPT) if run.get("finished") is None]
        for run_id in ended:
            left = {lbl: st for lbl, st in self.open_states(run_id).items() if st.status not in TERMINAL}
            skipped = {
                lbl: st.model_copy(update={"status": Status.SKIPPED, "reason": reason}) for lbl, st in left.items()
            }
            self.set_states(run_id, skipped, {lbl: st.status for lbl, st in left.items()})
            self.finish_run(run_id, error=reason)
        dropped = [q for queue in (STUDIO_QUEUE, MODELS_QUEUE) for q in keys.queue_lists(queue)]
        dropped += [keys.UNACKED, keys.UNACKED_INDEX, keys.HOSTS, *self.r.scan_iter(keys.IN_FLIGHT + "*")]
        self.r.delete(*dropped)
        return ended

    def await_finish(self, run_id: str, seconds: float) -> None:
        """Wait up to `seconds`, returning at once when the run is marked finished meanwhile (a
        poll interval that costs no latency: a run ending just after a poll is seen at once)."""
        self.r.blpop([run_key(run_id, keys.FINISHED)], timeout=seconds)

    def batch(self, run_id: str, wave: int, index: int) -> list[str]:
        value = self.r.lindex(run_key(run_id, keys.wave(wave)), index)
        return json.loads(value) if value else []

    def wave_size(self, run_id: str, wave: int) -> int:
        return int(self.r.llen(run_key(run_id, keys.wave(wave))))

    def specs(self, run_id: str, labels: Iterable[str]) -> dict[str, Spec]:
        labels = list(labels)
        if not labels:
            return {}
        values = self.r.hmget(run_key(run_id, keys.SPECS), labels)
        return {lbl: json.loads(v) for lbl, v in zip(labels, values, strict=False) if v}

    def node_states(self, run_id: str, labels: Iterable[str] | None = None) -> dict[str, NodeState]:
        key = run_key(run_id, keys.NODES)
        if labels is None:
            found = self.r.hgetall(key)
            return read_states(map(str, found), found.values())
        labels = list(labels)
        return read_states(labels, self.r.hmget(key, labels)) if labels else {}

    def open_states(self, run_id: str, meta: RunMeta | None = None) -> dict[str, NodeState]:
        """The states that may still change once the run is written: a sync's nodes in its waves
        (the plan settled every other one: cached, invalid, skipped, drifted or deleted, and
        nothing writes them again), every node of a workflow. A 10,000-node tree edited in one
        place has a handful."""
        meta = meta or self.meta(run_id)
        if meta is None or meta.kind == RunKind.WORKFLOW:
            return self.node_states(run_id)
        return self.node_states(run_id, [lbl for wave in self._batches(run_id, meta) for b in wave for lbl in b])

    def _batches(self, run_id: str, meta: RunMeta) -> list[list[list[str]]]:
        """A sync's waves: each its batches of labels."""
        pipe = self.r.pipeline(transaction=False)
        for w in range(meta.waves):
            pipe.lrange(run_key(run_id, keys.wave(w)), 0, -1)
        return [[json.loads(b) for b in wave] for wave in pipe.execute()]

    def set_states(self, run_id: str, updates: Mapping[str, NodeState], previous: Mapping[str, str]) -> None:
        """Write new node states; `previous` gives each node's old status so the counters stay exact."""
        if updates:
            script_keys, args = set_states_call(run_id, updates, previous)
            self._set_states(keys=script_keys, args=args)

    def counts(self, run_id: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.r.hgetall(run_key(run_id, keys.COUNTS)).items()}

    def claim(self, run_id: str, what: str) -> str | None:
        """The claim's token, once per run for `what` (None after): makes redelivered wave callbacks
        harmless. The claim holds a token of this call's own: a SET whose answer was lost is sent
        again by the client (shared/adapters/redis/conn.py) and then finds the key set, by this very call."""
        key, token = run_key(run_id, keys.claim(what)), uuid.uuid4().hex
        return token if self.r.set(key, token, nx=True, ex=self.run_ttl) or self.r.get(key) == token else None

    def release(self, run_id: str, what: str, token: str) -> None:
        """Give up the claim `token` holds; one another caller made since is kept (release.lua)."""
        self._release(keys=[run_key(run_id, keys.claim(what))], args=[token])

    # ---- workflow runs: each task released when its own inputs have ended ------------------------
    def outbox(self, run_id: str) -> set[str]:
        return {str(m) for m in self.r.smembers(run_key(run_id, keys.OUTBOX))}

    def published(self, run_id: str, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if ids:
            self.r.srem(run_key(run_id, keys.OUTBOX), *ids)

    def reconcile_view(self, run_id: str) -> WorkflowView | SyncView | None:
        """What shared/core/reconcile.py compares with the broker: the run's nodes and steps (None: no such run)."""
        meta = self.meta(run_id)
        return None if meta is None else reconcile_view(self.r, run_id, meta, self.open_states(run_id, meta))
