"""What the syncs of a namespace wrote to Studio, kept in Redis without expiry: team row ids (so
updates go in place), the records drift and prune compare (shared/core/drift.py), gallery entries."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Collection, Mapping

import redis
from redis.exceptions import LockError

from shared.adapters.redis import keys
from shared.adapters.redis.part import RedisPart
from shared.core.drift import KnownRow, WrittenRow
from shared.core.json_text import dumps


class CreateLock:
    """redis-py's lock as a create holds it: tried without blocking (the caller waits on its own
    event loop), and let go quietly when it expired while held (another may have taken it since).
    Its value names the worker holding it: the lock of a worker gone silent (the producer has
    requeued its messages, which brings its creates here again) is taken over at once, rather
    than waited out for the rest of its expiry."""

    def __init__(self, lock: redis.lock.Lock, holder: str, since: float, gone: Callable[[str, float], bool]) -> None:
        self._lock, self._holder, self._since, self._gone = lock, holder, since, gone

    def acquire(self) -> bool:
        # the holder's process start too: a worker restarted under the same name at once (a
        # supervisor's restart) reports as alive, but a lock of the process before it is a dead one's
        token = f"{self._holder}|{self._since!r}|{uuid.uuid4().hex}"
        if self._lock.acquire(blocking=False, token=token):
            return True
        held = self._lock.redis.get(self._lock.name)
        if held and _text(held) == token:
            return self._mine(token)
        if not held or not self._gone(*_holder_of(_text(held))):
            return False
        with contextlib.suppress(LockError):  # another took it over first, or it expired meanwhile
            self._lock.do_release(held)
        if self._lock.acquire(blocking=False, token=token):
            return True
        held = self._lock.redis.get(self._lock.name)
        return bool(held) and _text(held) == token and self._mine(token)

    def _mine(self, token: str) -> bool:
        """The lock holds `token`, though its SET NX said no: the SET ran, its answer was lost, and
        the client sent it again (shared/adapters/redis/conn.py). Taken as another's, this caller
        would wait for its own lock to expire. Held as redis-py holds it, so release() lets go."""
        self._lock.local.token = self._lock.redis.get_encoder().encode(token)
        return True

    def release(self) -> None:
        with contextlib.suppress(LockError):
            self._lock.release()


def _holder_of(token: str) -> tuple[str, float]:
    """(node name, process start) of a lock's token; 0.0: a token that does not say."""
    name, _, rest = token.partition("|")
    started, _, _ = rest.partition("|")
    try:
        return name, float(started)
    except ValueError:
        return name, 0.0


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class StudioRows(RedisPart):
    def team_id(self, ns: str, label: str) -> int | None:
        value = self.r.hget(keys.ns_key(ns, keys.TEAMS), label)
        return int(value) if value else None

    def written_rows(self, ns: str, tree: str | None = None) -> dict[str, WrittenRow]:
        """Label -> the record of the team row the sync last wrote for it (only `tree`'s when given)."""
        rows = (WrittenRow.from_json(raw) for raw in self.r.hgetall(keys.ns_key(ns, keys.WRITTEN)).values())
        return {w.label: w for w in rows if tree is None or w.tree == tree}

    def written_row(self, ns: str, label: str) -> WrittenRow | None:
        raw = self.r.hget(keys.ns_key(ns, keys.WRITTEN), label)
        return WrittenRow.from_json(raw) if raw else None

    def known_rows(self, ns: str, labels: Collection[str]) -> dict[str, KnownRow]:
        """For each of `labels`: the record of its last write and its row id, in one round trip."""
        wanted = list(labels)
        if not wanted:
            return {}
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(keys.ns_key(ns, keys.WRITTEN), wanted)
        pipe.hmget(keys.ns_key(ns, keys.TEAMS), wanted)
        written, ids = pipe.execute()
        return {
            lbl: KnownRow(WrittenRow.from_json(w) if w else None, int(i) if i else None)
            for lbl, w, i in zip(wanted, written, ids, strict=True)
        }

    def record_written(self, ns: str, row: WrittenRow) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.ns_key(ns, keys.WRITTEN), row.label, row.to_json())
        pipe.hset(keys.ns_key(ns, keys.TEAMS), row.label, str(row.row_id))
        pipe.execute()

    def forget_written(self, ns: str, label: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.ns_key(ns, keys.WRITTEN), label)
        pipe.hdel(keys.ns_key(ns, keys.TEAMS), label)
        pipe.execute()

    def record_templates(self, ns: str, templates: Mapping[str, object]) -> None:
        if templates:  # no secret in them: a placeholder is what the file says
            self.r.hset(keys.ns_key(ns, keys.TEMPLATES), mapping={lbl: dumps(t) for lbl, t in templates.items()})

    def templates(self, ns: str, labels: Collection[str]) -> dict[str, object]:
        wanted = sorted(labels)
        values = self.r.hmget(keys.ns_key(ns, keys.TEMPLATES), wanted) if wanted else []
        return {lbl: json.loads(raw) for lbl, raw in zip(wanted, values, strict=True) if raw}

    def create_lock(
        self,
        ns: str,
        what: str,
        seconds: float = 30.0,
        holder: str = "",
        dead_after: float | None = None,
        since: float = 0.0,
    ) -> CreateLock:
        """The lock on creating the Studio row `what` in this namespace: one create per row at a
        time across runs and workers. It expires after `seconds`, should its holder die; with
        `dead_after`, a holder (a worker's node name, its process started at `since`) whose
        heartbeat is older than that, or comes from a process started later, has died."""
        # redis-py leaves lock() unannotated; without a lock_class it makes this one
        lock: redis.lock.Lock = self.r.lock(keys.ns_key(ns, keys.CREATING, what), timeout=seconds)

        def gone(name: str, started: float) -> bool:
            raw = self.r.hget(keys.HOSTS, name) if dead_after is not None and name else None
            if raw is None:
                return False
            beat = json.loads(raw)
            heard = self.heard_at({name: float(beat.get("ts", 0.0))})[name]
            silent = time.time() - heard > (dead_after or 0.0)
            return silent or float(beat.get("started", 0.0)) > started  # another process since

        return CreateLock(lock, holder, since, gone)

    def owned_gallery(self, ns: str, name: str) -> tuple[int, str] | None:
        """(row id, tree) of the gallery entry `name` when the sync created it."""
        raw = self.r.hget(keys.ns_key(ns, keys.OWNED_GALLERIES), name)
        if not raw:
            return None
        data = json.loads(raw)
        return int(data["id"]), str(data["tree"])

    def claim_gallery(self, ns: str, name: str, tree: str, taken_over: Callable[[str], bool]) -> str:
        """The tree the default-named gallery entry `name` is for: `tree` when no other claimed it
        first (two trees of one folder name synced at once: one wins), or when the other's claim
        may be `taken_over` (its folder is gone)."""
        key = keys.ns_key(ns, keys.GALLERY_TREES)
        if self.r.hsetnx(key, name, tree):
            return tree
        holder = _text(self.r.hget(key, name) or tree)
        if holder != tree and taken_over(holder):
            self.r.hset(key, name, tree)
            return tree
        return holder

    def own_gallery(self, ns: str, name: str, gallery_id: int, tree: str) -> None:
        self.r.hset(keys.ns_key(ns, keys.OWNED_GALLERIES), name, dumps({"id": gallery_id, "tree": tree}))

    def disown_gallery(self, ns: str, name: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.ns_key(ns, keys.OWNED_GALLERIES), name)
        pipe.hdel(keys.ns_key(ns, keys.GALLERIES), name)
        pipe.hdel(keys.ns_key(ns, keys.GALLERY_KEYS), name)
        pipe.execute()

    def gallery_id(self, ns: str, name: str) -> int | None:
        value = self.r.hget(keys.ns_key(ns, keys.GALLERIES), name)
        return int(value) if value else None

    def set_gallery_id(self, ns: str, name: str, gallery_id: int) -> None:
        self.r.hset(keys.ns_key(ns, keys.GALLERIES), name, str(gallery_id))

    def gallery_written(self, ns: str, name: str) -> str | None:
        """The stamp (id and updated_at, shared/core/drift.py) of gallery `name` as a sync last wrote it."""
        value = self.r.hget(keys.ns_key(ns, keys.GALLERY_WRITTEN), name)
        return None if value is None else str(value)

    def set_gallery_written(self, ns: str, name: str, digest: str | None) -> None:
        """None: what the entry holds is not known (a write that may or may not have landed)."""
        if digest is None:
            self.r.hdel(keys.ns_key(ns, keys.GALLERY_WRITTEN), name)
        else:
            self.r.hset(keys.ns_key(ns, keys.GALLERY_WRITTEN), name, digest)
