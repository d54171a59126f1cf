"""Whether `producer watch` tries a sync again with no file changed: a node's failure says so as
data (NodeState.retryable), set by the worker from the failure itself (workers/batch.py), never
read from its text. No servers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kombu.exceptions import OperationalError

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
        (OperationalError("Error 111 connecting to 127.0.0.1:6390"), "Redis unreachable: Error 111"),
        (ConnectionError("store away"), "Redis unreachable: store away"),
    ],
    ids=["a publish that found no broker", "the Redis broker's requeue", "the store"],
)
def test_a_sync_that_could_not_reach_a_service_is_said_as_it_is_and_tried_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: Exception, said: str
) -> None:
    """A publish raises BrokerUnavailable, which names its broker, RabbitMQ too; kombu's own error
    comes only from the Redis broker (the watchdog's requeue)."""
    services: Any = SimpleNamespace(settings=None, store=SimpleNamespace(errors=(ConnectionError,)), say=print)
    watcher = Watcher(tmp_path, services, print, None, 100)

    def sync(_: list[str]) -> None:
        raise exc

    monkeypatch.setattr(watcher, "_sync", sync)
    line, _ = watcher.sync_once()
    assert line.error is not None and line.error.startswith(said) and line.retry, line
