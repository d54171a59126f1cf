"""The one way a sync goes, for every caller (`producer sync`, `producer.api.sync`, `producer
watch`, `producer bench studio`): prepare the tree, prune or say what a prune would delete,
submit, wait with the watchdog (producer/recovery.py), report. Callers differ only in what they
do between the plan and the submit (`--dry-run`, an empty tree), how they show the wait, and
what they print. A workflow run goes one way too (`producer run`, `producer.api.run_workflow`):
submit, wait with the watchdog, report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.core.task_names import MODELS_QUEUE, STUDIO_QUEUE

if TYPE_CHECKING:
    from producer.recovery import Watchdog
    from producer.scanner import ScanMemo
    from producer.studio_state import StudioView
    from producer.sync_run import Prepared
    from producer.walk import Walks
    from producer.workflow_run import PreparedWorkflow
    from shared.ports import Dispatcher, RunStore, Storage
    from shared.settings import Settings

# how a caller shows the wait: (store, run id, timeout, watchdog); by default a plain wait
Show = Callable[["RunStore", str, "float | None", "Watchdog"], None]


@dataclass(frozen=True)
class Services:
    """What a sync works with: the settings, the store, the dispatcher (called only when there is
    work to enqueue: it may start a local worker) and where its warnings go (Studio's, what a
    prune would delete, the watchdog's)."""

    settings: Settings
    store: Storage
    dispatcher: Callable[[], Dispatcher]
    say: Callable[[str], None]
    memo: ScanMemo | None = None  # a resident process's last scan of the tree (producer watch)
    walks: Walks | None = None  # the trees this command walked already (its no-change look's)


@dataclass
class SyncOutcome:
    prepared: Prepared
    run_id: str | None = None  # None: stopped before the submit
    report: dict[str, Any] | None = None  # None: not waited for

    @property
    def succeeded(self) -> bool:
        from producer.report import succeeded

        return self.report is not None and succeeded(self.report)


def apply_prune(
    prepared: Prepared, settings: Settings, store: RunStore, prune: bool, say: Callable[[str], None]
) -> None:
    """With `prune`, delete the rows the plan says are gone from the tree and put the outcomes in the
    run; else say what a prune would delete. Studio's own warning is said either way."""
    from producer.studio_state import delete_rows

    view = prepared.studio
    if view.error:
        say(view.error)
    if not (view.prune or view.prune_gallery is not None):
        return
    if prune:
        deleted = delete_rows(settings, store, prepared.namespace, view, prepared.plan.gallery_name, prepared.asked)
        prepared.plan.states.update(deleted)
        return
    say(_would_delete(view))


def nothing_to_sync(prepared: Prepared) -> bool:
    """No component file in the tree (none broken either), and no row of an earlier sync to prune."""
    tree, scanned, view = prepared.tree, prepared.scan, prepared.studio
    return not any(
        (tree.nodes, tree.errors, tree.broken_files, scanned.unread, view.prune, view.prune_gallery is not None)
    )


def _would_delete(view: StudioView) -> str:
    labels = ", ".join(w.label for w in view.prune) or "the gallery entry"
    return f"{labels}: gone from the tree but still in Studio; `--prune` deletes them"


def sync(
    directory: Path,
    services: Services,
    *,
    gallery: str | None = None,
    force: bool = False,
    prune: bool = False,
    timeout: float | None = None,
    before_submit: Callable[[Prepared], bool] | None = None,
    wait_for_it: bool = True,
    show: Show | None = None,
) -> SyncOutcome:
    """Sync `directory`. `before_submit(prepared)` false stops before anything is written."""
    from producer.recovery import Watchdog
    from producer.report import run_report
    from producer.studio_state import studio_silent
    from producer.sync_run import prepare, submit

    settings, store, dispatcher, say = services.settings, services.store, services.dispatcher, services.say
    prepared = prepare(directory, settings, store, gallery, force=force, memo=services.memo, walks=services.walks)
    outcome = SyncOutcome(prepared)
    if before_submit is not None and not before_submit(prepared):
        return outcome
    apply_prune(prepared, settings, store, prune, say)
    dispatch = cache(dispatcher)  # the one the submit made, for the watchdog
    outcome.run_id = run_id = submit(prepared, settings, store, dispatch() if prepared.plan.has_work else None)
    if not wait_for_it:
        return outcome
    watch = Watchdog.for_run(store, run_id, dispatch, settings, say, (STUDIO_QUEUE,), lambda: studio_silent(settings))
    (show or _wait)(store, run_id, timeout, watch)
    outcome.report = run_report(store, run_id, prepared.plan.states, prepared.plan.settled)
    return outcome


def run_workflow(
    prepared: PreparedWorkflow,
    services: Services,
    *,
    sequential: bool = False,
    no_cache: bool = False,
    timeout: float | None = None,
    wait_for_it: bool = True,
    show: Show | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Run a loaded workflow: (its run id, its report; None when not waited for). The watchdog
    watches the models queue, where every message of a workflow goes."""
    from producer.recovery import Watchdog
    from producer.report import workflow_report
    from producer.workflow_run import submit

    settings, store, say = services.settings, services.store, services.say
    dispatch = cache(services.dispatcher)  # the one the submit made, for the watchdog
    run_id, _ = submit(prepared, settings, store, dispatch, sequential=sequential, no_cache=no_cache)
    if not wait_for_it:
        return run_id, None
    watch = Watchdog.for_run(store, run_id, dispatch, settings, say, (MODELS_QUEUE,))
    (show or _wait)(store, run_id, timeout, watch)
    return run_id, workflow_report(store, run_id)


def _wait(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
    """The wait when the caller shows none: a plain one."""
    from producer.run_wait import wait

    wait(store, run_id, timeout=timeout, watch=watch)
