"""workers.start_order.StartOrder: a process admits few tasks at once to the work before their
place in a model's line (CPU with no await), in rank order, and lets each go on once it is in
line, has ended or has been admitted for LEAVE_AFTER. No servers."""

from __future__ import annotations

import asyncio

from workers.start_order import LEAVE_AFTER, StartOrder


def test_tasks_are_admitted_in_rank_order_few_at_a_time() -> None:
    async def go() -> list[str]:
        admission = asyncio.Semaphore(2)
        order = StartOrder(["a", "b", "c", "d"], admission)
        admitted: list[str] = []

        async def task(tid: str) -> None:
            await order.admit(tid)
            admitted.append(tid)

        tasks = [asyncio.create_task(task(t)) for t in ("a", "b", "c", "d")]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert admitted == ["a", "b"]  # two at once: c and d wait
        order.queued("b")  # b is in line for a model: c may start
        await asyncio.sleep(0)
        assert admitted == ["a", "b", "c"]
        order.queued("b")  # said twice (a second model call): gives back nothing more
        await asyncio.sleep(0)
        assert admitted == ["a", "b", "c"]
        order.queued("a")
        await asyncio.gather(*tasks)
        for tid in ("c", "d"):
            order.queued(tid)
        assert not admission.locked()  # every admission given back
        return admitted

    assert asyncio.run(go()) == ["a", "b", "c", "d"]


def test_a_task_that_does_something_else_first_holds_nobody_up() -> None:
    async def go() -> float:
        admission = asyncio.Semaphore(1)
        order = StartOrder(["tool-first", "next"], admission)
        await order.admit("tool-first")  # then runs a tool, say: never in line for a model
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(order.admit("next"), 5)
        return loop.time() - t0

    waited = asyncio.run(go())
    assert LEAVE_AFTER * 0.5 <= waited < LEAVE_AFTER * 10
