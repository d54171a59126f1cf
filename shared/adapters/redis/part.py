"""What every part of the store (store.py, cache.py, cluster.py, studio_rows.py) works on."""

from __future__ import annotations

import redis


class RedisPart:
    """The client and how long values live: set by Store.__init__, read by each part's methods."""

    r: redis.Redis
    cache_ttl: int  # seconds a cached result is kept
    run_ttl: int  # seconds a run's keys are kept
