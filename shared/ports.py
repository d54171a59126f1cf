"""The ports: what the producer, the exporter and the recovery code need of Redis, Celery and
AutoGen Studio, as small typing.Protocol interfaces (and the one error a Studio call raises). The adapters behind them live in
shared/adapters/ (redis/store.py, redis/semaphore.py, celery.py, studio.py); only those and the
workers import redis-py, kombu or Celery. Each port holds only what callers outside the adapters
use; the workers use the adapters themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Self

from shared.core.drift import WrittenRow
from shared.core.exceptions import AgentqError
from shared.core.reconcile import SyncView, WorkflowView
from shared.core.records import (
    CacheEntry,
    Component,
    HostReading,
    Lookup,
    NewRun,
    Release,
    Row,
    Spec,
    TranscriptMessage,
)
from shared.core.run_model import NodeState, RunMeta
from shared.metrics import Metrics

Histograms = dict[tuple[str, tuple[str, ...]], list[float]]  # (name, labels) -> per-bucket counts, sum
Released = tuple[str, int, int]  # a workflow task released: (task id, rank, Redis message priority)
Message = tuple[str, str, list[Any]]  # a message the broker holds: (task name, id, args)


class RunStore(Protocol):
    """Run state: what the producer writes and waits on, what `status` and `result` report, what
    the watchdog (producer/recovery.py) compares with the broker, the metrics' totals and the
    workers' heartbeats the exporter reads, and the records of the rows the syncs wrote."""

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What a call raises when the store cannot be reached (or refuses a command)."""
        ...

    def ping(self, ride_out: bool = False) -> None:
        """The store answers now: a first contact is not waited out as an outage is (`ride_out`:
        within the outage every call rides out)."""
        ...

    # ---- a run's state
    def create_run(self, run: NewRun) -> None: ...

    def create_workflow_run(self, run: NewRun, release: Release) -> None: ...

    def meta(self, run_id: str) -> RunMeta | None: ...

    def finish_run(self, run_id: str, *, error: str | None = None, cancelled: bool = False) -> RunMeta | None:
        """Mark the run finished now and wake whoever waits for it (None: the run expired)."""
        ...

    def task_order(self, run_id: str) -> list[str]: ...

    def set_studio_version(self, run_id: str, version: str, only_if_new: bool = False) -> None:
        """Studio's version as the run found it (what its workers validate for)."""
        ...

    def studio_requests(self, run_id: str) -> dict[str, int]:
        """The run's Studio requests, by method and endpoint."""
        ...

    def add_studio_requests(self, run_id: str, counts: Mapping[str, int]) -> None: ...

    def retries(self, run_id: str) -> dict[str, int]:
        """The run's retried calls, by cause."""
        ...

    def node_states(self, run_id: str, labels: Iterable[str] | None = None) -> dict[str, NodeState]: ...

    def open_states(self, run_id: str, meta: RunMeta | None = None) -> dict[str, NodeState]:
        """The states that may still change once the run is written (a sync's: its waves' nodes)."""
        ...

    def counts(self, run_id: str) -> dict[str, int]: ...

    def outputs(self, run_id: str) -> dict[str, str]: ...

    def transcripts(self, run_id: str) -> dict[str, list[TranscriptMessage]]: ...

    def await_finish(self, run_id: str, seconds: float) -> None:
        """Wait up to `seconds`, returning at once when the run is marked finished meanwhile."""
        ...

    def claim(self, run_id: str, what: str) -> str | None:
        """The claim's token, once per run for `what` (None after)."""
        ...

    def published(self, run_id: str, task_ids: Iterable[str]) -> None:
        """These released workflow tasks are on their way (out of the run's outbox)."""
        ...

    def reconcile_view(self, run_id: str) -> WorkflowView | SyncView | None: ...

    def recent_runs(self, limit: int = 200) -> list[dict[str, Any]]: ...

    def last_run_id(self) -> str | None: ...

    def cancel_run(self, run_id: str) -> tuple[RunMeta | None, bool]: ...

    def retire_leftovers(self, reason: str) -> list[str]: ...

    # ---- the workers: heartbeats and the messages each is running
    def heartbeats(self) -> dict[str, float]: ...

    def worker_starts(self) -> dict[str, float]: ...

    def broker_reconnects(self) -> dict[str, float]: ...

    def full(self) -> str | None: ...

    def live_workers(self, fresh_within: float) -> dict[str, list[str] | None]: ...

    def running_messages(self) -> dict[str, dict[str, float]]: ...

    def messages_ended(self, worker: str, *task_ids: str) -> None: ...

    def host_readings(self) -> dict[str, HostReading]: ...

    # ---- metrics
    def flush(self, metrics: Metrics) -> None:
        """Add a process's metrics to the cluster's totals, and empty them."""
        ...

    def counters(self) -> dict[tuple[str, tuple[str, ...]], float]: ...

    def histograms(self) -> Histograms: ...

    def limit_queues(self) -> dict[str, tuple[int, int]]:
        """Each model limit: (slots held, tasks waiting)."""
        ...

    # ---- the team rows and gallery entries the syncs of a namespace wrote (drift and prune)
    def written_rows(self, ns: str, tree: str | None = None) -> dict[str, WrittenRow]: ...

    def record_written(self, ns: str, row: WrittenRow) -> None: ...

    def forget_written(self, ns: str, label: str) -> None: ...

    def record_templates(self, ns: str, templates: Mapping[str, object]) -> None:
        """Label -> the component as its file says it (references inlined, `${VAR}`s as written),
        for the components a sync wrote: what `producer pull` puts placeholders back from."""
        ...

    def templates(self, ns: str, labels: Collection[str]) -> dict[str, object]:
        """The templates recorded for `labels` (those that have one)."""
        ...

    def owned_gallery(self, ns: str, name: str) -> tuple[int, str] | None: ...

    def claim_gallery(self, ns: str, name: str, tree: str, taken_over: Callable[[str], bool]) -> str: ...

    def gallery_id(self, ns: str, name: str) -> int | None:
        """The id of the gallery entry `name` the syncs write to, once one did."""
        ...

    def gallery_written(self, ns: str, name: str) -> str | None:
        """The entry's stamp (shared/core/drift.py) when a sync last wrote it; None: not known."""
        ...

    def disown_gallery(self, ns: str, name: str) -> None: ...


