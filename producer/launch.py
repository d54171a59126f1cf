"""One way to start a run, sync or workflow: write its state to Redis and publish one small
message, or, when nothing needs doing, close the run at once. Returns the run's meta."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

from shared.core.exceptions import BrokerUnavailable, ServiceUnavailable, StartInterrupted
from shared.core.run_model import RunMeta, RunState
from shared.core.task_names import start_queue
from shared.metrics import Metrics
from shared.run_metrics import record_run

if TYPE_CHECKING:
    from shared.ports import Dispatcher, RunStore


class RunStart(TypedDict):
    """The fields every run starts with: a new id, its clock, running (RunMeta(**new_run(), ...))."""

    run_id: str
    created: float
    state: RunState


def new_run() -> RunStart:
    return RunStart(run_id=uuid.uuid4().hex[:12], created=time.time(), state=RunState.RUNNING)


def launch(
    store: RunStore,
    meta: RunMeta,
    write: Callable[[RunMeta], None],
    metrics: Metrics,
    dispatcher: Dispatcher | None,
) -> RunMeta:
    """`meta`: the run as it starts (new_run). `write(meta)` stores the run's state
    (shared/adapters/redis/store.py). `dispatcher` is None when nothing is to be enqueued: the run
    is finished as it is written."""
    if dispatcher is None:
        meta = meta.model_copy(update={"state": RunState.FINISHED, "finished": meta.created})
    write(meta)
    try:
        store.flush(metrics)
        if dispatcher is None:
            record_run(store, meta)
            return meta
        dispatcher.start_run(meta.run_id, start_queue(meta.kind))
    except BrokerUnavailable as exc:  # no worker will ever see the run: `producer status` says why it ended
        _end(store, meta.run_id, str(exc))
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C before the start was sent: nothing would ever carry the run
        _end(store, meta.run_id, INTERRUPTED)
        raise StartInterrupted(meta.run_id) from exc
    except store.errors as exc:
        raise ServiceUnavailable(
            f"Redis became unreachable as run {meta.run_id} started ({exc}): {_when_back(meta.run_id)}"
        ) from None
    except BaseException:  # SIGTERM, as Ctrl-C
        _end(store, meta.run_id, INTERRUPTED)
        raise
    return meta


def _end(store: RunStore, run_id: str, why: str) -> None:
    """End a run whose start was not sent; one Redis does not answer for is said, with its id."""
    try:
        store.finish_run(run_id, error=why)
    except store.errors as exc:
        raise ServiceUnavailable(f"{why}; and Redis is unreachable ({exc}): {_when_back(run_id)}") from None


def _when_back(run_id: str) -> str:
    return (
        f"run {run_id} is written but not started; the workers start it once they reach Redis again "
        f"(`producer status {run_id}` follows it, `producer cancel {run_id}` stops it)"
    )


# why a run whose command ended before its start was sent is over (a worker that gets it anyway
# finds it finished and does nothing)
INTERRUPTED = "the command was interrupted before the run's start reached the broker: nothing of it ran"
