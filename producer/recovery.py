"""Work whose worker is gone, found and requeued while the producer waits.

Two ways. The run state is the truth (shared/core/reconcile.py): work it says may run now that no
queue, no unacknowledged delivery and no live worker carries is published again after
DISPATCH_GRACE_SECONDS, logged with the run, the work and the reason, and counted in
agentq_redispatches_total. That finds a message the Redis broker handed to a dead host's open
BRPOP, which nothing else would bring back.

And each worker writes a heartbeat every RESOURCE_INTERVAL_SECONDS (workers/resources.py) and keeps
the ids of the Celery messages it is running (workers/tasks.py). When a worker has been silent
for WORKER_DEAD_SECONDS, those messages are put back on their queues with kombu's own restore
(the same one the visibility timeout would use an hour later), so the run goes on in seconds on
the workers that remain. Redelivery is safe: every task ends at most once (end_task.lua), a
sync batch of a finished run does nothing, and writes compare content keys.

The broker is reached through the Dispatcher port (shared/ports.py), made only when first needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from shared.core import reconcile
from shared.core.exceptions import BrokerUnavailable, RunTimedOut
from shared.core.run_model import SYNC_BATCH_TASK, Status
from shared.core.task_names import TaskName, start_queue
from shared.metrics import Metrics
from shared.ports import Dispatcher, Message, RunStore
from shared.requeue import requeue_gone_workers
from shared.run_metrics import record_run
from shared.settings import Settings


class Watchdog:
    """Called from the producer's wait loop: requeues lost work now and then, and says once per
    stall which nodes have not moved on which worker."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        dispatcher: Callable[[], Dispatcher],
        dead_after: float,
        stuck_after: float,
        say: Callable[[str], None],
        every: float = 2.0,
        give_up_after: float | None = None,
        queues: tuple[str, ...] = (),
        grace: float = 5.0,
        batch_size: int = 25,
        suspect: Callable[[], str | None] | None = None,
    ) -> None:
        """`dispatcher`: makes the Dispatcher (once, when the broker is first needed); `queues`: the
        Celery queues the run's messages go to (a worker must take each); `grace`: how long work
        must look lost before it is published again; `suspect`: asked when the run is stuck, what
        may hold it up (a service its workers call), or None."""
        self.store, self.run_id, self.make_dispatcher, self.say = store, run_id, dispatcher, say
        self.dead_after, self.stuck_after, self.every = dead_after, stuck_after, every
        self.give_up_after = give_up_after
        self._moved = time.monotonic()  # last time a node ended (the stuck report resets its own clock)
        self._checked = time.monotonic()
        self._progress: tuple[int, float] = (-1, time.monotonic())
        self._last_death = 0.0  # when a silent worker was last found (time.time(); 0.0: never)
        self._started = time.monotonic()
        self._told_no_worker = False
        self._broker_away = False  # said once per outage
        self.queues = queues
        self.batch_size = batch_size
        self.suspect = suspect
        self.suspects = reconcile.Suspects(grace, cooldown=max(30.0, 3 * grace))
        self._dispatcher: Dispatcher | None = None

    @classmethod
    def for_run(
        cls,
        store: RunStore,
        run_id: str,
        dispatcher: Callable[[], Dispatcher],
        settings: Settings,
        say: Callable[[str], None],
        queues: tuple[str, ...],
        suspect: Callable[[], str | None] | None = None,
    ) -> Watchdog:
        """The watchdog of a run, as every command that waits for one sets it up."""
        return cls(
            store,
            run_id,
            dispatcher,
            settings.worker_dead_seconds,
            settings.stuck_seconds,
            say,
            give_up_after=settings.stall_seconds,
            queues=queues,
            grace=settings.dispatch_grace_seconds,
            batch_size=settings.batch_size,
            suspect=suspect,
        )

    def _say_what_is_missing(self) -> None:
        """Once: no worker at all, or none that takes a queue this run needs (`-Q models` only);
        first of all a full Redis, which stops every worker."""
        full = self.store.full()
        if full is not None:
            self._told_no_worker = True
            self.say(full)
            return
        live = self.store.live_workers(self.dead_after)
        if not live:
            self._told_no_worker = True  # said once: the wait goes on, a worker may yet start
            self.say(
                f"no worker is running: none has reported for {self.dead_after:g} s (WORKER_DEAD_SECONDS); "
                "start one with `celery -A workers worker`"
            )
            return
        self._say_missing_queues(live)

    def _say_missing_queues(self, live: dict[str, list[str] | None]) -> None:
        taken = taken_queues(live)
        missing = [q for q in self.queues if taken is not None and q not in taken]
        if taken is not None and missing:
            self._told_no_worker = True
            names = ", ".join(missing)
            self.say(
                f"no running worker takes the queue(s) this run needs: {names} (the {len(live)} running take "
                f"{', '.join(sorted(taken)) or 'none'}); start one with `celery -A workers worker -Q {','.join(missing)}`"
            )

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done != self._progress[0]:
            self._progress, self._moved = (done, now), now
        self._give_up_if_stalled(now)
        if now - self._checked < self.every:
            return
        self._checked = now
        if not self._told_no_worker and now - self._started > self.dead_after:
            self._say_what_is_missing()
        self._recover()
        if now - self._progress[1] > self.stuck_after:
            self._progress = (done, now)
            self._say_where_it_is_stuck()

    def _recover(self) -> None:
        """Lost work sent again, gone workers' messages put back. A broker restart or partition is
        ridden out: what could not be sent is sent at a later check (and a broker that keeps its
        messages, as RabbitMQ's durable queues do, gives them back itself); STALL_SECONDS still
        ends a run that no longer moves."""
        try:
            self._reconcile()
            self._requeue_gone_workers()
        except BrokerUnavailable as exc:
            if not self._broker_away:
                self.say(f"run {self.run_id}: {exc}; waiting for it (lost work is sent again once it is back)")
            self._broker_away = True

    def _give_up_if_stalled(self, now: float) -> None:
        if self.give_up_after is not None and now - self._moved > self.give_up_after:
            cause = (self.suspect() if self.suspect else None) or "are workers running on its queues?"
            raise RunTimedOut(f"run {self.run_id}: no node ended for {self.give_up_after:g} s (STALL_SECONDS); {cause}")

    def _requeue_gone_workers(self) -> None:
        """The unacknowledged messages of workers silent for dead_after, put back on their queues
        (shared/requeue.py, as the workers' chore does it)."""
        self._last_death = requeue_gone_workers(
            self.store, self.dispatcher(), self.dead_after, self.say, self._last_death
        )

    def _say_where_it_is_stuck(self) -> None:
        running = {
            label: st.worker or "?"
            for label, st in self.store.open_states(self.run_id).items()
            if st.status == Status.RUNNING
        }
        where = "; ".join(f"{label} on {worker}" for label, worker in sorted(running.items())[:10]) or "none running"
        cause = self.store.full() or (self.suspect() if self.suspect else None)
        stuck = time.monotonic() - self._moved  # since the last node ended, not since this was last said
        self.say(f"no progress for {stuck:.0f} s: {where}{f' ({cause})' if cause else ''}")

    # ---- the run state against what the broker carries ------------------------------------------
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = self.make_dispatcher()
        return self._dispatcher

    def _seen(self) -> reconcile.Seen:
        live = self.store.live_workers(self.dead_after)
        running = {t for w, ids in self.store.running_messages().items() if w in live for t in ids}
        held = self.dispatcher().in_flight(self.queues)  # None: RabbitMQ, which cannot be looked into so
        carried = None if held is None else carried_items(held, self.run_id)
        return reconcile.Seen(carried, frozenset(live), frozenset(running))

    def _reconcile(self) -> None:
        view = self.store.reconcile_view(self.run_id)
        if view is None:
            return
        seen = self._seen()
        if isinstance(view, reconcile.WorkflowView):
            lost = reconcile.lost_workflow_work(view, seen)
        else:
            lost = reconcile.lost_sync_work(view, seen)
        due = self.suspects.due(time.monotonic(), lost)
        if due:
            self._dispatch_again(due, isinstance(view, reconcile.WorkflowView))

    def _dispatch_again(self, due: list[reconcile.Lost], workflow: bool) -> None:
        metrics = Metrics()
        self._send_tasks_again([task for lost in due if (task := reconcile.task_of(lost.item)) is not None])
        meta = self.store.meta(self.run_id)
        batch_task = meta.batch_task if meta else SYNC_BATCH_TASK
        for lost in due:
            self._send_step_again(lost.item, batch_task, workflow)
            metrics.inc("agentq_redispatches_total", ["workflow" if workflow else "sync", lost.cause])
        self.store.flush(metrics)
        if self._broker_away:  # it took what was sent
            self.say(f"run {self.run_id}: the broker is back")
            self._broker_away = False
        self._say_dispatched(due)

    def _send_step_again(self, item: str, batch_task: str, workflow: bool) -> None:
        """A lost sync batch or run step, sent again; a workflow's lost last step is taken here."""
        message = step_message(item, self.run_id, batch_task, workflow)
        if message is not None:
            self.dispatcher().send_again(*message, queue=start_queue("workflow" if workflow else "sync"))
        elif item == reconcile.FINALIZE and self.store.claim(self.run_id, reconcile.FINISHED):
            record_run(self.store, self.store.finish_run(self.run_id))  # a workflow's last step is no message

    def _send_tasks_again(self, tasks: list[str]) -> None:
        """Lost workflow tasks, batch_size to a message."""
        for i in range(0, len(tasks), self.batch_size):
            # no priority: the routes' default serves late work first on either broker
            self.dispatcher().send_again(TaskName.RUN_TASKS, (self.run_id, tasks[i : i + self.batch_size]))
        if tasks:
            self.store.published(self.run_id, tasks)

    def _say_dispatched(self, due: list[reconcile.Lost]) -> None:
        by_reason: dict[str, list[str]] = {}
        for lost in due:
            by_reason.setdefault(lost.reason, []).append(lost.item)
        for reason, items in by_reason.items():
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            self.say(f"run {self.run_id}: dispatched again {len(items)} item(s) ({shown}): {reason}")


def taken_queues(live: Mapping[str, list[str] | None]) -> set[str] | None:
    """The queues live workers take (None: one does not say which, so it may take them all)."""
    if any(queues is None for queues in live.values()):
        return None
    return {q for queues in live.values() for q in queues or ()}


def carried_items(held: Iterable[Message], run_id: str) -> frozenset[str]:
    """The work items of the run that the broker's messages carry."""
    return frozenset(item for name, _, args in held for item in reconcile.carried_by(name, args, run_id))


def step_message(item: str, run_id: str, batch_task: str, workflow: bool) -> tuple[str, tuple[object, ...]] | None:
    """The Celery task and arguments that carry a lost sync batch or run step again (None: a
    workflow task, sent apart, or a workflow's finalize, which is no message)."""
    kind, _, rest = item.partition(":")
    if kind == "batch":
        wave, index = rest.split(":")
        return batch_task, (run_id, int(wave), int(index))
    if kind == "wave-done":
        return TaskName.WAVE_DONE, (None, run_id, int(rest))
    steps = {reconcile.START: TaskName.START_RUN, **({} if workflow else {reconcile.FINALIZE: TaskName.FINALIZE})}
    return (steps[item], (run_id,)) if item in steps else None