class ResultCache(Protocol):
    """Cached results, looked up before anything is enqueued, and the root a clean sync leaves
    for the no-change answer (producer/nochange.py)."""

    def lookup(self, ns: str, node_keys: list[str], gallery: tuple[str, str | None], tree: str) -> Lookup:
        """One round trip: cached results for every node key, the gallery entry's (name, key), the
        last synced keys by label, and who last wrote that entry."""
        ...

    def task_results(self, cache_keys: list[str]) -> list[CacheEntry | None]:
        """Cached workflow task results for these content keys, in order."""
        ...

    def missing_specs(self, ns: str, node_keys: Collection[str]) -> list[str]:
        """The node keys whose gallery member spec is not kept."""
        ...

    def keep_specs(self, ns: str, specs: Mapping[str, Spec]) -> None: ...

    def node_cache_key(self, ns: str, key: str) -> str: ...

    def gallery_cache_key(self, ns: str, key: str) -> str: ...

    def keep_tree_root(self, ns: str, tree: str, digest: str) -> None: ...

    def void_tree_root(self, ns: str, tree: str) -> None: ...

    def mark_root(self, digest: str, run_id: str, cache_keys: list[str]) -> bool:
        """Record a clean sync's root over these cache entries; False when one is gone."""
        ...


class Storage(RunStore, ResultCache, Protocol):
    """Run state and the result cache together, as one store (Redis) holds both: what a command
    that plans and runs a sync or a workflow is handed."""


class ModelLimit(Protocol):
    """A model's cluster-wide concurrency limit, granted highest rank first."""

    def slot(self, rank: int = 0, on_queued: Callable[[], None] | None = None) -> AbstractAsyncContextManager[None]:
        """Hold one slot; `on_queued` is called once this waiter is in line (before any wait)."""
        ...


