"""What every part of the store (store.py, cache.py, cluster.py, studio_rows.py) works on."""

from __future__ import annotations

import time

import redis

from shared.adapters.redis.conn import heard_again


class RedisPart:
    """The client and how long values live: set by Store.__init__, read by each part's methods."""

    r: redis.Redis
    cache_ttl: int  # seconds a cached result is kept
    run_ttl: int  # seconds a run's keys are kept

    def heard_since(self) -> float:
        """Since when (wall clock) Redis could hear every worker: since it last started (a restart,
        with its data or without), or since this client reached it again after an outage. A
        heartbeat older than that says nothing of its worker: it could not be written meanwhile."""
        try:
            started = time.time() - float(self.r.info("server").get("uptime_in_seconds", 0))
        except redis.ResponseError:  # INFO refused (a managed Redis's ACL): this client's own view only
            started = 0.0
        return max(started, heard_again(self.r))

    def heard_at(self, beats: dict[str, float]) -> dict[str, float]:
        """Heartbeats, none older than heard_since(): a worker is silent only while Redis can hear it."""
        floor = self.heard_since()
        return {name: max(ts, floor) for name, ts in beats.items()}
