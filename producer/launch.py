"""One way to start a run, sync or workflow: write its state to Redis and publish one small
message, or, when nothing needs doing, close the run at once. Returns the run's id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.core.run_model import RunMeta, RunState
from shared.metrics import Metrics
from shared.run_metrics import record_run

if TYPE_CHECKING:
    from shared.ports import Dispatcher, RunStore


def launch(
    store: RunStore,
    meta: RunMeta,
    write: Callable[[str, RunMeta], None],
    metrics: Metrics,
    dispatcher: Dispatcher | None,
) -> tuple[str, RunMeta]:
    """`meta`: the run's own fields; launch adds its id, clock and state. `write(run_id, meta)`
    stores the run's state (shared/adapters/redis/store.py). `dispatcher` is None when nothing is
    to be enqueued."""
    run_id = uuid.uuid4().hex[:12]
    created = time.time()
    full: RunMeta = {**meta, "run_id": run_id, "created": created, "state": RunState.RUNNING}
    if dispatcher is None:
        full.update(RunMeta(state=RunState.FINISHED, finished=created))
    write(run_id, full)
    store.flush(metrics)
    if dispatcher is None:
        record_run(store, full)
    else:
        dispatcher.start_run(run_id)
    return run_id, full
