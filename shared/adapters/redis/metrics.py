"""The Redis sink of the product metrics (shared/metrics.py): a process's `Metrics` added to the
cluster's hashes in one pipeline, and the totals read back (the exporter, benchmarks)."""

from __future__ import annotations

import json

import redis

from shared.adapters.redis.keys import COUNTERS, HISTOGRAMS
from shared.metrics import HISTOGRAM_HELP, Metrics


def flush(client: redis.Redis, metrics: Metrics) -> None:
    """Add what `metrics` holds to the cluster's totals, and empty it."""
    counters, histograms = metrics.drain()
    if not counters and not histograms:
        return
    pipe = client.pipeline(transaction=False)
    for field, value in counters.items():
        pipe.hincrbyfloat(COUNTERS, field, value)
    for field, value in histograms.items():
        pipe.hincrbyfloat(HISTOGRAMS, field, value)
    pipe.execute()


def read_counters(client: redis.Redis) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(n, tuple(lbls)): float(v) for k, v in client.hgetall(COUNTERS).items() for n, lbls in [json.loads(k)]}


def read_histograms(client: redis.Redis) -> dict[tuple[str, tuple[str, ...]], list[float]]:
    out: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for k, v in client.hgetall(HISTOGRAMS).items():
        name, labels, i = json.loads(k)
        if name not in HISTOGRAM_HELP:
            continue
        slots = out.setdefault((name, tuple(labels)), [0.0] * (len(HISTOGRAM_HELP[name][2]) + 2))
        slots[i] = float(v)
    return out
