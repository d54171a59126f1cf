"""A concurrency limit shared by every worker through Redis, granted highest priority first.

Waiters queue in a sorted set ordered by rank (higher first: a workflow task's priority, then
the length of the chain still behind it), then arrival (the member begins with the time in
nanoseconds, and Redis orders equal scores by member); a waiter may take a slot only when it is
among the first `limit - held` waiters. Holders and waiters that stop refreshing (a killed
worker) expire, so a lost slot comes back.

Within one process, waiters that arrive together are sent to Redis together: one script call
asks for all of them (a batch of 25 tasks costs one round trip, not 25), and one poll loop per
semaphore retries for all that are still waiting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

# KEYS: holders zset, waiters zset, waiter heartbeat hash
# ARGV: limit, now, holder_ttl, waiter_ttl, then token, score pairs; returns the tokens granted
_ACQUIRE = """
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if tonumber(seen[i + 1]) < now - tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[2], seen[i])
    redis.call('HDEL', KEYS[3], seen[i])
  end
end
for i = 5, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], now)
end
local granted = {}
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
if free > 0 then
  for i = 5, #ARGV, 2 do
    local rank = redis.call('ZRANK', KEYS[2], ARGV[i])
    if rank and rank < free then
      granted[#granted + 1] = ARGV[i]
    end
  end
  for _, token in ipairs(granted) do
    redis.call('ZREM', KEYS[2], token)
    redis.call('HDEL', KEYS[3], token)
    redis.call('ZADD', KEYS[1], now, token)
  end
end
return granted
"""


class PrioritySemaphore:
    def __init__(self, client: aioredis.Redis, name: str, limit: int, *, holder_ttl: float = 600.0,
                 waiter_ttl: float = 5.0, poll: float = 0.01) -> None:
        self.r = client
        self.keys = [f"{name}:holders", f"{name}:waiters", f"{name}:seen"]
        self.limit = max(1, limit)
        self.holder_ttl = holder_ttl
        self.waiter_ttl = waiter_ttl
        self.poll = poll
        self._acquire = client.register_script(_ACQUIRE)
        self._waiting: dict[str, tuple[float, asyncio.Future[None]]] = {}
        self._poller: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def slot(self, rank: int = 0, on_queued: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Hold one slot; a higher `rank` is served first, then first come first served.
        `on_queued` is called once this waiter is in line (before any wait)."""
        token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        score = -rank
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[token] = (score, granted)
        if on_queued:
            on_queued()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await granted
        finally:
            # cancelled while waiting: stop asking (Redis drops the waiter when its heartbeat stops)
            self._waiting.pop(token, None)
        try:
            yield
        finally:
            await self.r.zrem(self.keys[0], token)

    async def _poll(self) -> None:
        try:
            await asyncio.sleep(0)  # let the waiters that arrive in this same step join the first call
            while self._waiting:
                pairs = [str(v) for token, (score, _) in self._waiting.items() for v in (token, score)]
                granted = await self._acquire(keys=self.keys, args=[self.limit, time.time(), self.holder_ttl,
                                                                    self.waiter_ttl, *pairs])
                for token in granted:
                    token = token.decode() if isinstance(token, bytes) else token
                    entry = self._waiting.pop(token, None)
                    if entry is None or entry[1].done():  # its waiter gave up meanwhile: hand the slot back
                        await self.r.zrem(self.keys[0], token)
                    else:
                        entry[1].set_result(None)
                if self._waiting:
                    await asyncio.sleep(self.poll)
        except BaseException as exc:  # Redis unreachable, say: every waiter gets the error, none hangs
            for _, waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
