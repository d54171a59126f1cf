"""A worker process's check whether a run was cancelled (workers/task_base.py): asked of Redis at
most every half second, one question in flight per run, which those that ask meanwhile wait for.
Redis faked only to hang or fail (fault injection); no servers."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from workers.task_base import CANCEL_ASK_SECONDS, WorkerTask


class Answers:
    """Redis' answers to "is run X cancelled?", in turn: a bool, an exception, or "hang"."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def cancelled(self, run_id: str) -> bool:
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else self.answers_left()
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, bool)
        return answer

    def answers_left(self) -> object:
        raise AssertionError("asked more often than expected")


def check(answers: Answers) -> Any:
    resources = SimpleNamespace(cancelled={}, asking={})
    task = SimpleNamespace(_resources=lambda: resources, run_state=lambda: answers)
    return WorkerTask.cancel_check(task, "run1")  # type: ignore[arg-type]


def test_those_that_ask_while_a_question_is_in_flight_take_its_answer() -> None:
    """The first to ask set a placeholder with the answer from before and those asking meanwhile
    took it: tasks given model slots together called the model after `producer cancel`."""
    answers = Answers(False, True)
    cancelled = check(answers)

    async def go() -> list[bool]:
        assert await cancelled() is False
        await asyncio.sleep(0.6)  # the answer is old: asked again, once, for all six
        return list(await asyncio.gather(*(cancelled() for _ in range(6))))

    assert asyncio.run(go()) == [True] * 6 and answers.asked == 2


def test_redis_that_hangs_or_fails_holds_no_check_past_a_few_seconds() -> None:
    """Redis away (a question rides the outage out for REDIS_OUTAGE_SECONDS): the checks take the
    answer from before within CANCEL_ASK_SECONDS, all at once, not one outage after another; a
    failing question is no error of the caller (it was counted as a model's retry)."""
    answers = Answers(False, "hang")
    cancelled = check(answers)

    async def go() -> tuple[list[bool], float]:
        await cancelled()
        await asyncio.sleep(0.6)
        started = time.monotonic()
        said = list(await asyncio.gather(*(cancelled() for _ in range(6))))
        return said, time.monotonic() - started

    said, took = asyncio.run(go())
    assert said == [False] * 6 and took < CANCEL_ASK_SECONDS + 1.0 and answers.asked == 2

    failing = Answers(False, ConnectionError("Redis away"), True)
    cancelled = check(failing)

    async def again() -> list[bool]:
        first = [await cancelled()]
        await asyncio.sleep(0.6)
        first.append(await cancelled())  # the question failed: the answer before
        first.append(await cancelled())  # not remembered as asked: asked again
        return first

    assert asyncio.run(again()) == [False, False, True]
