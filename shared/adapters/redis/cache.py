"""The result cache in Redis (the ResultCache port, shared/ports.py): synced components per Studio +
user namespace, gallery entries, workflow task results, and the root a clean sync leaves."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from shared.adapters.redis import keys
from shared.adapters.redis.part import RedisPart
from shared.core.json_text import dumps
from shared.core.records import CacheEntry, Lookup, Spec

MARK_ROOT_LUA = (Path(__file__).parent / "lua" / "mark_root.lua").read_text()


def entries(values: Iterable[str | bytes | None]) -> list[CacheEntry | None]:
    """Cache entries as read (None: not cached)."""
    return [json.loads(v) if v else None for v in values]


def synced(values: Iterable[str | bytes | None]) -> list[CacheEntry | None]:
    """Synced components' cache entries as read (None: not cached). orjson: a sync reads 10,000 of
    them, in 4 ms rather than 20; they hold an outcome and a Studio row id, never an integer wider
    than 64 bits (which orjson would read as a float: a task's result may hold one)."""
    import orjson

    return [orjson.loads(v) if v else None for v in values]


class ResultCacheStore(RedisPart):
    @staticmethod
    def node_cache_key(ns: str, key: str) -> str:
        return keys.ns_key(ns, keys.NODE, key)

    @staticmethod
    def gallery_cache_key(ns: str, key: str) -> str:
        return keys.ns_key(ns, keys.GALLERY, key)

    def lookup(self, ns: str, node_keys: list[str], gallery: tuple[str, str | None], tree: str) -> Lookup:
        """One round trip: cached results for every node key, the gallery entry's (name, key), the
        last synced keys by label, and who last wrote that entry."""
        name, gallery_key = gallery
        pipe = self.r.pipeline(transaction=False)
        pipe.mget([keys.ns_key(ns, keys.NODE, k) for k in node_keys] or ["-"])
        pipe.get(keys.ns_key(ns, keys.GALLERY, gallery_key or "-"))
        pipe.hgetall(keys.ns_key(ns, keys.LABELS, tree))
        pipe.hget(keys.ns_key(ns, keys.GALLERY_KEYS), name)
        nodes, cached_gallery, labels, last = pipe.execute()
        last_entry = json.loads(last) if last else {}
        return Lookup(
            synced(nodes[: len(node_keys)]),
            # the entry holds this key only when the last write there was of it (not B after A, then A)
            synced([cached_gallery])[0] if gallery_key and last_entry.get("key") == gallery_key else None,
            labels,
            last_entry.get("tree"),
        )

    def cache_results(self, ns: str, tree: str, results: Mapping[str, tuple[str, CacheEntry]]) -> None:
        """results: label -> (node key, result). Also remembers each label's last synced key."""
        if not results:
            return
        pipe = self.r.pipeline(transaction=False)
        for key, result in results.values():
            pipe.set(keys.ns_key(ns, keys.NODE, key), dumps(result), ex=self.cache_ttl)
        pipe.hset(keys.ns_key(ns, keys.LABELS, tree), mapping={label: key for label, (key, _) in results.items()})
        pipe.execute()

    def missing_specs(self, ns: str, node_keys: Collection[str]) -> list[str]:
        """The node keys whose gallery member spec is not kept (keep_specs): one EXISTS when all are."""
        names = {keys.ns_key(ns, keys.SPEC, k): k for k in node_keys}
        if not names or self.r.exists(*names) == len(names):
            return []
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
        return [k for k, there in zip(names.values(), pipe.execute(), strict=True) if not there]

    def keep_specs(self, ns: str, specs: Mapping[str, Spec]) -> None:
        """Gallery members' specs by node key (content-addressed: a key's spec never changes), kept as
        long as a cached result, so that a later run's gallery write can do without them in the run."""
        if not specs:
            return
        pipe = self.r.pipeline(transaction=False)
        for key, spec in specs.items():
            pipe.set(keys.ns_key(ns, keys.SPEC, key), dumps(spec), ex=self.cache_ttl)
        pipe.execute()

    def kept_specs(self, ns: str, node_keys: list[str]) -> dict[str, Spec]:
        """The kept specs of these node keys (a key whose spec expired is left out)."""
        if not node_keys:
            return {}
        values = self.r.mget([keys.ns_key(ns, keys.SPEC, k) for k in node_keys])
        return {k: json.loads(v) for k, v in zip(node_keys, values, strict=True) if v}

    def cache_gallery(self, ns: str, name: str, tree: str, key: str, result: CacheEntry) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.set(keys.ns_key(ns, keys.GALLERY, key), dumps(result), ex=self.cache_ttl)
        pipe.hset(keys.ns_key(ns, keys.GALLERY_KEYS), name, dumps({"key": key, "tree": tree}))
        pipe.execute()

    def task_results(self, cache_keys: list[str]) -> list[CacheEntry | None]:
        """Cached workflow task results for these content keys, in order (one round trip)."""
        return entries(self.r.mget([keys.task_cache_key(k) for k in cache_keys]) if cache_keys else [])

    def keep_tree_root(self, ns: str, tree: str, digest: str) -> None:
        """`tree`'s last clean sync had this root (its no-change record vouches for it)."""
        self.r.hset(keys.ns_key(ns, keys.ROOTS), tree, digest)

    def void_tree_root(self, ns: str, tree: str) -> None:
        """`tree`'s no-change record no longer holds: another tree took a row of it over."""
        digest = self.r.hget(keys.ns_key(ns, keys.ROOTS), tree)
        if digest:
            self.r.delete(keys.ROOT_PREFIX + (digest.decode() if isinstance(digest, bytes) else str(digest)))

    def mark_root(self, digest: str, run_id: str, cache_keys: list[str]) -> bool:
        """Record a clean sync's root; every cache entry under it is kept at least as long as the
        root, so a root that is present means every entry is. False (nothing recorded) when one is gone."""
        # one script call: a pipeline of 10,000 EXPIREs costs redis-py three times the CPU to pack
        return bool(
            self.r.eval(
                MARK_ROOT_LUA, len(cache_keys) + 1, keys.ROOT_PREFIX + digest, *cache_keys, run_id, self.cache_ttl
            )
        )
