"""`producer bench studio`: how fast the user's own Studio and tree are, and where the time goes.

Per iteration: connectivity (health and list latency), component fetching (list and get teams and
galleries), file scanning (cold and no-change), and registration (a cold sync under a throwaway
Studio user, so nothing is cached, then the same sync with everything cached). A probe thread asks
Studio's health every half second for the whole run: availability is the share it answered.
The throwaway users' rows are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from producer.bench.results import save
from producer.bench.sampling import Sampler, in_thread, loopback_bytes, machine, versions
from producer.bench.stats import combined, latency_summary, merge_latency, request_latency
from shared.adapters.studio import StudioClient
from shared.core.exceptions import ServiceUnavailable, TaskFailed
from shared.core.secrets import shown_url
from shared.metrics import LATENCY_BUCKETS
from shared.ports import Histograms, Storage, StudioError
from shared.settings import Settings, scan_limits, with_overrides

T = TypeVar("T")

PROBE_EVERY = 0.5
STUDIO_LATENCY = "agentq_studio_request_duration_seconds"


class Probe:
    """Studio's health asked every PROBE_EVERY seconds in a thread: answered share and latencies."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/api/health"
        self.answered = 0
        self.asked = 0
        self.latencies: list[float] = []
        self._stop = threading.Event()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                self.asked += 1
                try:
                    if client.get(self.url).status_code == 200:
                        self.answered += 1
                        self.latencies.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    pass
                self._stop.wait(PROBE_EVERY)

    @contextmanager
    def running(self) -> Iterator[Probe]:
        with in_thread(self._run, self._stop):
            yield self

    @property
    def availability(self) -> float:
        return self.answered / self.asked if self.asked else 0.0


async def _timed(samples: dict[str, list[float]], name: str, call: Awaitable[T]) -> T:
    started = time.perf_counter()
    value = await call
    samples.setdefault(name, []).append(time.perf_counter() - started)
    return value


def _client(settings: Settings, user_id: str, retries: int | None = None) -> StudioClient:
    token = settings.studio_token.get_secret_value() if settings.studio_token else None
    tries = settings.studio_retries if retries is None else retries
    return StudioClient(
        settings.studio_url, user_id, token=token, timeout=settings.studio_timeout_seconds, retries=tries
    )


def studio_answers(settings: Settings) -> None:
    """Studio's health, asked once before anything is measured: ServiceUnavailable naming the URL
    when nothing answers there, or something that is no Studio does (an HTML page, a 5xx)."""

    async def ask() -> None:
        async with _client(settings, settings.studio_user_id, retries=0) as studio:
            await studio.health()

    try:
        asyncio.run(ask())
    except StudioError as exc:
        raise ServiceUnavailable(f"AutoGen Studio at {shown_url(settings.studio_url)} is not available: {exc}") from exc


async def _fetching(settings: Settings, user_id: str, samples: dict[str, list[float]]) -> None:
    async with _client(settings, user_id, retries=0) as studio:
        for _ in range(5):
            await _timed(samples, "connectivity.health_seconds", studio.health())
        teams = await _timed(samples, "fetch.list_teams_seconds", studio.list_teams())
        for row in teams[:20]:
            await _timed(samples, "fetch.get_team_seconds", studio.get_team(int(row["id"])))
        galleries = await _timed(samples, "fetch.list_galleries_seconds", studio.list_galleries())
        for row in galleries[:5]:
            await _timed(samples, "fetch.get_gallery_seconds", studio.get_gallery(int(row["id"])))


async def _remove_user_rows(settings: Settings, user_id: str) -> int:
    """Delete a throwaway user's rows; returns how many team rows there were."""
    async with _client(settings, user_id) as studio:
        teams = await studio.list_teams()
        for row in teams:
            await studio.request("DELETE", f"/teams/{row['id']}", params={"user_id": user_id})
        for row in await studio.list_galleries():
            await studio.request("DELETE", f"/gallery/{row['id']}", params={"user_id": user_id})
        return len(teams)


def _studio_request(labels: tuple[str, ...]) -> str:
    return f"{labels[1]} {labels[0]}"  # method and endpoint; statuses summed


