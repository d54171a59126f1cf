"""Benchmark statistics (`producer bench`): summaries, bootstrap comparisons and the advice the
figures support. Pure: results are plain dicts as stored in a result file's JSON."""

from __future__ import annotations

import random
import statistics
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
        ratios = []
        for _ in range(rounds):
            mx = statistics.fmean(rng.choices(xs, k=len(xs)))
            my = statistics.fmean(rng.choices(ys, k=len(ys)))
            if mx:
                ratios.append(100.0 * (my - mx) / mx)
        ratios.sort()
        low, high = ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]
        changes.append(Change(measure, 100.0 * (statistics.fmean(ys) - base) / base, low, high))
    return changes


def regressions(changes: list[Change], percent: float, higher_is_worse: set[str]) -> list[Change]:
    """Significant changes that made a measure worse by more than `percent`."""
    out = []
    for c in changes:
        worse = c.percent if c.measure in higher_is_worse else -c.percent
        if c.significant and worse > percent:
            out.append(c)
    return out


def recommendations(result: dict[str, Any]) -> list[str]:
    """Advice computed from one result file, each quoting the figure that triggered it; nothing
    that no measurement supports."""
    out: list[str] = []
    facts = result.get("facts", {})
    saturated = facts.get("model_limit_saturated_share")
    if saturated is not None and saturated >= 0.5:
        out.append(
            f"The model limit was saturated for {saturated:.0%} of the run: raise the model's max_concurrency "
            "(if the endpoint allows it) before adding workers."
        )
    hits = facts.get("cache_hit_rate")
    if hits is not None and facts.get("repeated_runs") and hits < 0.5:
        out.append(
            f"Only {hits:.0%} of repeated work came from the cache: check that the tree's variables "
            "and the tasks' inputs stay the same between runs."
        )
    cpu = facts.get("worker_cpu_share")
    if cpu is not None and cpu >= 0.8:
        out.append(
            f"The workers used {cpu:.0%} of the machine's CPU: more worker processes on this host will "
            "not help; add hosts."
        )
    validate = facts.get("studio_validate_share")
    if validate is not None and validate >= 0.5:
        out.append(
            f"Studio's validation took {validate:.0%} of the registration time: more concurrency will not "
            "help, since Studio answers one request at a time; keep LOCAL_VALIDATION on."
        )
    return out
