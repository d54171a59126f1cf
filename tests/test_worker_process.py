"""What a worker process keeps once (workers/celery_app.py): the settings read and checked as the
app is made, and one Dispatcher, used by its tasks (workers/task_base.py, workers/tasks.py) and
its resource thread (workers/resources.py). No servers: nothing here connects."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import shared.settings
import workers.tasks
from workers import celery_app
from workers.resources import ResourceGuard


@pytest.fixture
def no_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the settings again (Settings(), load_settings) fails the test."""

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("the settings were read again")

    monkeypatch.setattr(shared.settings.Settings, "__init__", refused)


def test_the_tasks_take_the_settings_the_app_was_made_with(no_settings_read: None) -> None:
    task = workers.tasks.sync_batch
    assert task._resources().settings is celery_app.settings


def test_the_resource_thread_takes_the_settings_the_app_was_made_with(no_settings_read: None) -> None:
    consumer = SimpleNamespace(app=celery_app.app, hostname="w1@test")
    assert ResourceGuard._watch(consumer).settings is celery_app.settings


def test_released_workflow_tasks_and_the_tasks_own_messages_go_through_the_one_dispatcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert workers.tasks.dispatcher is celery_app.dispatcher
    sent: list[tuple[Any, ...]] = []
    one = SimpleNamespace(publish_tasks=lambda *args: sent.append(args))
    monkeypatch.setattr(celery_app, "dispatcher", one)
    res = workers.tasks.run_workflow_tasks._resources()
    monkeypatch.setattr(res, "releases", None)  # made anew here, put back after
    monkeypatch.setattr(res, "store", SimpleNamespace(published=lambda run_id, ids: None))
    workers.tasks.run_workflow_tasks.releases()._send("run1", [[("t1", 0, 0)]])
    assert sent == [("run1", [[("t1", 0, 0)]], celery_app.settings.batch_size)]


def test_a_consumer_that_connected_again_is_known_to_the_tasks_before_they_take_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Celery starts a consumer's steps again after a lost broker connection, before its loop takes
    the first message of the new connection: the tasks of the process, and its heartbeat, know."""
    guard = ResourceGuard(SimpleNamespace())
    guard._thread = SimpleNamespace(is_alive=lambda: True)  # the resource thread runs already
    consumer = SimpleNamespace(app=celery_app.app, hostname="w1@test", restart_count=0)
    res = workers.tasks.run_workflow_tasks._resources()
    monkeypatch.setattr(res, "reconnected", 0.0)
    guard.start(consumer)  # the first start is no reconnect
    assert workers.tasks.run_workflow_tasks.reconnected() == 0.0
    consumer.restart_count = 1
    guard.start(consumer)
    assert workers.tasks.run_workflow_tasks.reconnected() > 0.0
    assert guard._host is not None and guard._host.reconnected == res.reconnected