class Dispatcher(Protocol):
    """Work published to the workers (Celery, shared/adapters/celery.py), and what the broker
    holds, for the watchdog that sends lost work again (producer/recovery.py) and the exporter.
    Priorities are Redis's (0 is served first); the adapter turns them into the broker's."""

    def start_run(self, run_id: str, queue: str | None = None) -> None:
        """One small message; a worker publishes the run's first wave or tasks. `queue`: where it
        goes (None: its route's, the studio queue)."""
        ...

    def start_wave(
        self, run_id: str, wave: int, batches: int, task: str = ..., priorities: list[int] | None = None
    ) -> None:
        """A sync wave's batches, and the step that follows them once all ended."""
        ...

    def start_finalize(self, run_id: str) -> None: ...

    def publish_tasks(self, run_id: str, groups: list[list[Released]], batch_size: int) -> None:
        """Released workflow tasks, those one completion released together in one message."""
        ...

    def send_again(self, task: str, args: Sequence[Any], queue: str | None = None) -> None:
        """Publish a message again (work the run state says may run and nothing carries)."""
        ...

    @property
    def restores_unacked(self) -> bool:
        """Whether a lost consumer's unacknowledged messages wait for us to put them back (the
        Redis broker); else the broker gives them back itself (RabbitMQ)."""
        ...

    def in_flight(self, queues: Sequence[str]) -> list[Message] | None:
        """Every message queued on `queues` or delivered and unacknowledged (None: the broker
        cannot be looked into)."""
        ...

    def requeue(self, task_ids: set[str], orphans_before: float, live: set[str]) -> int:
        """Put back the unacknowledged messages of these tasks, and those delivered before
        `orphans_before` that no live worker runs; returns how many."""
        ...

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]: ...

    def revoke_run(self, run_id: str) -> int:
        """Revoke the run's messages still queued; how many."""
        ...


class StudioError(AgentqError):
    """A Studio call that failed for good: `status` is None when the server could not be reached;
    `retryable` says whether trying again later may succeed (429, 5xx, timeouts, connection errors)."""

    def __init__(
        self, method: str, path: str, status: int | None, detail: str, retryable: bool = False, timed_out: bool = False
    ) -> None:
        where = f"{method} {path}"
        if status:
            said = f"Studio answered {status} on {where}: {detail}"
        elif detail.startswith("answered "):  # something that is no HTTP: reached, no answer to read
            said = f"Studio answered {where} {detail.removeprefix('answered ')}"
        else:
            said = f"Studio unreachable on {where}: {detail}"
        super().__init__(said)
        self.status = status
        self.retryable = retryable
        self.timed_out = timed_out  # no answer in time: Studio may yet do what was asked


class Studio(Protocol):
    """AutoGen Studio's REST API for one user (shared/adapters/studio.py), used as an async context
    manager. Every call is retried as shared/retry.py says; one that fails for good raises
    StudioError."""

    user_id: str
    retries: int  # tries after the first, for a call that may be repeated
    backoff: float
    timeout: float  # seconds each step of a call waits (STUDIO_TIMEOUT_SECONDS)
    requests: Counter[str]  # "METHOD /path" -> count, for run reports

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def request(
        self, method: str, path: str, *, retry: bool = True, max_timeouts: int | None = None, **kwargs: Any
    ) -> Any:
        """One call (a DELETE, say) under the retry policy; `retry=False` for a write that is not
        idempotent."""
        ...

    async def health(self) -> bool: ...

    async def version(self) -> str | None: ...

    async def validate(self, component: Component) -> list[str]:
        """Studio's own validation errors for a component ([] when valid)."""
        ...

    async def list_teams(self) -> list[Row]: ...

    async def get_team(self, team_id: int) -> Row | None: ...

    async def save_team(self, component: Component, version: str, team_id: int | None = None) -> Row: ...

    async def list_galleries(self) -> list[Row]: ...

    async def get_gallery(self, gallery_id: int) -> Row | None: ...

    async def save_gallery(self, config: Component, gallery_id: int | None = None) -> Row: ...
