"""The messages of a worker that is gone (silent for WORKER_DEAD_SECONDS) or restarted (a new
process reports under its node name), put back on their queues with kombu's own restore: by the
producer that waits for a run (producer/recovery.py), and by the workers themselves, one at a time
(workers/resources.py), so that a run nobody waits for (`--no-wait`) goes on as well. Both call
`requeue_gone_workers`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.ports import Dispatcher, RunStore


def lost_messages(
    store: RunStore, dead_after: float, now: float | None = None, started_before: float = 0.0
) -> dict[str, list[str]]:
    """Worker node name -> the Celery task ids it was running when it fell silent; or, for a worker
    that reports, those it was running before its process started (a supervisor restarted a killed
    worker under the same name at once: its heartbeat goes on, the dead process's messages do not),
    started over `started_before` seconds ago."""
    now = time.time() if now is None else now
    beats, starts = store.heartbeats(), store.worker_starts()
    lost: dict[str, list[str]] = {}
    for worker, since in store.running_messages().items():
        if now - beats.get(worker, 0.0) > dead_after:
            ids = [task_id for task_id, ts in since.items() if now - ts > dead_after]
        else:
            ids = [t for t, ts in since.items() if ts < starts.get(worker, 0.0) and now - ts > started_before]
        if ids:
            lost[worker] = ids
    return lost


@dataclass(frozen=True)
class Requeued:
    worker: str
    restarted: bool  # a new process reports under its name (else: it fell silent)
    count: int  # messages put back
    held: int  # of which it was running

    def said(self, dead_after: float) -> str:
        why = "restarted" if self.restarted else f"silent for over {dead_after:g} s"
        return f"worker gone: {self.worker} {why}; requeued {self.count} message(s) ({self.held} it was running)"


def requeue_worker(
    store: RunStore, dispatcher: Dispatcher, worker: str, task_ids: list[str], dead_after: float
) -> Requeued:
    """A silent (or restarted) worker's messages, back on their queues (not those another worker,
    or the worker's new process, runs)."""
    restarted = worker in store.live_workers(dead_after)
    running = store.running_messages()
    live = {t for other, ids in running.items() if other != worker or restarted for t in ids} - set(task_ids)
    # a message delivered before the worker's new process started that nothing runs was the dead
    # process's, taken but not started yet (a live worker starts what it takes at once)
    orphans_before = store.worker_starts().get(worker, 0.0) if restarted else time.time() - dead_after
    count = dispatcher.requeue(set(task_ids), orphans_before, live)
    store.messages_ended(worker, *task_ids)
    return Requeued(worker, restarted, count, len(task_ids))


def requeue_gone_workers(
    store: RunStore,
    dispatcher: Dispatcher,
    dead_after: float,
    say: Callable[[str], None],
    last_death: float,
    started_before: float = 0.0,
) -> float:
    """The messages of the workers gone or restarted (`lost_messages`) put back on their queues,
    each worker's said; while none is found, for ten times `dead_after` after one last was
    (`last_death`, time.time(); 0.0: never) or after a worker's consumer last connected again to
    its broker (a Redis restart, a partition: Celery drops what the lost connection had delivered
    and not started, and kombu cannot put it back on a dead connection), the unacknowledged
    messages that nothing runs, which are orphans only `dead_after` after their delivery. Nothing
    where the broker gives a lost consumer's messages back itself (RabbitMQ: `restores_unacked`).
    Returns when a gone worker was last found."""
    if not dispatcher.restores_unacked:
        return last_death
    now = time.time()
    lost = lost_messages(store, dead_after, now, started_before)
    for worker, task_ids in lost.items():
        say(requeue_worker(store, dispatcher, worker, task_ids, dead_after).said(dead_after))
    if lost:
        return now
    if now - max([last_death, *store.broker_reconnects().values()]) < 10 * dead_after:
        live = {t for ids in store.running_messages().values() for t in ids}
        if count := dispatcher.requeue(set(), now - dead_after, live):
            say(f"requeued {count} message(s) taken but never started by a worker that is gone or lost its broker")
    return last_death
