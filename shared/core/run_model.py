"""The typed vocabulary of run state: what a node's status and a run's state can be, and the
records of a run (RunMeta) and of one node (NodeState). Stored as JSON in Redis
(shared/adapters/redis/store.py): the enums are strings there, and a record crosses Redis only
through its own to_json/from_json."""

from __future__ import annotations

import json
from collections.abc import Collection
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticSerializationError

from shared.core.json_text import dumps
from shared.core.task_names import TaskName


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


SYNC_BATCH_TASK = TaskName.SYNC_BATCH


class Record(BaseModel):
    """A frozen record with one JSON codec. Only the fields a record was given (by its constructor,
    a model_copy update or the JSON it was read from) are written: the stored JSON holds what a run
    or node has reached, as readers of the raw JSON (tests, older workers) expect, and a default is
    what a field that was never given reads as."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # ignore: a newer writer's fields

    def to_json(self, without: Collection[str] = ()) -> str:
        """`without`: fields stored apart (RUN_LISTS)."""
        exclude = set(without)
        try:
            return self.model_dump_json(exclude_unset=True, exclude=exclude)
        except PydanticSerializationError:
            # a path or an error may hold a lone surrogate (a file name that is not UTF-8), which
            # pydantic's encoder refuses and shared/core/json_text.py escapes
            return dumps(self.model_dump(exclude_unset=True, exclude=exclude))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            # pydantic's parser refuses an escaped lone surrogate; the standard library's reads it
            # (a record that is wrong is refused all the same)
            return cls.model_validate(json.loads(raw))

    def to_dict(self) -> dict[str, Any]:
        """The JSON's fields as data (reports print them)."""
        return self.model_dump(mode="json", exclude_unset=True)


class RunMeta(Record):
    """A run's metadata: written by the producer when it submits the run, read by every worker
    that takes part, and closed (state, finished, error) by the one that ends it."""

    run_id: str
    state: RunState
    created: float
    total: int  # nodes in the run
    kind: RunKind = RunKind.SYNC
    finished: float | None = None
    error: str | None = None  # the run's own failure (the gallery entry not written)
    cancelled: bool = False  # `producer cancel` ended it: nothing new starts
    tree: str = ""  # the config tree's root
    gallery_needed: bool = False
    # syncs
    namespace: str = ""  # whose Studio: shared/core/hashing.py namespace()
    studio_url: str = ""
    user_id: str = ""
    gallery_name: str = ""
    gallery_key: str | None = None
    gallery_members: tuple[str, ...] = ()  # this and the lists below are stored apart (RUN_LISTS)
    gallery_keys: tuple[str, ...] = ()  # each member's node key, in the same order
    gallery_variables: tuple[str, ...] = ()  # the ${VAR}s the tree uses: their values are never shown
    # a file of the tree is broken, unread or invalid: the entry keeps the components it cannot
    # account for (one may be that file's), as a prune keeps the rows of files it could not read
    gallery_keeps_others: bool = False
    waves: int = 0  # dependency groups, each one chord
    batch_task: str = SYNC_BATCH_TASK  # the task that runs a batch (benchmarks swap in agentq.noop_batch)
    batch_priorities: tuple[tuple[int, ...], ...] = ()  # a Redis message priority per wave and batch
    # workflows
    workflow: str | None = None
    file: str | None = None
    mode: str | None = None  # parallel or sequential
    no_cache: bool = False
    ready: tuple[tuple[str, int, int], ...] = ()  # (task id, rank, message priority) released at the start
    order: tuple[str, ...] = ()  # the tasks in schedule order, for reports

    @property
    def is_finished(self) -> bool:
        return self.state == RunState.FINISHED

    @property
    def said_state(self) -> RunState:
        """The state as reports say it: a cancelled run is finished, and said to be cancelled."""
        return RunState.CANCELLED if self.cancelled else self.state

    def seconds(self) -> float | None:
        """How long the run took, once it has finished."""
        return None if self.finished is None else round(self.finished - self.created, 3)

    def ended(self, finished: float, *, error: str | None = None, cancelled: bool = False) -> RunMeta:
        """This run marked finished (with its error, or cancelled, when it has them)."""
        changes: dict[str, object] = {"state": RunState.FINISHED, "finished": finished}
        if cancelled:
            changes["cancelled"] = True
        if error is not None:
            changes["error"] = error
        return self.model_copy(update=changes)


# Meta fields as long as the run: kept apart from the meta, which workers read with every message
# and the producer with every poll (a 2,000-task workflow's lists are 60 KB of JSON)
RUN_LISTS = ("gallery_members", "gallery_keys", "gallery_variables", "ready", "order")


class NodeState(Record):
    """One node's record in a run: it grows as the node moves on (only its status is always there)."""

    status: Status
    type: str | None = None  # component type (syncs)
    path: str | None = None  # the file it came from
    outcome: str | None = None  # created, updated, unchanged, validated, ran
    error: str | None = None  # why it failed (secrets scrubbed)
    retryable: bool = False  # its failure may pass when tried again later (a service away, slow or overloaded)
    reason: str | None = None  # why it was skipped
    worker: str | None = None  # the Celery node that ran it
    task_id: str | None = None  # the Celery message that carried it
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    key: str | None = None  # its content key
    team_id: int | None = None  # the Studio row (teams)
    gallery_id: int | None = None  # the gallery entry holding it (a cached gallery member)
    drifted: bool = False  # its row was edited in Studio since the sync wrote it, and left alone
    # workflow tasks
    pid: int | None = None  # the worker process that ran it
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int | None = None  # model requests
    attempts: int | None = None  # model requests, retries included
    stop_reason: str | None = None
    agent: str | None = None  # the agent or team that runs it
    priority: int | None = None

    def merged(self, later: NodeState) -> NodeState:
        """This state with the fields `later` was given laid over it."""
        return self.model_copy(update={name: getattr(later, name) for name in later.model_fields_set})

    def outcome_said(self) -> str:
        """What became of the node, as sync reports count it."""
        if self.status == Status.DONE:
            return self.outcome or "created"
        if self.status == Status.CACHED:
            return "unchanged"
        if self.drifted:
            return "drifted"  # edited in Studio since the sync wrote it, and left alone
        return str(self.status) if self.status in UNSUCCESSFUL else Status.PENDING


class TaskUsage(Record):
    """What a workflow task's run cost and how it stopped: its state's summary fields, and with its
    output and transcript, its cache entry."""

    prompt_tokens: int
    completion_tokens: int
    calls: int
    attempts: int
    stop_reason: str | None = None
