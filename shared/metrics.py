"""Product metrics recorded by workers and the producer, aggregated in Redis for the exporter.

Each process adds to an in-memory `Metrics` during its work and flushes it in one pipeline
(shared/adapters/redis/metrics.py); the exporter (monitoring/exporter.py) reads the totals on
every scrape, so one scrape covers every worker on every host. Labels are bounded: kinds,
outcomes, endpoints, models, statuses, hosts.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RUN_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# name -> (help, label names); the exporter publishes exactly these
COUNTER_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "agentq_cache_requests_total": ("Result cache lookups by node kind and result (hit/miss)", ("kind", "result")),
    "agentq_sync_outcomes_total": ("Components synced, by component type and outcome", ("component_type", "outcome")),
    "agentq_workflow_tasks_total": ("Workflow tasks finished, by status (each task once)", ("status",)),
    "agentq_workflow_task_redeliveries_total": (
        "Workflow tasks that ran again after they had ended (a redelivered or re-dispatched message)",
        (),
    ),
    "agentq_redispatches_total": (
        "Work published again because the run state said it may run and nothing carried it, by run kind and cause",
        ("kind", "cause"),
    ),
    "agentq_model_tokens_total": ("Tokens reported by model endpoints", ("model", "kind")),
    "agentq_retries_total": ("Retried calls, by target (studio/model) and cause", ("target", "cause")),
    "agentq_throttle_events_total": ("Workers pausing (throttled) or resuming consumption", ("host", "state")),
}
HISTOGRAM_HELP: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "agentq_studio_request_duration_seconds": (
        "AutoGen Studio API latency",
        ("endpoint", "method", "status"),
        LATENCY_BUCKETS,
    ),
    "agentq_model_request_duration_seconds": ("Model endpoint latency", ("model", "status"), LATENCY_BUCKETS),
    "agentq_run_duration_seconds": ("Run duration from enqueue to the last result", ("kind",), RUN_BUCKETS),
}


def counter_field(name: str, labels: Iterable[str]) -> str:
    """A counter's field in the cluster's counters hash."""
    return json.dumps([name, [str(v) for v in labels]])


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        # (name, labels) -> per-bucket counts (last one is +Inf), sum
        self.histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    def inc(self, name: str, labels: Iterable[str], value: float = 1.0) -> None:
        shown = tuple(str(v) for v in labels)
        # a name or label set the exporter does not know would be counted and never shown
        if len(COUNTER_HELP[name][1]) != len(shown):
            raise ValueError(f"{name} takes the labels {COUNTER_HELP[name][1]}, not {shown}")
        self.counters[(name, shown)] += value

    def observe(self, name: str, labels: Iterable[str], value: float) -> None:
        buckets = HISTOGRAM_HELP[name][2]
        key = (name, tuple(str(v) for v in labels))
        slots = self.histograms.setdefault(key, [0.0] * (len(buckets) + 2))
        slots[bisect.bisect_left(buckets, value)] += 1
        slots[-1] += value

    def counter_fields(self) -> dict[str, float]:
        """The counters as fields of the cluster's counters hash."""
        return {counter_field(name, labels): value for (name, labels), value in self.counters.items()}

    def drain(self) -> tuple[dict[str, float], dict[str, float]]:
        """The counters' and histograms' fields to add to the cluster's hashes (counters,
        histograms), taken out of this object."""
        counters = self.counter_fields()
        histograms = {
            json.dumps([name, labels, i]): value
            for (name, labels), slots in self.histograms.items()
            for i, value in enumerate(slots)
            if value
        }
        self.counters.clear()
        self.histograms.clear()
        return counters, histograms


def endpoint_template(path: str) -> str:
    """/teams/42 -> /teams/{id}: no ids in labels."""
    parts = [("{id}" if p.isdigit() else p) for p in path.split("?")[0].split("/")]
    return "/".join(parts)
