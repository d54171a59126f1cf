"""Lost work found from the run state (shared/core/reconcile.py), without servers."""

from __future__ import annotations

from shared.core.reconcile import (
    FINALIZE,
    START,
    Lost,
    NodeView,
    Seen,
    Suspects,
    SyncView,
    WorkflowView,
    batch_item,
    carried_by,
    lost_sync_work,
    lost_workflow_work,
    task_item,
    wave_done_item,
)

LIVE = frozenset({"w1"})


def seen(*carried: str, running: frozenset[str] = frozenset()) -> Seen:
    return Seen(frozenset(carried), LIVE, running)


def workflow(**nodes: NodeView) -> WorkflowView:
    # b waits for a (one open input); a and c wait for nothing
    return WorkflowView(dict(nodes), {"b": 1}, started=True, left=len(nodes), finished=False)


def items(lost: list[Lost]) -> set[str]:
    return {x.item for x in lost}


def test_a_released_task_nobody_carries_is_lost_and_one_that_waits_is_not() -> None:
    view = workflow(a=NodeView("pending"), b=NodeView("pending"), c=NodeView("pending"))
    assert items(lost_workflow_work(view, seen(task_item("c")))) == {task_item("a")}


def test_a_task_running_on_a_gone_worker_or_held_by_no_message_is_lost() -> None:
    view = workflow(
        a=NodeView("running", "dead", "m1"),  # its worker is gone and its message is nowhere
        c=NodeView("running", "w1", "m2"),  # its worker lives but runs no such message
        d=NodeView("running", "w1", "m3"),  # fine: w1 runs m3
        e=NodeView("running", "dead", "m4"),  # fine: its message is unacknowledged, restored by the watchdog
        f=NodeView("done", "dead", "m5"),
    )
    lost = lost_workflow_work(view, seen(task_item("e"), running=frozenset({"m3"})))
    assert {(x.item, x.cause) for x in lost} == {(task_item("a"), "worker-gone"), (task_item("c"), "not-held")}


def test_where_the_broker_cannot_be_looked_into_only_a_gone_workers_running_task_is_lost() -> None:
    """RabbitMQ: a released task may be queued there (not lost); a running one whose worker is gone
    is sent again before RabbitMQ's heartbeats give its message back."""
    view = workflow(a=NodeView("pending"), c=NodeView("running", "dead", "m1"), d=NodeView("running", "w1", "m2"))
    lost = lost_workflow_work(view, Seen(None, LIVE, frozenset({"m2"})))
    assert [(x.item, x.cause) for x in lost] == [(task_item("c"), "worker-gone")]


def test_a_workflow_whose_tasks_all_ended_but_is_not_finished_is_finished() -> None:
    view = WorkflowView({"a": NodeView("done")}, {}, started=True, left=0, finished=False)
    assert items(lost_workflow_work(view, seen())) == {FINALIZE}
    assert lost_workflow_work(WorkflowView({}, {}, True, 0, finished=True), seen()) == []


def test_a_start_message_nobody_carries_is_sent_again() -> None:
    view = WorkflowView({"a": NodeView("pending")}, {}, started=False, left=1, finished=False)
    assert items(lost_workflow_work(view, seen())) == {START}
    assert lost_workflow_work(view, seen(START)) == []


def sync(claims: set[str], **nodes: NodeView) -> SyncView:
    # group 1: batch 0 [a, b], batch 1 [c]; group 2: batch 0 [d]
    return SyncView(dict(nodes), [[["a", "b"], ["c"]], [["d"]]], frozenset(claims), finished=False)


def test_a_sync_batch_nobody_carries_is_sent_again_and_a_later_group_waits() -> None:
    view = sync({START}, a=NodeView("done"), b=NodeView("pending"), c=NodeView("pending"), d=NodeView("pending"))
    assert items(lost_sync_work(view, seen(batch_item(0, 1)))) == {batch_item(0, 0)}


def test_a_group_that_ended_without_its_next_step_gets_it() -> None:
    view = sync({START}, a=NodeView("done"), b=NodeView("failed"), c=NodeView("cached"), d=NodeView("pending"))
    assert items(lost_sync_work(view, seen())) == {wave_done_item(0)}
    done = {label: NodeView("done") for label in "abcd"}
    view = sync({START, wave_done_item(0), wave_done_item(1)}, **done)
    assert items(lost_sync_work(view, seen())) == {FINALIZE}
    assert lost_sync_work(view, seen(FINALIZE)) == []


def test_messages_are_read_as_the_work_they_carry() -> None:
    assert carried_by("agentq.run_tasks", ["r1", ["a", "b"]], "r1") == {task_item("a"), task_item("b")}
    assert carried_by("agentq.run_tasks", ["r2", ["a"]], "r1") == set()
    assert carried_by("agentq.sync_batch", ["r1", 2, 5], "r1") == {batch_item(2, 5)}
    assert carried_by("agentq.wave_done", [None, "r1", 0], "r1") == {wave_done_item(0)}
    assert carried_by("agentq.finalize", ["r1"], "r1") == {FINALIZE}
    assert carried_by("agentq.start_run", ["r1"], "r1") == {START}


def test_work_is_dispatched_again_only_after_it_stayed_lost_for_the_grace_and_not_twice() -> None:
    suspects = Suspects(grace=5, cooldown=30)
    lost = [Lost("task:a", "released, but in no queue and on no worker")]
    assert suspects.due(0, lost) == []
    assert suspects.due(4, lost) == []
    assert suspects.due(5, lost) == lost
    assert suspects.due(6, lost) == []  # cooling down: the new message may not be seen yet
    assert suspects.due(7, []) == []  # seen again meanwhile: its clock starts over
    assert suspects.due(40, lost) == []
    assert suspects.due(45, lost) == lost


def test_where_the_broker_cannot_be_looked_into_a_released_task_never_published_is_lost() -> None:
    """The outbox: a task released (its end script said so) whose publisher never said it went out."""
    view = WorkflowView(
        {"a": NodeView("pending"), "b": NodeView("pending"), "c": NodeView("done")},
        {},
        started=True,
        left=2,
        finished=False,
        unpublished=frozenset({"a", "c"}),
    )
    lost = lost_workflow_work(view, Seen(None, LIVE, frozenset()))
    assert [(x.item, x.cause) for x in lost] == [(task_item("a"), "unpublished")]
