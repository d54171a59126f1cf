"""Lost work, found from the run state: the run state is the truth, the queue only carries it.

A message can vanish without a trace on the Redis broker: Redis hands it to a consumer whose host
died while it waited in BRPOP (the connection stays open on Redis's side until TCP notices), so it
is in no queue, not among the unacknowledged, and on no worker. Temporal and Hatchet keep such a
lost dispatch from hanging a run the same way: what the run state says may run now, and nobody
carries, is dispatched again. Ending a node is idempotent (end_task.lua, claims), so a second copy
that does run changes nothing.

Everything here is pure: the caller (producer/recovery.py) reads a run's state and what the
broker holds, and publishes what `lost_work` returns once `Suspects` has seen it lost for a while.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.core.run_model import TERMINAL, Status
from shared.core.task_names import TaskName

# The work items a message can carry, as keys: one per workflow task or sync batch, and one per
# run step that has no node of its own
START = "start"
FINALIZE = "finalize"
# What a run claims once (Store.claim) besides its start and each wave's end (wave_done_item):
FINISHED = "finished"  # marking it finished
TEAM_LISTING = "team-listing"  # listing Studio's teams for the run's workers


def task_item(task_id: str) -> str:
    return f"task:{task_id}"


def task_of(item: str) -> str | None:
    """The workflow task id a work item names (None: it names a batch or a step)."""
    kind, _, task_id = item.partition(":")
    return task_id if kind == "task" else None


def batch_item(wave: int, index: int) -> str:
    return f"batch:{wave}:{index}"


def wave_done_item(wave: int) -> str:
    return f"wave-done:{wave}"


def _tasks_carried(args: Sequence[object], run_id: str) -> set[str]:
    if len(args) == 2 and args[0] == run_id and isinstance(args[1], list):
        return {task_item(str(t)) for t in args[1]}
    return set()


def _batch_carried(args: Sequence[object], run_id: str) -> set[str]:
    return {batch_item(int(str(args[1])), int(str(args[2])))} if len(args) == 3 and args[0] == run_id else set()


def _wave_done_carried(args: Sequence[object], run_id: str) -> set[str]:
    return {wave_done_item(int(str(args[2])))} if len(args) == 3 and args[1] == run_id else set()


def _step_carried(step: str) -> Callable[[Sequence[object], str], set[str]]:
    return lambda args, run_id: {step} if list(args) == [run_id] else set()


# Celery task name -> the work items of a run its message's arguments carry (read-only)
CARRIERS: Mapping[str, Callable[[Sequence[object], str], set[str]]] = MappingProxyType(
    {
        TaskName.RUN_TASKS: _tasks_carried,
        TaskName.SYNC_BATCH: _batch_carried,
        TaskName.NOOP_BATCH: _batch_carried,
        TaskName.WAVE_DONE: _wave_done_carried,
        TaskName.FINALIZE: _step_carried(FINALIZE),
        TaskName.START_RUN: _step_carried(START),
    }
)


def carried_by(name: str, args: Sequence[object], run_id: str) -> set[str]:
    """The work items of run `run_id` that a message of Celery task `name` with `args` carries."""
    carried = CARRIERS.get(name)
    return carried(args, run_id) if carried else set()


@dataclass(frozen=True)
class NodeView:
    """What the reconciler needs of a node's state."""

    status: str
    worker: str | None = None  # the node that runs it, while it runs
    message: str | None = None  # the Celery message that carried it there


@dataclass(frozen=True)
class Seen:
    """Where a run's work is now. `carried`: the work items of messages in a queue or delivered
    but unacknowledged (None: this broker cannot be looked into; it redelivers on its own)."""

    carried: frozenset[str] | None
    live_workers: frozenset[str]
    running_messages: frozenset[str]  # Celery messages live workers are running


@dataclass(frozen=True)
class WorkflowView:
    nodes: Mapping[str, NodeView]
    open_inputs: Mapping[str, int]  # a task released has none left (tasks without inputs are absent)
    started: bool  # the run's start message has been taken (claim "start")
    left: int  # tasks still to end
    finished: bool
    unpublished: frozenset[str] = frozenset()  # released, and their publisher has not said they went out


@dataclass(frozen=True)
class SyncView:
    nodes: Mapping[str, NodeView]
    batches: Sequence[Sequence[Sequence[str]]]  # per wave, per batch: its labels
    claims: frozenset[str]  # "start", "wave-done:<w>" taken so far
    finished: bool


@dataclass(frozen=True)
class Lost:
    """One work item to dispatch again, why (for people), and its cause (a metric label)."""

    item: str
    reason: str
    cause: str = "unclaimed"  # unclaimed, worker-gone, not-held, step


