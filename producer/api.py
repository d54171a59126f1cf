"""The producer as a Python API, for scripts: the same steps as the CLI, returning typed results.

    from producer import plan, sync, run_workflow

    result = sync("configs/")            # REDIS_URL and STUDIO_URL from the environment
    if not result.succeeded:
        print(result.counts, result.failed)

Without REDIS_URL, each call starts an embedded Redis and a worker for its duration, as the CLI
does. Errors are the project's exceptions (shared/core/exceptions.py): InvalidInput for a bad workflow
file or an argument of the wrong kind (checked before anything starts), ServiceUnavailable for a
service that cannot be reached or started, RunTimedOut (a TimeoutError too) for a run that
outlived `timeout` or stopped moving.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer import embedded, session
from producer.walk import check_dir
from shared.core.exceptions import InvalidInput, RunInterrupted
from shared.core.run_model import UNSUCCESSFUL

if TYPE_CHECKING:
    from producer.recovery import Watchdog
    from shared.ports import Dispatcher, RunStore, Storage
    from shared.settings import Settings


@dataclass(frozen=True)
class PlanResult:
    changes: dict[str, list[str]]  # new / changed / unchanged / drifted / invalid / skipped -> labels
    waves: list[list[str]]
    errors: list[str]  # each names its file and field
    gallery_write: bool
    prune: list[str]  # team rows this tree created whose components are gone: what `sync(prune=True)` deletes


@dataclass(frozen=True)
class RunResult:
    """A finished sync or workflow run, as `producer status` / `producer result --json` show it."""

    run_id: str | None
    succeeded: bool
    counts: dict[str, int]
    report: dict[str, Any] = field(repr=False)

    @property
    def failed(self) -> dict[str, str]:
        """Label or task id -> why it failed or was skipped."""
        items = self.report.get("nodes") or self.report.get("tasks") or {}
        return {k: str(v.get("error") or v.get("reason")) for k, v in items.items() if v.get("status") in UNSUCCESSFUL}


# The arguments are checked by hand, not by pydantic's validate_call: that would also turn a
# ValidationError raised inside the call into one about the arguments.
def _path(name: str, value: object) -> Path:
    if isinstance(value, str | os.PathLike) and isinstance(os.fspath(value), str) and os.fspath(value):
        return Path(value)
    raise InvalidInput(f"{name}: expected a path (a non-empty str or a pathlib.Path), not {value!r}")


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise InvalidInput(f"timeout: expected seconds (a number above 0) or None, not {value!r}")


def _flags(**flags: object) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidInput(f"{name}: expected True or False, not {value!r}")


def plan(directory: str | Path, settings: Settings | None = None) -> PlanResult:
    """What a sync of `directory` would do, without doing it."""
    from producer.sync_run import prepare

    root = _path("directory", directory)
    check_dir(root)  # before an embedded Redis is started for nothing
    with services(settings) as (store, ready, _):
        prepared = prepare(root, ready, store)
    by_change: dict[str, list[str]] = {}
    for label, change in sorted(prepared.plan.changes.items()):
        by_change.setdefault(change, []).append(label)
    return PlanResult(
        changes={k: by_change.get(k, []) for k in ("new", "changed", "unchanged", "drifted", "invalid", "skipped")},
        waves=[[lbl for batch in wave for lbl in batch] for wave in prepared.plan.waves],
        errors=[str(e) for e in prepared.tree.errors],
        gallery_write=prepared.plan.gallery_needed,
        prune=[w.label for w in prepared.studio.prune],
    )


def sync(
    directory: str | Path,
    settings: Settings | None = None,
    timeout: float | None = None,
    force: bool = False,
    prune: bool = False,
) -> RunResult:
    """Sync `directory` into AutoGen Studio through the workers and wait for the result. `force`
    overwrites rows edited in Studio since (drifted); `prune` deletes the rows this tree created
    whose components are gone from it."""
    from producer import pipeline

    root, seconds = _path("directory", directory), _timeout(timeout)
    _flags(force=force, prune=prune)
    check_dir(root)
    with services(settings) as (store, ready, dispatcher):
        with_us = pipeline.Services(ready, store, dispatcher, _warn)
        outcome = pipeline.sync(root, with_us, force=force, prune=prune, timeout=seconds, show=_wait_interruptibly)
    report, run_id = outcome.report, outcome.run_id
    assert report is not None and run_id is not None
    return RunResult(run_id, outcome.succeeded, report["counts"], report)


def _wait_interruptibly(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
    """The wait for a run; Ctrl-C is RunInterrupted naming it: the caller may cancel it (it goes on)."""
    from producer.run_wait import wait

    try:
        wait(store, run_id, timeout=timeout, watch=watch)
    except KeyboardInterrupt as exc:
        raise RunInterrupted(run_id) from exc


def _warn(line: str) -> None:
    """What a sync has to say on the way (Studio's warnings, the watchdog's), as a Python warning."""
    import warnings

    warnings.warn(line, stacklevel=3)


def run_workflow(
    file: str | Path,
    tree: str | Path | None = None,
    settings: Settings | None = None,
    sequential: bool = False,
    no_cache: bool = False,
    timeout: float | None = None,
) -> RunResult:
    """Run a workflow file's tasks on the workers and wait for every result."""
    from producer import pipeline
    from producer.report import workflow_succeeded
    from producer.workflow_run import load

    path, folder, seconds = _path("file", file), None if tree is None else _path("tree", tree), _timeout(timeout)
    _flags(sequential=sequential, no_cache=no_cache)
    with services(settings) as (store, ready, dispatcher):
        prepared = load(path, folder, ready)
        with_us = pipeline.Services(ready, store, dispatcher, _warn)
        run_id, report = pipeline.run_workflow(
            prepared, with_us, sequential=sequential, no_cache=no_cache, timeout=seconds, show=_wait_interruptibly
        )
    assert report is not None
    return RunResult(run_id, workflow_succeeded(report), report["counts"], report)


@contextmanager
def services(
    settings: Settings | None, worker: bool = False
) -> Iterator[tuple[Storage, Settings, Callable[[], Dispatcher]]]:
    """The configured Redis, or an embedded Redis and a worker (started once there is work, or at
    once with `worker`: for calls made inside the block with its settings) for the block's
    duration; with the settings that name them and the dispatcher to enqueue with."""
    from shared.settings import Settings, load_settings

    if settings is not None and not isinstance(settings, Settings):
        raise InvalidInput(f"settings: expected shared.settings.Settings(...), not {type(settings).__name__}")
    ready = settings or load_settings()
    embedded_default = ready.redis_url is None
    with embedded.LocalServices() as local, session.redis_session(ready, local) as (store, ready):

        def start_worker() -> None:
            assert ready.redis_url is not None
            local.add_worker(embedded.start_worker(ready.redis_url, log_path=ready.cache_dir / "worker.log"))

        if worker and embedded_default:
            start_worker()
        yield store, ready, session.local_dispatcher(ready, embedded_default and not worker, start_worker)
