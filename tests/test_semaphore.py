"""The Redis priority semaphore on a real Redis: the limit holds however many waiters one
process sends at once, the highest priority is served first, and a waiter that gives up
leaves no slot taken."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.adapters.redis.semaphore import PrioritySemaphore

pytestmark = pytest.mark.integration


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


def _queue_elsewhere(sem: PrioritySemaphore, rank: int) -> Any:
    """A waiter of another process that is busy elsewhere: queued once, then never polling."""
    token = f"{time.time_ns():020d}-elsewhere"
    return sem._acquire(
        keys=sem.keys,
        args=[sem.limit, time.time(), sem.holder_ttl, sem.waiter_ttl, sem.process, 0, token, -rank],
    )


def test_a_free_slot_goes_to_the_process_that_asks_unless_a_higher_rank_waits(redis_url: str) -> None:
    """Equal ranks: a process that does not poll (busy) does not keep a free slot from one that
    does. A higher rank elsewhere does, until its process is seen gone."""

    async def go(rank_elsewhere: int) -> float:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        name = _name()
        here = PrioritySemaphore(client, name, 1, waiter_ttl=2.0)
        busy = PrioritySemaphore(client, name, 1, waiter_ttl=2.0)
        async with here.slot():
            assert await _queue_elsewhere(busy, rank_elsewhere) == []  # the slot is held: queued
            await asyncio.sleep(0.01)  # arrives after the busy process's waiter

            async def take() -> float:
                t0 = time.monotonic()
                async with here.slot():
                    return time.monotonic() - t0

            second = asyncio.create_task(take())
            await asyncio.sleep(0.05)
        waited = await asyncio.wait_for(second, 10)
        await client.aclose()
        return waited

    assert asyncio.run(go(0)) < 1.5  # at once, not after the busy process's waiter is dropped (2 s)
    waited = asyncio.run(go(5))
    assert 1.5 < waited < 8  # the higher rank kept it until its silent process was seen gone


def test_a_slot_granted_by_a_call_whose_answer_was_lost_comes_back_at_once(redis_url: str) -> None:
    """A partition cut the answer to a call that granted slots: the waiters failed, and the slots
    stayed held (their owner forgotten) for holder_ttl, ten minutes in which the model's whole
    limit was gone and every task timed out without a request."""
    import redis as redis_errors

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        sem = PrioritySemaphore(client, _name(), 1)
        real, lost = sem._acquire, []

        async def answer_lost(keys: list[str], args: list[Any]) -> Any:
            granted = await real(keys=keys, args=args)
            if granted and not lost:
                lost.append(granted)
                raise redis_errors.ConnectionError("Connection closed by server.")
            return granted

        sem._acquire = answer_lost  # type: ignore[assignment]
        with pytest.raises(redis_errors.ConnectionError):
            async with sem.slot():
                raise AssertionError("its grant never arrived")
        assert lost
        # this process goes on (it beats): the slot is back for the next waiter, not in ten minutes
        async with asyncio.timeout(5):
            async with sem.slot():
                pass
            while await client.zcard(sem.keys[0]):  # the hand-back goes with the poll loop's next call
                await asyncio.sleep(0.01)
        await client.aclose()

    asyncio.run(go())


def test_a_call_sent_again_after_its_answer_was_lost_grants_the_slots_it_granted(redis_url: str) -> None:
    """The workers' client (shared/adapters/redis/conn.py) sends a command again when its answer
    does not come (a partition cut it): the script ran once already. Its second run queued the
    waiters it had granted again and granted them nothing (no slot was free: they held them), so
    they waited for slots they held, until holder_ttl (ten minutes): a worker cut off as it was
    granted the whole limit hung its run, the other workers' copies of its tasks waiting for it."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from shared.adapters.redis.conn import async_client

    async def go() -> None:
        client = async_client(redis_url, outage=10)
        sem = PrioritySemaphore(client, _name(), 2)
        real, lost = client.parse_response, []

        async def answer_lost(connection: Any, command_name: Any, **options: Any) -> Any:
            answer = await real(connection, command_name, **options)
            if command_name == "EVALSHA" and answer and not lost:  # it ran, and granted slots
                lost.append(answer)
                raise RedisTimeoutError("Timeout reading from socket")
            return answer

        client.parse_response = answer_lost  # type: ignore[method-assign]
        entered = 0

        async def work() -> None:
            nonlocal entered
            async with sem.slot():
                entered += 1

        async with asyncio.timeout(5):
            await asyncio.gather(work(), work())
            assert entered == 2 and lost
            while await client.zcard(sem.keys[0]):  # both slots handed back
                await asyncio.sleep(0.01)
        assert await client.zcard(sem.keys[1]) == 0  # and nobody is left queued
        await client.aclose()

    asyncio.run(go())
