"""Benchmark statistics (`producer bench`): summaries, bootstrap comparisons and the advice the
figures support. Pure: results are plain dicts as stored in a result file's JSON."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def summary(values: list[float]) -> dict[str, float]:
    """mean, median, standard deviation, min and max of one measure's iterations."""
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


Histograms = dict[tuple[str, tuple[str, ...]], list[float]]  # shared/metrics.py: bucket counts, then the sum


def request_latency(
    before: Histograms,
    after: Histograms,
    metric: str,
    bounds: tuple[float, ...],
    name_of: Callable[[tuple[str, ...]], str],
) -> dict[str, dict[str, Any]]:
    """The requests made between two readings of the workers' histograms, by `name_of(labels)`
    (labels it leaves out are summed): {name: {"bounds", "counts", "sum"}}, `counts` one per
    bucket plus the +Inf bucket."""
    out: dict[str, dict[str, Any]] = {}
    for (name, labels), slots in after.items():
        if name != metric:
            continue
        earlier = before.get((name, labels), [0.0] * len(slots))
        delta = [a - b for a, b in zip(slots, earlier, strict=True)]
        if sum(delta[:-1]) <= 0:
            continue
        entry = out.setdefault(name_of(labels), {"bounds": list(bounds), "counts": [0] * (len(bounds) + 1), "sum": 0.0})
        entry["counts"] = [c + int(d) for c, d in zip(entry["counts"], delta[:-1], strict=True)]
        entry["sum"] += delta[-1]
    return out


def merge_latency(into: dict[str, dict[str, Any]], more: dict[str, dict[str, Any]]) -> None:
    """Add `more`'s requests to `into` (same bounds)."""
    for name, h in more.items():
        if name not in into:
            into[name] = {"bounds": h["bounds"], "counts": list(h["counts"]), "sum": h["sum"]}
        else:
            into[name]["counts"] = [a + b for a, b in zip(into[name]["counts"], h["counts"], strict=True)]
            into[name]["sum"] += h["sum"]


def combined(histograms: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One histogram of all the requests of `histograms` (empty when there are none)."""
    out: dict[str, dict[str, Any]] = {}
    for h in histograms:
        merge_latency(out, {"all": h})
    return out.get("all", {"bounds": [], "counts": [0], "sum": 0.0})


def bucket_quantile(q: float, bounds: list[float], counts: list[int]) -> float | None:
    """The q-quantile of bucketed latencies, interpolated linearly inside its bucket as
    Prometheus' histogram_quantile does (the first bucket starts at 0; a quantile in the +Inf
    bucket is the highest bound). None without requests."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            return _within_bucket(bounds, i, rank - seen, count)
        seen += count
    return bounds[-1]


def _within_bucket(bounds: list[float], i: int, into: float, count: int) -> float:
    """The latency `into` requests into bucket i's `count`, linearly (the +Inf bucket: the highest bound)."""
    if i == len(bounds):
        return bounds[-1]
    low = bounds[i - 1] if i else 0.0
    return low + (bounds[i] - low) * into / count


def latency_summary(h: dict[str, Any]) -> dict[str, float]:
    """count, mean, p50 and p95 of one request histogram."""
    count = sum(h["counts"])
    return {
        "count": float(count),
        "mean": h["sum"] / count if count else 0.0,
        "p50": bucket_quantile(0.5, h["bounds"], h["counts"]) or 0.0,
        "p95": bucket_quantile(0.95, h["bounds"], h["counts"]) or 0.0,
    }


@dataclass(frozen=True)
class Change:
    measure: str
    percent: float  # mean of B against mean of A, in percent (positive: B is larger)
    low: float  # 95% bootstrap interval of that percentage
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero: the change is larger than the noise."""
        return self.low > 0 or self.high < 0


def compare(a: dict[str, list[float]], b: dict[str, list[float]], rounds: int = 2000, seed: int = 0) -> list[Change]:
    """Each measure both have: the change of its mean from A to B, with a 95% percentile-bootstrap
    interval (resampling each side's iterations). Seeded: the same results give the same answer."""
    rng = random.Random(seed)
    changes = []
    for measure in sorted(a.keys() & b.keys()):
        xs, ys = a[measure], b[measure]
        if not xs or not ys or statistics.fmean(xs) == 0:
            continue
        base = statistics.fmean(xs)
        low, high = _interval(xs, ys, rounds, rng)
        changes.append(Change(measure, 100.0 * (statistics.fmean(ys) - base) / base, low, high))
    return changes


def _interval(xs: list[float], ys: list[float], rounds: int, rng: random.Random) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the change of the mean from xs to ys, in percent."""
    ratios = []
    for _ in range(rounds):
        mx = statistics.fmean(rng.choices(xs, k=len(xs)))
        my = statistics.fmean(rng.choices(ys, k=len(ys)))
        if mx:
            ratios.append(100.0 * (my - mx) / mx)
    ratios.sort()
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


def regressions(changes: list[Change], percent: float, higher_is_worse: set[str]) -> list[Change]:
    """Significant changes that made a measure worse by more than `percent`."""
    return [c for c in changes if c.significant and _worse_by(c, higher_is_worse) > percent]


def _worse_by(c: Change, higher_is_worse: set[str]) -> float:
    """The change in percent, counted positive where it made the measure worse."""
    return c.percent if c.measure in higher_is_worse else -c.percent


# (the fact, its limit, whether the advice is for a value at or above the limit (else below it),
# a fact that must also hold, the advice quoting the value)
ADVICE = (
    (
        "model_limit_saturated_share",
        0.5,
        True,
        None,
        "The model limit was saturated for {:.0%} of the run: raise the model's max_concurrency "
        "(if the endpoint allows it) before adding workers.",
    ),
    (
        "cache_hit_rate",
        0.5,
        False,
        "repeated_runs",
        "Only {:.0%} of repeated work came from the cache: check that the tree's variables "
        "and the tasks' inputs stay the same between runs.",
    ),
    (
        "worker_cpu_share",
        0.8,
        True,
        None,
        "The workers used {:.0%} of the machine's CPU: more worker processes on this host will not help; add hosts.",
    ),
    (
        "studio_validate_share",
        0.5,
        True,
        None,
        "Studio's validation took {:.0%} of the registration time: more concurrency will not "
        "help, since Studio answers one request at a time; keep LOCAL_VALIDATION on.",
    ),
)


def recommendations(result: dict[str, Any]) -> list[str]:
    """Advice computed from one result file, each quoting the figure that triggered it; nothing
    that no measurement supports."""
    facts = result.get("facts", {})
    return [
        advice.format(facts[fact])
        for fact, limit, above, needs, advice in ADVICE
        if _advised(facts, fact, limit, above, needs)
    ]


def _advised(facts: dict[str, Any], fact: str, limit: float, above: bool, needs: str | None) -> bool:
    value = facts.get(fact)
    if value is None or (needs is not None and not facts.get(needs)):
        return False
    return bool(value >= limit if above else value < limit)


def figure(value: float) -> str:
    """A measure as tables print it: thousands grouped, small values to the millisecond."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
