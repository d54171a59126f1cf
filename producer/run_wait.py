"""Waiting for a run, sync or workflow, to finish: its counters polled, each poll shown to whoever
follows it. Kept light (Redis' port only): a wait starts once its run is on the workers, and
whatever it imports then takes CPU from workers on the same machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.core.exceptions import RunTimedOut, ServiceUnavailable
from shared.core.run_model import TERMINAL

if TYPE_CHECKING:
    from shared.core.run_model import RunMeta
    from shared.ports import RunStore


def _tell_progress(
    store: RunStore,
    meta: RunMeta,
    on_progress: Callable[[int, int], None] | None,
    watch: Callable[[int], None] | None,
) -> None:
    """Give the count of ended nodes to whoever follows the run (the watchdog only while it runs)."""
    if not on_progress and not watch:
        return
    counts = store.counts(meta.run_id)
    done = sum(counts.get(s, 0) for s in TERMINAL)
    if on_progress:
        on_progress(done, meta.total)
    if watch and not meta.is_finished:
        watch(done)


def wait(
    store: RunStore,
    run_id: str,
    on_progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    watch: Callable[[int], None] | None = None,
) -> RunMeta:
    """Poll the run's counters until it finishes; returns its meta. `watch` sees the count of
    ended nodes on every poll (producer/recovery.py's Watchdog)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        meta = store.meta(run_id)
        if meta is None:
            raise ServiceUnavailable(
                f"run {run_id} is gone from Redis while it ran: Redis lost its data (restarted without "
                "appendonly, or flushed), and the run's report with it (a sync's rows are in Studio; a "
                "workflow's workers take the run for cancelled and call no more models for it)"
            )
        _tell_progress(store, meta, on_progress, watch)
        if meta.is_finished:
            return meta
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise RunTimedOut(f"run {run_id} still running after {timeout:g} s")
        # not past the deadline by a whole poll: a run that ends after it has timed out
        store.await_finish(run_id, 0.1 if left is None else min(0.1, max(0.005, left)))
