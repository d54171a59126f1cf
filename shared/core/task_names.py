"""The Celery tasks' names and queues, whichever broker carries them, in a module of their own:
`producer monitor` reads them without loading pydantic."""

from __future__ import annotations

from typing import Final


class TaskName:
    """The Celery tasks (workers/tasks.py), by the names their messages carry. Plain strings, not
    an enum: Celery takes a task name that is not exactly a str for a task object."""

    START_RUN: Final = "agentq.start_run"
    SYNC_BATCH: Final = "agentq.sync_batch"  # runs a sync batch, unless a run names another (batch_task)
    NOOP_BATCH: Final = "agentq.noop_batch"  # a batch that does no work (benchmarks)
    WAVE_DONE: Final = "agentq.wave_done"
    FINALIZE: Final = "agentq.finalize"
    NOOP: Final = "agentq.noop"
    RUN_TASKS: Final = "agentq.run_tasks"  # workflow tasks released together
    LOAD_COMPONENT: Final = "agentq.load_component"


STUDIO_QUEUE = "studio"  # sync work
MODELS_QUEUE = "models"  # workflow runs, their start too: a worker with `-Q models` runs them whole


def start_queue(kind: str) -> str | None:
    """Where a run's first message goes: a workflow's to the models queue, a sync's by its route."""
    return MODELS_QUEUE if kind == "workflow" else None
