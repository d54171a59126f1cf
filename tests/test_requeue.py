"""A gone worker's messages put back on their queues (shared/requeue.py), as the producer's
watchdog (producer/recovery.py) and the workers' chore (workers/resources.py) both do it: the
store and the broker faked; no servers."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from producer.recovery import Watchdog
from shared.requeue import requeue_gone_workers
from workers import celery_app
from workers.resources import Host

DEAD_AFTER = 10.0
ORPHANS_SAID = "requeued {} message(s) taken but never started by a worker that is gone or lost its broker"


class Cluster:
    """Heartbeats, process starts and the messages each worker runs, as Redis holds them."""

    def __init__(self, beats: dict[str, float], running: dict[str, dict[str, float]]) -> None:
        self.beats, self.running, self.starts = beats, running, dict[str, float]()
        self.reconnects = dict[str, float]()

    def heartbeats(self) -> dict[str, float]:
        return dict(self.beats)

    def worker_starts(self) -> dict[str, float]:
        return dict(self.starts)

    def broker_reconnects(self) -> dict[str, float]:
        return dict(self.reconnects)

    def running_messages(self) -> dict[str, dict[str, float]]:
        return {w: dict(ids) for w, ids in self.running.items()}

    def live_workers(self, fresh_within: float) -> dict[str, list[str] | None]:
        return {w: None for w, ts in self.beats.items() if time.time() - ts <= fresh_within}

    def messages_ended(self, worker: str, *task_ids: str) -> None:
        for task_id in task_ids:
            self.running.get(worker, {}).pop(task_id, None)

    def take_turn(self, what: str, seconds: float) -> bool:
        return True


class Broker:
    """The Dispatcher port's requeue: what it was asked, and how many it says it put back."""

    def __init__(self, restores_unacked: bool = True, orphans: int = 0) -> None:
        self.restores_unacked, self.orphans = restores_unacked, orphans
        self.asked: list[tuple[set[str], float, set[str]]] = []

    def requeue(self, task_ids: set[str], orphans_before: float, live: set[str]) -> int:
        self.asked.append((task_ids, orphans_before, live))
        return len(task_ids) or self.orphans


def _silent_worker() -> Cluster:
    now = time.time()
    return Cluster({"gone@h": now - 3 * DEAD_AFTER, "alive@h": now}, {"gone@h": {"t1": now - 2 * DEAD_AFTER}})


def test_a_silent_workers_messages_are_put_back_then_its_orphans_for_ten_times_dead_after() -> None:
    cluster, broker, said = _silent_worker(), Broker(orphans=2), list[str]()
    found = requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, 0.0)  # type: ignore[arg-type]
    assert abs(found - time.time()) < 5 and broker.asked[0][0] == {"t1"}
    assert said == [f"worker gone: gone@h silent for over {DEAD_AFTER:g} s; requeued 1 message(s) (1 it was running)"]
    assert requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, found) == found  # type: ignore[arg-type]
    assert broker.asked[1][0] == set() and said[1] == ORPHANS_SAID.format(2)
    long_ago = time.time() - 10 * DEAD_AFTER - 1
    assert requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, long_ago) == long_ago  # type: ignore[arg-type]
    assert len(broker.asked) == 2, "orphans looked for past ten times dead_after"


def test_after_a_worker_connected_again_to_its_broker_the_messages_nothing_runs_are_put_back() -> None:
    """A Redis restart or a partition: Celery dropped what the lost connection had delivered and
    not started, and kombu could not restore it (Redis was gone), so it sits unacknowledged with
    nobody on it. No worker is gone; the worker's reconnect opens the same window a death does."""
    now = time.time()
    cluster, broker, said = Cluster({"w@h": now}, {"w@h": {"t9": now - 1}}), Broker(orphans=3), list[str]()
    assert requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, 0.0) == 0.0  # type: ignore[arg-type]
    assert broker.asked == [], "no death, no reconnect: a live worker's unacknowledged messages are its own"
    cluster.reconnects["w@h"] = now - 2 * DEAD_AFTER
    assert requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, 0.0) == 0.0  # type: ignore[arg-type]
    task_ids, orphans_before, live = broker.asked[0]
    assert task_ids == set() and live == {"t9"} and abs(orphans_before - (now - DEAD_AFTER)) < 5
    assert said == [ORPHANS_SAID.format(3)]
    cluster.reconnects["w@h"] = now - 10 * DEAD_AFTER - 1
    requeue_gone_workers(cluster, broker, DEAD_AFTER, said.append, 0.0)  # type: ignore[arg-type]
    assert len(broker.asked) == 1, "orphans looked for past ten times dead_after after the reconnect"


def test_a_broker_that_gives_lost_messages_back_itself_is_left_alone() -> None:
    """RabbitMQ: the port says so (restores_unacked), and nothing is asked of the store or broker."""
    broker = Broker(restores_unacked=False)
    assert requeue_gone_workers(None, broker, DEAD_AFTER, print, 7.0) == 7.0  # type: ignore[arg-type]
    assert broker.asked == []


def test_the_watchdog_requeues_through_it_and_says_so() -> None:
    cluster, broker, said = _silent_worker(), Broker(), list[str]()
    dog = Watchdog(cluster, "r1", lambda: broker, DEAD_AFTER, 120, said.append)  # type: ignore[arg-type]
    dog._requeue_gone_workers()
    assert broker.asked[0][0] == {"t1"} and said[0].startswith("worker gone: gone@h silent")


def test_the_workers_chore_requeues_through_it_with_the_process_dispatcher(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At twice WORKER_DEAD_SECONDS, through the worker process's one Dispatcher, and logged."""
    now = time.time()
    cluster = Cluster({"gone@h": now - 5 * DEAD_AFTER}, {"gone@h": {"t1": now - 3 * DEAD_AFTER}})
    broker = Broker()
    monkeypatch.setattr(celery_app, "dispatcher", broker)
    settings: Any = SimpleNamespace(worker_dead_seconds=DEAD_AFTER)
    host = Host(celery_app.app, None, "me@h", cluster, [], settings)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "agentq.throttle"):
        host._requeue_gone_workers()
    assert broker.asked[0][0] == {"t1"} and host.last_death > now
    assert f"gone@h silent for over {2 * DEAD_AFTER:g} s; requeued 1" in caplog.text