def _studio_time(histograms: dict[tuple[str, tuple[str, ...]], list[float]]) -> dict[str, tuple[float, float]]:
    """endpoint -> (requests, seconds) of the workers' Studio calls so far."""
    out: dict[str, tuple[float, float]] = {}
    for (name, labels), slots in histograms.items():
        if name == STUDIO_LATENCY:
            count, total = out.get(labels[0], (0.0, 0.0))
            out[labels[0]] = (count + sum(slots[:-1]), total + slots[-1])
    return out


@dataclass
class _Recording:
    """What the iterations after the warmup measured."""

    record: bool = False  # this iteration counts (it is past the warmup)
    measures: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)  # request histograms by phase and endpoint
    studio_requests: dict[str, list[float]] = field(default_factory=dict)
    validate_share: list[float] = field(default_factory=list)

    def put(self, name: str, value: float) -> None:
        if self.record:
            self.measures.setdefault(name, []).append(value)


def _fetch(rec: _Recording, settings: Settings) -> None:
    fetched: dict[str, list[float]] = {}
    asyncio.run(_fetching(settings, settings.studio_user_id, fetched))
    for name, values in fetched.items():
        rec.put(name, statistics.median(values))
        if rec.record:
            rec.samples.setdefault(name, []).extend(values)


def _scanning(rec: _Recording, directory: Path, settings: Settings) -> None:
    from producer.scanner import scan

    cache_dir = Path(tempfile.mkdtemp(prefix="agentq-bench-scan-"))
    try:
        for phase in ("cold", "rescan"):
            started = time.perf_counter()
            scanned = scan(directory.resolve(), cache_dir / "scan.json", scan_limits(settings))
            seconds = time.perf_counter() - started
            rec.put(f"scan.{phase}_seconds", seconds)
            rec.put(f"scan.{phase}_files_per_second", _ratio(len(scanned.files), seconds))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _registering(rec: _Recording, directory: Path, settings: Settings, store: Storage, sampler: Sampler) -> None:
    """A cold sync under the user of `settings` (new: nothing cached), then the same sync all cached."""
    for phase in ("cold", "cached"):
        _register(rec, phase, directory, settings, (store, sampler))


def _register(
    rec: _Recording, phase: str, directory: Path, settings: Settings, sampled: tuple[Storage, Sampler]
) -> None:
    """One sync of the tree, measured as `phase` (`sampled`: the store and the sampler measured with)."""
    from producer.api import sync as sync_tree

    store, sampler = sampled
    before_hist, before_net = store.histograms(), loopback_bytes()
    started, cpu, mark = time.perf_counter(), sampler.cpu_seconds(), sampler.now()
    run = sync_tree(directory, settings=settings)
    seconds = time.perf_counter() - started
    if not run.succeeded:
        raise TaskFailed(f"benchmark sync of {directory} failed: {run.failed}")
    components = sum(run.counts.values())
    after_hist = store.histograms()
    _studio_latency(
        rec, phase, request_latency(before_hist, after_hist, STUDIO_LATENCY, LATENCY_BUCKETS, _studio_request)
    )
    rec.put(f"register.{phase}_seconds", seconds)
    rec.put(f"register.{phase}_components_per_second", _ratio(components, seconds))
    rec.put(f"register.{phase}_cpu_seconds", sampler.cpu_seconds() - cpu)
    rec.put(f"register.{phase}_peak_rss_mb", sampler.peak_rss_mb(mark))
    rec.put(f"register.{phase}_network_bytes", float(loopback_bytes() - before_net))
    rec.put(f"register.{phase}_cache_hit_rate", _ratio(run.counts.get("unchanged", 0), components))
    if not rec.record:
        return
    rec.studio_requests.setdefault(f"register.{phase}", []).append(float(sum(run.report["studio_requests"].values())))
    spent = _spent(before_hist, after_hist)
    if phase == "cold" and sum(spent.values()) > 0:
        rec.validate_share.append(spent.get("/validate/", 0.0) / sum(spent.values()))


