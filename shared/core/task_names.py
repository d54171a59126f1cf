"""The Celery tasks' names, in a module of their own: `producer monitor` reads them without
loading pydantic."""

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
