"""A concurrency limit shared by every worker through Redis, granted highest priority first.

Waiters queue in a sorted set ordered by (priority, arrival); a waiter may take a slot only when
it is among the first `limit - held` waiters. Holders and waiters that stop refreshing (a killed
worker) expire, so a lost slot comes back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

# KEYS: holders zset, waiters zset, waiter heartbeat hash
# ARGV: token, score, limit, now, holder_ttl, waiter_ttl
_ACQUIRE = """
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if tonumber(seen[i + 1]) < now - tonumber(ARGV[6]) then
    redis.call('ZREM', KEYS[2], seen[i])
    redis.call('HDEL', KEYS[3], seen[i])
  end
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], now)
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
if free > 0 then
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
  if rank < free then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
    redis.call('ZADD', KEYS[1], now, ARGV[1])
    return 1
  end
end
return 0
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

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold one slot; a higher `priority` is served first, then first come first served."""
        token = uuid.uuid4().hex
        # Score orders waiters: priority first (higher first), arrival time second.
        score = -priority * 1e10 + time.time()
        while not await self._acquire(keys=self.keys, args=[token, score, self.limit, time.time(), self.holder_ttl, self.waiter_ttl]):
            await asyncio.sleep(self.poll)
        try:
            yield
        finally:
            await self.r.zrem(self.keys[0], token)
