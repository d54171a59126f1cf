"""The typed vocabulary of run state: what a node's status and a run's state can be, and what a
node's state records. Stored as JSON in Redis (shared/adapters/redis/store.py): the enums are strings there."""

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
    CANCELLED = "cancelled"  # a finished run that `producer cancel` ended: said in reports, stored as finished


class RunKind(StrEnum):
    SYNC = "sync"
    WORKFLOW = "workflow"


class RunMeta(TypedDict, total=False):
    """A run's metadata: written by the producer when it submits the run, read by every worker
    that takes part, and closed (state, finished, error) by the one that ends it."""

    run_id: str
    kind: RunKind
    state: RunState
    total: int  # nodes in the run
    created: float
    finished: float
    error: str  # the run's own failure (the gallery entry not written)
    cancelled: bool  # `producer cancel` ended it: nothing new starts
    tree: str  # the config tree's root
    gallery_needed: bool
    # syncs
    namespace: str  # whose Studio: shared/core/hashing.py namespace()
    studio_url: str
    user_id: str
    gallery_name: str
    gallery_key: str
    gallery_members: list[str]  # this and the lists below are stored apart (shared/adapters/redis/store.py RUN_LISTS)
    waves: int  # dependency groups, each one chord
    batch_task: str  # the task that runs a batch (benchmarks swap in agentq.noop_batch)
    batch_priorities: list[list[int]]  # a Redis message priority per wave and batch
    # workflows
    workflow: str
    file: str
    mode: str  # parallel or sequential
    no_cache: bool
    ready: list[tuple[str, int, int]]  # (task id, rank, message priority) released at the start (lists, read back)
    order: list[str]  # the tasks in schedule order, for reports


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
    agent: str  # the agent or team that runs it
    priority: int
