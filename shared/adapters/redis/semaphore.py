"""A concurrency limit shared by every worker through Redis, granted highest priority first (the
ModelLimit port, shared/ports.py).

Waiters queue in a sorted set ordered by rank (higher first: a workflow task's priority, then
the length of the chain still behind it), then arrival (the member begins with the time in
nanoseconds, and Redis orders equal scores by member); a waiter may take a free slot when fewer
waiters of higher rank are queued than slots are free. Equal ranks are first come first served
within a process; across processes, whichever asks first takes the slot (a strict order there
left slots idle while the process owning the next waiter was busy, a quarter of the limit in
benchmarks/bench_workflow.py). A process beats while it waits or holds slots; the waiters
and the slots of a process silent for `waiter_ttl` (a killed worker) are dropped, so a lost slot
comes back in seconds (`holder_ttl` bounds a slot held by a live process). A waiter that gives
up is handed back as a slot is, in the next call: a call whose answer was lost (a partition) may
have granted it one, which only the process that asked can know to give back.

Within one process, waiters that arrive together are sent to Redis together, once: one script
call adds them (a batch of 25 tasks costs one round trip, not 25), and one poll loop per
semaphore asks for slots for all of them, sending only the waiters added since its last call
(thousands of queued tasks cost a poll no more than a few). A slot given back wakes the poll
loop, which hands it back in its next call, where the next waiter takes it: no round trip of
its own, and no pause of up to one poll interval with the slot unused.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

from shared.adapters.redis.keys import limit_keys

ACQUIRE_LUA = (Path(__file__).parent / "lua" / "acquire.lua").read_text()


class PrioritySemaphore:
    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        limit: int,
        *,
        holder_ttl: float = 600.0,
        waiter_ttl: float = 5.0,
        poll: float = 0.01,
    ) -> None:
        self.r = client
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # holders, waiters, owners, beats, swept, and this process's own waiters
        self.keys = limit_keys(name, self.process)
        self.limit = max(1, limit)
        self.holder_ttl = holder_ttl
        self.waiter_ttl = waiter_ttl  # a process silent this long is gone: its waiters are dropped
        self.poll = poll
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._new: dict[str, float] = {}  # waiters not yet sent to Redis: token -> score
        self._scores: dict[str, float] = {}  # every waiter of this process
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._returned: list[str] = []  # slots handed back, not yet sent to Redis
        self._napping: asyncio.Future[None] | None = None  # the poll loop's pause, cut short by a hand-back
        self._held = 0
        self._poller: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def slot(self, rank: int = 0, on_queued: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Hold one slot; a higher `rank` is served first, then first come first served.
        `on_queued` is called once this waiter is in line (before any wait)."""
        token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._new[token] = self._scores[token] = -rank
        self._waiting[token] = granted
        if on_queued:
            on_queued()
        self._start_polling()
        try:
            await granted
        except BaseException:
            # gave up while waiting (or Redis failed the wait): leave the queue. Handed back, not
            # just withdrawn: a call whose answer was lost may have granted it a slot in Redis
            self._waiting.pop(token, None)
            self._scores.pop(token, None)
            if self._new.pop(token, None) is None:
                self._hand_back(token)
            raise
        self._held += 1
        if self._beater is None or self._beater.done():
            self._beater = asyncio.create_task(self._beat())
        try:
            yield
        finally:
            self._held -= 1
            self._hand_back(token)

    def _start_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())

    def _hand_back(self, token: str) -> None:
        """Give a slot back: the poll loop sends it at once, with its next request for slots, so
        a waiter of this process takes it in the same round trip (not one round trip each)."""
        self._returned.append(token)
        if self._napping is not None:
            _wake(self._napping)
        self._start_polling()

    async def _nap(self) -> None:
        loop = asyncio.get_running_loop()
        self._napping = napping = loop.create_future()
        timer = loop.call_later(self.poll, _wake, napping)
        try:
            await napping
        finally:
            timer.cancel()
            self._napping = None

    async def _beat(self) -> None:
        """While this process holds slots, say it is alive (a killed process's slots come back
        after `waiter_ttl`, not `holder_ttl`)."""
        while self._held:
            await self.r.hset(self.keys[3], self.process, time.time())
            await asyncio.sleep(min(1.0, self.waiter_ttl / 3))

    async def _poll(self) -> None:
        try:
            await asyncio.sleep(0)  # let the waiters that arrive in this same step join the first call
            resent = time.monotonic()
            while self._waiting or self._returned:
                resent = self._resend_now_and_then(resent)
                self._grant(await self._ask())
                if self._waiting and not self._returned:
                    await self._nap()
        except BaseException as exc:  # Redis unreachable, say: every waiter gets the error, none hangs
            self._fail_waiters(exc)
            if not isinstance(exc, Exception):
                raise
            # nobody awaits this loop: the waiters have the error; slots not handed back go with
            # the next call, or come back when their holder_ttl runs out

    def _resend_now_and_then(self, resent: float) -> float:
        """Every second all of this process's waiters again (when they were last sent): this
        process may have looked gone (a long stall) and lost its place; ZADD NX keeps the place of
        those still queued."""
        if time.monotonic() - resent <= 1.0:
            return resent
        self._new.update(self._scores)
        return time.monotonic()

    async def _ask(self) -> list[str]:
        """One script call with the waiters added and the slots handed back since the last: the
        waiters granted a slot."""
        new, self._new = self._new, {}
        returned, self._returned = self._returned, []
        pairs = [str(v) for token, score in new.items() for v in (token, score)]
        args: list[str | float] = [
            self.limit,
            time.time(),
            self.holder_ttl,
            self.waiter_ttl,
            self.process,
            len(returned),
        ]
        try:
            granted = await self._acquire(keys=self.keys, args=[*args, *returned, *pairs])
        except BaseException:
            self._returned[:0] = returned  # sent again by the next poll loop
            raise
        return [token.decode() if isinstance(token, bytes) else token for token in granted]

    def _grant(self, tokens: list[str]) -> None:
        for token in tokens:
            waiter = self._waiting.pop(token, None)
            self._scores.pop(token, None)
            if waiter is None or waiter.done():  # its waiter gave up meanwhile: hand the slot back
                self._returned.append(token)
            else:
                waiter.set_result(None)

    def _fail_waiters(self, exc: BaseException) -> None:
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
