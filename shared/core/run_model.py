"""The typed vocabulary of run state: what a node's status and a run's state can be, and what a
node's state records. Stored as JSON in Redis (shared/store.py): the enums are strings there."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class Status(StrEnum):
    """Where one node (a component of a sync, a task of a workflow) is."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL = (Status.DONE, Status.CACHED, Status.FAILED, Status.SKIPPED)
SUCCEEDED = (Status.DONE, Status.CACHED)
UNSUCCESSFUL = (Status.FAILED, Status.SKIPPED)


class RunState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


class NodeState(TypedDict, total=False):
    """One node's record in a run (every field optional: it grows as the node moves on)."""

    status: Status
    type: str | None  # component type (syncs)
    path: str  # the file it came from
    outcome: str  # created, updated, unchanged, validated, ran
    error: str  # why it failed (secrets scrubbed)
    reason: str  # why it was skipped
    worker: str  # the Celery node that ran it
    task_id: str | None  # the Celery message that carried it
    started: float
    finished: float
    seconds: float
    key: str  # its content key
    team_id: int  # the Studio row (teams)
    drifted: bool  # its row was edited in Studio since the sync wrote it, and left alone
    # workflow tasks
    pid: int  # the worker process that ran it
    prompt_tokens: int
    completion_tokens: int
    calls: int  # model requests
    attempts: int  # model requests, retries included
    stop_reason: str | None
