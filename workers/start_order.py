"""The order in which the tasks of one message reach the model limits: their rank, whichever
coroutine happens to be quicker."""

from __future__ import annotations

import asyncio

LEAVE_AFTER = 0.05  # seconds a task may hold its admission before its place in line (StartOrder)


class StartOrder:
    """Tasks that one message carries reach the model limits in rank order: a task waits until
    every higher-ranked task of its message is in line for a model (or has ended), so the limit
    sees them together and the higher goes first, whichever coroutine happens to be quicker.

    `admission`, the process's (ADMITTED in workers/task_base.py), bounds how many tasks are
    between their start on AutoGen and their place in line: that work is CPU with no await, and a
    thousand tasks started at once (40 messages of 25 in flight) held the event loop for half a
    second before the answers to the requests already sent were read. Tasks are admitted in rank
    order, and a task leaves admission once it is in line, has ended, or after LEAVE_AFTER (one
    that does something else first, a tool, holds nobody up)."""

    def __init__(self, task_ids: list[str], admission: asyncio.Semaphore | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._order = task_ids
        self._queued = {tid: loop.create_future() for tid in task_ids}
        self._admission = admission
        self._admitted: dict[str, asyncio.TimerHandle] = {}

    async def admit(self, task_id: str) -> None:
        """Wait for the process's admission (first come first served: tasks that ask out of rank
        order, after a cache look-up, wait at most LEAVE_AFTER for each other)."""
        if self._admission is not None:
            await self._admission.acquire()
            self._admitted[task_id] = asyncio.get_running_loop().call_later(LEAVE_AFTER, self._leave, task_id)

    def _leave(self, task_id: str) -> None:
        timer = self._admitted.pop(task_id, None)
        if timer is not None:
            timer.cancel()
            assert self._admission is not None
            self._admission.release()

    async def turn(self, task_id: str) -> None:
        for earlier in self._order[: self._order.index(task_id)]:
            await asyncio.shield(self._queued[earlier])

    def queued(self, task_id: str) -> None:
        self._leave(task_id)
        if not self._queued[task_id].done():
            self._queued[task_id].set_result(None)
