"""The Redis priority semaphore on a real Redis: the limit holds however many waiters one
process sends at once, the highest priority is served first, and a waiter that gives up
leaves no slot taken."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import redis.asyncio as aioredis

from shared.semaphore import PrioritySemaphore


def _name() -> str:
    return f"agentq:test-limit:{uuid.uuid4().hex[:8]}"


def test_limit_holds_for_many_waiters_in_one_process(redis_url: str) -> None:
    async def go() -> int:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        sem = PrioritySemaphore(client, _name(), 3)
        inside, peak = 0, 0

        async def work() -> None:
            nonlocal inside, peak
            async with sem.slot():
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.02)
                inside -= 1

        await asyncio.wait_for(asyncio.gather(*(work() for _ in range(30))), 20)
        assert await client.zcard(sem.keys[0]) == 0  # every slot handed back
        await client.aclose()
        return peak

    assert asyncio.run(go()) == 3


def test_highest_priority_waiter_is_served_first(redis_url: str) -> None:
    async def go() -> list[int]:
        client = aioredis.Redis.from_url(redis_url)  # bytes replies: tokens must still match
        sem = PrioritySemaphore(client, _name(), 1)
        order: list[int] = []

        async def work(priority: int) -> None:
            async with sem.slot(priority):
                order.append(priority)
                await asyncio.sleep(0.01)

        async with sem.slot(100):  # hold the only slot while all of them queue
            waiters = [asyncio.create_task(work(p)) for p in (1, 5, 3, 9)]
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*waiters), 20)
        await client.aclose()
        return order

    assert asyncio.run(go()) == [9, 5, 3, 1]


def test_a_waiter_that_gives_up_takes_no_slot(redis_url: str) -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        sem = PrioritySemaphore(client, _name(), 1, waiter_ttl=0.3)
        async with sem.slot():

            async def impatient() -> None:
                async with sem.slot():
                    raise AssertionError("should not get the slot")

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(impatient(), 0.1)
        # the slot is free again, and the abandoned waiter neither holds it nor blocks the queue
        await asyncio.wait_for(_take(sem), 5)
        assert await client.zcard(sem.keys[0]) == 0
        await client.aclose()

    async def _take(sem: PrioritySemaphore) -> None:
        async with sem.slot():
            pass

    asyncio.run(go())
