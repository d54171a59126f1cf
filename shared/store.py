"""Redis layout for the result cache and for run state. Values are JSON; run keys expire."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

PREFIX = "agentq"
TERMINAL = ("done", "cached", "failed", "skipped")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    def __init__(self, client: redis.Redis, *, cache_ttl: int, run_ttl: int) -> None:
        self.r = client
        self.cache_ttl = cache_ttl
        self.run_ttl = run_ttl

    @classmethod
    def from_url(cls, url: str, *, cache_ttl: int, run_ttl: int) -> Store:
        return cls(redis.Redis.from_url(url, decode_responses=True), cache_ttl=cache_ttl, run_ttl=run_ttl)

    # ---- result cache (per Studio + user namespace) -------------------------------------------
    @staticmethod
    def node_cache_key(ns: str, key: str) -> str:
        return f"{PREFIX}:{ns}:node:{key}"

    @staticmethod
    def task_cache_key(key: str) -> str:
        """Workflow task results: keyed by content only (the endpoint is part of the key)."""
        return f"{PREFIX}:wf:{key}"

    @staticmethod
    def gallery_cache_key(ns: str, key: str) -> str:
        return f"{PREFIX}:{ns}:gallery:{key}"

    def lookup(self, ns: str, node_keys: list[str], gallery_key: str | None, tree: str) -> tuple[list[Any], Any, dict[str, str]]:
        """One round trip: cached results for every node key, the gallery key, and last synced keys by label."""
        pipe = self.r.pipeline(transaction=False)
        pipe.mget([self.node_cache_key(ns, k) for k in node_keys] or ["-"])
        pipe.get(self.gallery_cache_key(ns, gallery_key or "-"))
        pipe.hgetall(self.labels_key(ns, tree))
        nodes, gallery, labels = pipe.execute()
        return [json.loads(v) if v else None for v in nodes[: len(node_keys)]], (json.loads(gallery) if gallery else None), labels

    def cache_results(self, ns: str, tree: str, results: dict[str, tuple[str, Any]]) -> None:
        """results: label -> (node key, result). Also remembers each label's last synced key."""
        if not results:
            return
        pipe = self.r.pipeline(transaction=False)
        for _, (key, result) in results.items():
            pipe.set(self.node_cache_key(ns, key), _json(result), ex=self.cache_ttl)
        pipe.hset(self.labels_key(ns, tree), mapping={label: key for label, (key, _) in results.items()})
        pipe.execute()

    def cache_gallery(self, ns: str, key: str, result: Any) -> None:
        self.r.set(self.gallery_cache_key(ns, key), _json(result), ex=self.cache_ttl)

    @staticmethod
    def labels_key(ns: str, tree: str) -> str:
        return f"{PREFIX}:{ns}:labels:{tree}"

    # ---- Studio row ids, so updates go in place --------------------------------------------
    @staticmethod
    def team_ids_key(ns: str) -> str:
        return f"{PREFIX}:{ns}:teams"

    def team_id(self, ns: str, label: str) -> int | None:
        value = self.r.hget(self.team_ids_key(ns), label)
        return int(value) if value else None

    def set_team_ids(self, ns: str, ids: dict[str, int]) -> None:
        if ids:
            self.r.hset(self.team_ids_key(ns), mapping={k: str(v) for k, v in ids.items()})

    def forget_team(self, ns: str, label: str) -> None:
        self.r.hdel(self.team_ids_key(ns), label)

    def gallery_id(self, ns: str, name: str) -> int | None:
        value = self.r.hget(f"{PREFIX}:{ns}:galleries", name)
        return int(value) if value else None

    def set_gallery_id(self, ns: str, name: str, gallery_id: int) -> None:
        self.r.hset(f"{PREFIX}:{ns}:galleries", name, str(gallery_id))

    # ---- run state ------------------------------------------------------------------------
    @staticmethod
    def run_key(run_id: str, part: str) -> str:
        return f"{PREFIX}:run:{run_id}:{part}"

    def create_run(
        self,
        run_id: str,
        meta: dict[str, Any],
        nodes: dict[str, dict[str, Any]],
        specs: dict[str, dict[str, Any]],
        waves: list[list[list[str]]],
    ) -> None:
        keys = [self.run_key(run_id, p) for p in ("meta", "nodes", "specs", "counts")]
        pipe = self.r.pipeline(transaction=False)
        pipe.set(keys[0], _json(meta))
        if nodes:
            pipe.hset(keys[1], mapping={k: _json(v) for k, v in nodes.items()})
        counts: dict[str, int] = {}
        for v in nodes.values():
            counts[v["status"]] = counts.get(v["status"], 0) + 1
        if counts:
            pipe.hset(keys[3], mapping=counts)
        if specs:
            pipe.hset(keys[2], mapping={k: _json(v) for k, v in specs.items()})
        for w, batches in enumerate(waves):
            wave_key = self.run_key(run_id, f"wave:{w}")
            pipe.rpush(wave_key, *[_json(b) for b in batches])
            keys.append(wave_key)
        for key in keys:
            pipe.expire(key, self.run_ttl)
        pipe.execute()

    def meta(self, run_id: str) -> dict[str, Any] | None:
        value = self.r.get(self.run_key(run_id, "meta"))
        return json.loads(value) if value else None

    def update_meta(self, run_id: str, **fields: Any) -> dict[str, Any]:
        meta = self.meta(run_id) or {}
        meta.update(fields)
        self.r.set(self.run_key(run_id, "meta"), _json(meta), ex=self.run_ttl)
        return meta

    def batch(self, run_id: str, wave: int, index: int) -> list[str]:
        value = self.r.lindex(self.run_key(run_id, f"wave:{wave}"), index)
        return json.loads(value) if value else []

    def wave_size(self, run_id: str, wave: int) -> int:
        return int(self.r.llen(self.run_key(run_id, f"wave:{wave}")))

    def specs(self, run_id: str, labels: Iterable[str]) -> dict[str, dict[str, Any]]:
        labels = list(labels)
        if not labels:
            return {}
        values = self.r.hmget(self.run_key(run_id, "specs"), labels)
        return {lbl: json.loads(v) for lbl, v in zip(labels, values) if v}

    def node_states(self, run_id: str, labels: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        key = self.run_key(run_id, "nodes")
        if labels is None:
            return {k: json.loads(v) for k, v in self.r.hgetall(key).items()}
        labels = list(labels)
        if not labels:
            return {}
        return {lbl: json.loads(v) for lbl, v in zip(labels, self.r.hmget(key, labels)) if v}

    def set_states(self, run_id: str, updates: dict[str, dict[str, Any]], previous: dict[str, str]) -> None:
        """Write new node states; `previous` gives each node's old status so the counters stay exact."""
        if not updates:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.run_key(run_id, "nodes"), mapping={k: _json(v) for k, v in updates.items()})
        counts_key = self.run_key(run_id, "counts")
        for label, state in updates.items():
            old = previous.get(label)
            if old != state["status"]:
                if old:
                    pipe.hincrby(counts_key, old, -1)
                pipe.hincrby(counts_key, state["status"], 1)
        pipe.execute()

    def counts(self, run_id: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.run_key(run_id, "counts")).items()}

    def claim(self, run_id: str, what: str) -> bool:
        """True once per run for `what`: makes redelivered wave callbacks harmless."""
        return bool(self.r.set(self.run_key(run_id, f"claim:{what}"), "1", nx=True, ex=self.run_ttl))

    def release(self, run_id: str, what: str) -> None:
        self.r.delete(self.run_key(run_id, f"claim:{what}"))