def _node_lost(node: NodeView, released: bool, seen: Seen, item: str) -> Lost | None:
    """Why a node that has not ended is lost, or None while something carries it or it must wait.
    A node running on a worker that is gone, or that holds no message for it, is lost whatever the
    broker: RabbitMQ gives a dead consumer's messages back only once its heartbeats have failed
    (20 to 30 s), the worker's silence is seen sooner. A released node nobody runs can be called
    lost only where the broker can be looked into (on RabbitMQ it may be queued)."""
    if node.status in TERMINAL or (seen.carried is not None and item in seen.carried):
        return None
    if node.status == Status.RUNNING:
        return _running_lost(node, seen, item)
    if released and seen.carried is not None:
        return Lost(item, "released, but in no queue and on no worker")
    return None


def _running_lost(node: NodeView, seen: Seen, item: str) -> Lost | None:
    """A running node whose worker is gone, or holds no message for it."""
    if node.worker and node.worker not in seen.live_workers:
        return Lost(item, f"its worker {node.worker} is gone", "worker-gone")
    if node.message not in seen.running_messages:
        return Lost(item, f"marked running on {node.worker}, which holds no message for it", "not-held")
    return None


def _uncarried_step(item: str, seen: Seen, reason: str) -> list[Lost]:
    """A run step (start, finalize) that no message carries, where the broker can be looked into."""
    if seen.carried is not None and item not in seen.carried:
        return [Lost(item, reason, "step")]
    return []


def lost_workflow_work(view: WorkflowView, seen: Seen) -> list[Lost]:
    if view.finished:
        return []
    if view.left == 0:
        return [Lost(FINALIZE, "every task has ended but the run was not marked finished", "step")]
    if not view.started:
        return _uncarried_step(START, seen, "the run's start message is in no queue")
    found = (
        _node_lost(node, view.open_inputs.get(tid, 0) <= 0, seen, task_item(tid)) for tid, node in view.nodes.items()
    )
    lost = [lost for lost in found if lost]
    return lost + (_unpublished(view) if seen.carried is None else [])


def _unpublished(view: WorkflowView) -> list[Lost]:
    """A released task whose publish never happened (its worker lost its broker between the end
    that released it and the publish) is lost on any broker: the outbox says so (the grace covers
    the moment between the two). Where the broker can be looked into, _node_lost finds it."""
    return [
        Lost(task_item(tid), "released, but its publish never happened", "unpublished")
        for tid in sorted(view.unpublished)
        if view.nodes.get(tid, NodeView(Status.PENDING)).status == Status.PENDING
    ]


def _lost_batches(view: SyncView, seen: Seen, wave: int) -> list[Lost]:
    """A released group's batches nobody carries: one re-publication carries a whole batch."""
    pending = NodeView(Status.PENDING)
    lost: list[Lost] = []
    for index, labels in enumerate(view.batches[wave]):
        found = (_node_lost(view.nodes.get(lbl, pending), True, seen, batch_item(wave, index)) for lbl in labels)
        first = next((f for f in found if f), None)
        if first:
            lost.append(first)
    return lost


def _lost_group_step(view: SyncView, seen: Seen, wave: int) -> list[Lost]:
    """A group's next step, when every node of the group has ended without it."""
    pending = NodeView(Status.PENDING)
    ended = all(view.nodes.get(lbl, pending).status in TERMINAL for labels in view.batches[wave] for lbl in labels)
    done = wave_done_item(wave)
    if ended and done not in view.claims and (seen.carried is None or done not in seen.carried):
        # the chord's body never fired (a header message ran twice, or its result was lost)
        return [Lost(done, f"every node of group {wave + 1} has ended but the next step was not taken", "step")]
    return []


def _lost_in_group(view: SyncView, seen: Seen, wave: int) -> list[Lost]:
    return _lost_batches(view, seen, wave) + _lost_group_step(view, seen, wave)


def lost_sync_work(view: SyncView, seen: Seen) -> list[Lost]:
    if view.finished:
        return []
    if START not in view.claims:
        return _uncarried_step(START, seen, "the run's start message is in no queue")
    lost = [item for wave in _released_groups(view) for item in _lost_in_group(view, seen, wave)]
    if not view.batches or wave_done_item(len(view.batches) - 1) in view.claims:
        lost += _uncarried_step(FINALIZE, seen, "every group has ended but the run was not finished")
    return lost


def _released_groups(view: SyncView) -> list[int]:
    """The groups released so far: the first, and each whose previous group's step was taken."""
    return [w for w in range(len(view.batches)) if w == 0 or wave_done_item(w - 1) in view.claims]


@dataclass
class Suspects:
    """Work items seen lost, dispatched again only once they have stayed lost for `grace` seconds
    across looks (a message between a queue and a worker's hands is out of sight for a moment),
    and then not again for `cooldown` seconds (the new message needs time to be seen)."""

    grace: float
    cooldown: float
    since: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)

    def due(self, now: float, lost: Iterable[Lost]) -> list[Lost]:
        found = {lost_item.item: lost_item for lost_item in lost}
        self.since = {item: self.since.get(item, now) for item in found}
        self.sent = {item: at for item, at in self.sent.items() if now - at < self.cooldown}
        ready = [found[i] for i, t in self.since.items() if now - t >= self.grace and i not in self.sent]
        for lost_item in ready:
            self.sent[lost_item.item] = now
            del self.since[lost_item.item]
        return ready
