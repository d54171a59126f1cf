"""Live progress while a workflow runs: one bar per task (one bar for the whole run when there
are too many tasks to show)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from producer.run_wait import wait
from producer.terminal_text import escape
from shared.core.run_model import TERMINAL, Status
from shared.ports import RunStore

PER_TASK_ROWS = 40
STYLES: dict[str, str] = {
    Status.PENDING: "dim",
    Status.RUNNING: "blue",
    Status.DONE: "green",
    Status.CACHED: "cyan",
    Status.FAILED: "red",
    Status.SKIPPED: "yellow",
}


def follow_run(
    store: RunStore, run_id: str, console: Console, timeout: float | None, watch: Callable[[int], None] | None = None
) -> None:
    """The whole run as one bar: completed of total."""
    columns = (TextColumn(f"run {run_id}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        row = progress.add_task("run", total=None)
        wait(
            store,
            run_id,
            lambda done, total: progress.update(row, completed=done, total=total),
            timeout=timeout,
            watch=watch,
        )


def follow_workflow(
    store: RunStore,
    run_id: str,
    task_ids: list[str],
    console: Console,
    timeout: float | None,
    watch: Callable[[int], None] | None = None,
) -> None:
    """A bar per task: pending, pulsing while it runs, full when it ends, with its status and time."""
    if len(task_ids) > PER_TASK_ROWS:
        follow_run(store, run_id, console, timeout, watch)
        return
    width = max(map(len, task_ids))
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        rows: dict[str, TaskID] = {
            tid: progress.add_task(escape(tid.ljust(width)), total=1, start=False, status=_status(Status.PENDING))
            for tid in task_ids
        }
        shown: dict[str, str] = {}

        def refresh(_done: int = 0, _total: int = 0) -> None:
            for tid, state in store.node_states(run_id, task_ids).items():
                status = str(state.status)
                if shown.get(tid) == status:
                    continue
                shown[tid] = status
                row = rows[tid]
                if status == Status.RUNNING:
                    progress.start_task(row)
                    progress.update(row, total=None, status=_status(status))
                elif status in TERMINAL:
                    progress.start_task(row)
                    progress.update(row, total=1, completed=1, status=_status(status))
                    progress.stop_task(row)

        wait(store, run_id, refresh, timeout=timeout, watch=watch)
        refresh()


def _status(status: str) -> str:
    style = STYLES.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status