def _studio_latency(rec: _Recording, phase: str, used: dict[str, dict[str, Any]]) -> None:
    """The sync's Studio requests: their histograms by endpoint, and (cold) their mean and p95."""
    if rec.record and used:
        merge_latency(rec.latency, {f"register.{phase} {name}": h for name, h in used.items()})
    if phase == "cold":  # per iteration; a cached sync may make no Studio request at all
        overall = latency_summary(combined(used.values()))
        rec.put("register.cold_request_mean_seconds", overall["mean"])
        rec.put("register.cold_request_p95_seconds", overall["p95"])


def _ratio(count: float, per: float) -> float:
    return count / per if per else 0.0


def _spent(before: Histograms, after: Histograms) -> dict[str, float]:
    """endpoint -> seconds the workers spent on its Studio calls between the two histograms."""
    before_time, after_time = _studio_time(before), _studio_time(after)
    return {
        ep: after_time[ep][1] - before_time.get(ep, (0.0, 0.0))[1]
        for ep in after_time
        if after_time[ep][0] > before_time.get(ep, (0.0, 0.0))[0]
    }


def _remove_users(settings: Settings, users: list[str]) -> int:
    return sum(asyncio.run(_remove_user_rows(settings, user)) for user in users)


def run_studio_bench(
    out: Path, directory: Path, iterations: int, warmup: int, settings: Settings, local_studio: bool
) -> dict[str, Any]:
    """The Studio benchmark on `directory`; writes and returns the result. A Studio that does not
    answer (before or during it) is ServiceUnavailable naming its URL; the throwaway users' rows
    are deleted whatever happens."""
    from producer import embedded
    from producer.api import services

    rec = _Recording()
    users: list[str] = []
    sampler = Sampler()
    with embedded.LocalServices() as local:
        if local_studio:
            app_dir = Path(tempfile.mkdtemp(prefix="agentq-bench-studio-"))
            local.callback(shutil.rmtree, app_dir, True)  # after Studio stops (callbacks run last-in first)
            url, proc = embedded.start_studio(app_dir)
            local.add_process(proc)
            settings = with_overrides(settings, studio_url=url)
        studio_answers(settings)
        probe = Probe(settings.studio_url)
        try:
            with sampler.running(), probe.running(), services(settings, worker=True) as (store, ready, _):
                try:
                    for i in range(warmup + iterations):
                        rec.record = i >= warmup
                        _fetch(rec, ready)
                        _scanning(rec, directory, ready)
                        users.append(f"agentq-bench-{uuid.uuid4().hex[:8]}")  # a user of its own: nothing cached
                        _registering(rec, directory, with_overrides(ready, studio_user_id=users[-1]), store, sampler)
                except BaseException:
                    with contextlib.suppress(Exception):
                        _remove_users(ready, users)
                    raise
                deleted = _remove_users(ready, users)
        except StudioError as exc:
            where = shown_url(settings.studio_url)
            raise ServiceUnavailable(f"AutoGen Studio at {where} stopped answering: {exc}") from exc
    rec.measures["connectivity.availability"] = [probe.availability]
    rec.samples["connectivity.probe_seconds"] = probe.latencies
    result: dict[str, Any] = {
        "kind": "studio",
        "parameters": {
            "directory": str(directory),
            "iterations": iterations,
            "warmup": warmup,
            "studio": "local" if local_studio else "configured",
        },
        "versions": versions(),
        "machine": machine(),
        "measures": rec.measures,
        "studio_requests": rec.studio_requests,
        "task_seconds": rec.samples,  # the latency distributions the report draws
        "request_latency": rec.latency,
        "resources": sampler.samples,
        "peak_rss_mb": sampler.peak_rss_mb(),
        "facts": {
            "studio_validate_share": statistics.fmean(rec.validate_share) if rec.validate_share else None,
            "cache_hit_rate": statistics.fmean(rec.measures.get("register.cached_cache_hit_rate") or [0.0]),
            "repeated_runs": True,
        },
        "cleanup": {"studio_users": len(users), "team_rows_deleted": deleted},
    }
    save(out, result)
    return result
