"""What every benchmark samples while it runs: CPU and memory of the process tree, whether a
model's limit held tasks back, loopback bytes; and the machine and the versions it ran on."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version

import psutil

from shared.ports import Storage


@contextmanager
def in_thread(run: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    """`run` in a daemon thread while the block runs; then `stop` is set and the thread joined."""
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    return {pkg: version(pkg) for pkg in ("agentq", "autogen-agentchat", "celery", "redis")}


def loopback_bytes() -> int:
    """Bytes through the loopback interface (every service here talks over it), sent and received."""
    counters = psutil.net_io_counters(pernic=True)
    lo = counters.get("lo") or counters.get("lo0")
    return (lo.bytes_sent + lo.bytes_recv) if lo else 0


class Sampler:
    """CPU and memory of this process and its children (the embedded Redis and worker), sampled
    every `every` seconds in a thread while the block runs."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.samples: list[dict[str, float]] = []
        self._known: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._start = time.monotonic()

    def _tree(self) -> list[psutil.Process]:
        # the same Process objects from one sample to the next: cpu_percent measures since the last call
        me = self._known.setdefault(os.getpid(), psutil.Process())
        return [me, *(self._known.setdefault(c.pid, c) for c in me.children(recursive=True))]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            rss, cpu = 0, 0.0
            for proc in self._tree():
                try:
                    rss += proc.memory_info().rss
                    cpu += proc.cpu_percent(None)
                except psutil.Error:
                    continue
            self.samples.append(
                {"t": round(time.monotonic() - self._start, 3), "rss_mb": rss / 2**20, "cpu_percent": cpu}
            )

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        with in_thread(self._run, self._stop):
            yield self

    def now(self) -> float:
        """The clock of the samples' `t`."""
        return time.monotonic() - self._start

    def peak_rss_mb(self, since: float = 0.0) -> float:
        """The highest memory sampled since `since` (`now()`), or the latest sample when none was
        taken since (a window shorter than the sampling interval)."""
        window = [s["rss_mb"] for s in self.samples if s["t"] >= since]
        return max(window, default=self.samples[-1]["rss_mb"] if self.samples else 0.0)


class LimitProbe:
    """Whether any task waited for a model's cluster-wide limit, sampled every `every` seconds in a
    thread: a task waits only while every slot is taken, so the share of samples with waiters is
    the share of the time the limit held work back."""

    def __init__(self, store: Storage, every: float = 0.05) -> None:
        self.store = store
        self.every = every
        self.samples: list[tuple[float, bool]] = []  # (monotonic time, some task was waiting)
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                queues = self.store.limit_queues()
            except Exception:  # noqa: BLE001  a missed sample; the benchmark goes on
                continue
            self.samples.append((time.monotonic(), any(waiting for _, waiting in queues.values())))

    def saturated_share(self, since: float, until: float) -> float:
        window = [waiting for t, waiting in self.samples if since <= t <= until]
        return sum(window) / len(window) if window else 0.0

    @contextmanager
    def running(self) -> Iterator[LimitProbe]:
        with in_thread(self._run, self._stop):
            yield self
