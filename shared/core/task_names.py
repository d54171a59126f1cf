"""The Celery tasks' names, in a module of their own: `producer monitor` reads them without
loading pydantic."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    """The Celery tasks (workers/tasks.py), by the names their messages carry."""

    START_RUN = "agentq.start_run"
    SYNC_BATCH = "agentq.sync_batch"  # runs a sync batch, unless a run names another (batch_task)
    NOOP_BATCH = "agentq.noop_batch"  # a batch that does no work (benchmarks)
    WAVE_DONE = "agentq.wave_done"
    FINALIZE = "agentq.finalize"
    NOOP = "agentq.noop"
    RUN_TASKS = "agentq.run_tasks"  # workflow tasks released together
    LOAD_COMPONENT = "agentq.load_component"
