"""Whether `producer watch` tries a sync again with no file changed: a node's failure says so as
data (NodeState.retryable), set by the worker from the failure itself (workers/batch.py), never
read from its text. No servers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from producer.watch import SyncLine, Watcher, _take_report, retryable
from shared.core.exceptions import BrokerUnavailable, TaskFailed
from shared.core.run_model import NodeState, Status
from shared.ports import StudioError
from workers.batch import Ender


def _timed_out_too_often() -> StudioError:
    try:
        raise TimeoutError
    except TimeoutError as exc:
        try:
            raise StudioError("POST", "/validate/", None, "timed out 2 times; not sent again") from exc
        except StudioError as final:
            return final


def _ended(exc: Exception) -> NodeState:
    async def work() -> NodeState:
        raise exc

    return asyncio.run(Ender({}, "w1").end(work, [], list))


@pytest.mark.parametrize(
    ("exc", "may_pass"),
    [
        (StudioError("GET", "/teams/", None, "could not connect: Connection refused", retryable=True), True),
        (StudioError("PUT", "/teams/", 503, "busy", retryable=True), True),
        (_timed_out_too_often(), True),  # the policy reads its cause: a later sync may pass
        (StudioError("PUT", "/teams/", 422, "bad field"), False),
        (TaskFailed("Studio validation failed: unreachable model answered 500"), False),  # words are no data
        (ConnectionResetError("reset"), True),
    ],
    ids=["unreachable", "503", "timed out too often", "422", "final, whatever it says", "connection lost"],
)
def test_a_failed_nodes_state_says_whether_it_may_pass_later(exc: Exception, may_pass: bool) -> None:
    state = _ended(exc)
    assert state.status == Status.FAILED and state.retryable is may_pass
    assert ("retryable" in state.to_json()) is may_pass, "a final failure's state is stored as before"


def _report(*nodes: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    failed = sum(st["status"] == "failed" for st in nodes)
    return {"counts": {"failed": failed}, "nodes": {f"n{i}": st for i, st in enumerate(nodes)}, "error": error}


def test_an_error_that_says_nothing_is_said_by_the_line_that_raised_it() -> None:
    """AutoGen's Swarm asserts its next speaker is a participant: a handoff to one that is not
    failed the task with "AssertionError: " and nothing else."""

    def next_speaker(speaker: str) -> None:
        if speaker not in ("c1", "c2"):  # AutoGen's bare assert (pytest would give this module's a message)
            raise AssertionError

    try:
        next_speaker("ghost")
    except AssertionError as exc:
        state = _ended(exc)
    assert state.error is not None and state.error.startswith("AssertionError: raised at test_watch_retry.py:"), state
    assert state.error.endswith(": raise AssertionError"), state.error


@pytest.mark.parametrize(
    ("report", "again"),
    [
        (_report({"status": "failed", "error": "Studio unreachable on GET /teams/", "retryable": True}), True),
        (_report({"status": "failed", "error": "Studio unreachable on GET /teams/"}), False),
        (_report({"status": "failed", "error": "Studio answered 422"}, {"status": "done"}), False),
        (_report({"status": "skipped", "reason": "depends on 'a'", "retryable": True}), False),
        (_report({"status": "done"}, error="gallery entry 'x' not written: Studio answered 502"), True),
        (_report({"status": "done"}), False),
    ],
    ids=["retryable", "final though its text says unreachable", "final", "skipped", "the run's error", "clean"],
)
def test_the_watch_retries_on_the_nodes_data_not_their_words(report: dict[str, Any], again: bool) -> None:
    line = SyncLine(0.0, 0.0, 0)
    _take_report(line, report)
    assert retryable(line) is again


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (BrokerUnavailable("the broker at amqp://rabbit:5672// is unreachable: refused"), "the broker at amqp://"),
        (ConnectionError("store away"), "Redis unreachable: store away"),
    ],
    ids=["a publish or a requeue that found no broker", "the store"],
)
def test_a_sync_that_could_not_reach_a_service_is_said_as_it_is_and_tried_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: Exception, said: str
) -> None:
    """A publish, or the watchdog's requeue, raises BrokerUnavailable, which names its broker,
    RabbitMQ too; the store's own errors say Redis."""
    services: Any = SimpleNamespace(settings=None, store=SimpleNamespace(errors=(ConnectionError,)), say=print)
    watcher = Watcher(tmp_path, services, print, None, 100)

    def sync(_: list[str]) -> None:
        raise exc

    monkeypatch.setattr(watcher, "_sync", sync)
    line, _ = watcher.sync_once()
    assert line.error is not None and line.error.startswith(said) and line.retry, line


@pytest.mark.integration  # a connection refused by a port nothing listens on
def test_a_requeue_on_a_gone_redis_broker_is_broker_unavailable() -> None:
    """kombu's OperationalError reached the watch from the watchdog's requeue, said as "Redis
    unreachable" whichever broker it was; it is BrokerUnavailable, naming the broker, as a publish is."""
    from producer import embedded
    from shared.adapters.celery import CeleryDispatcher
    from shared.settings import Settings

    url = f"redis://127.0.0.1:{embedded.free_port()}/0"
    dispatcher = CeleryDispatcher.from_settings(Settings(redis_url=url, redis_outage_seconds=1))
    with pytest.raises(BrokerUnavailable, match=f"the broker at {url} is unreachable"):
        dispatcher.requeue(set(), 0.0, set())
