"""The report's charts of means and of time (matplotlib, drawn off-screen without pyplot), and the
style every chart shares; latency_charts.py draws the distributions.

What a reader compares sits side by side on one axis, and an axis holds one unit: seconds, bytes,
megabytes, shares and rates each get panels of their own. Workflow sets show wall time by team size
with parallel against sequential (and how many times faster parallel was); Studio sets show cold
against cached registration and scanning. Several result sets are drawn next to each other in
every panel, told apart by colour and hatching, or by line style.
"""

from __future__ import annotations

import re
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from producer.bench.results import ResultSet
from producer.bench.stats import summary

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo")
STYLES = ("-", "--", ":", "-.")
MODE_COLORS = {"parallel": COLORS[0], "sequential": COLORS[1]}
LEVELS = ("simple", "medium", "complex")
_PREFIX = re.compile(r"^team(?P<size>\d+)\.(?P<mode>[a-z]+)(?:\.(?P<level>simple|medium|complex))?$")

# (panel, axis label), in the order the panels are drawn; shares are drawn as percentages
UNITS = {"time": "seconds", "request latency": "seconds", "share": "% of the run or of the requests"}
UNITS |= {"network": "bytes through loopback", "memory": "peak resident memory, MB", "count": "count"}


def unit_of(measure: str) -> str:
    """The panel a measure is drawn in: one per unit (a rate: per thing counted)."""
    last = measure.rsplit(".", 1)[-1]
    if last.endswith("_per_second"):
        return last.removesuffix("_per_second").rsplit("_", 1)[-1] + " per second"
    if last.endswith("_seconds"):
        is_request = "request" in last or measure.startswith(("connectivity.", "fetch."))
        return "request latency" if is_request else "time"
    if last.endswith("_bytes"):
        return "network"
    if last.endswith("_mb"):
        return "memory"
    if last.endswith(("_share", "_rate")) or last == "availability":
        return "share"
    return "count"


def prefix_of(name: str) -> tuple[int, str, str] | None:
    """(team size, mode, complexity) of a workflow measure's prefix such as `team3.parallel.complex`."""
    found = _PREFIX.match(name)
    return (int(found["size"]), found["mode"], found["level"] or "medium") if found else None


def _unit_rank(unit: str) -> tuple[int, str]:
    order = list(UNITS)
    return (order.index(unit) if unit in order else order.index("share"), unit)


def _figure(value: float) -> str:
    """A bar's label: thousands grouped, anything smaller to three significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _bars(
    ax: Axes, categories: list[str], series: list[tuple[str, list[dict[str, float] | None]]], horizontal: bool
) -> None:
    """Bars of means with standard deviations, the series side by side in each category."""
    width = 0.8 / max(1, len(series))
    for j, (label, stats) in enumerate(series):
        at = [i - 0.4 + width * (j + 0.5) for i in range(len(categories))]
        means = [s["mean"] if s else 0.0 for s in stats]
        spread = [s["stdev"] if s else 0.0 for s in stats]
        style: dict[str, Any] = {"color": COLORS[j % len(COLORS)], "label": label, "capsize": 2}
        style["hatch"] = HATCHES[j % len(HATCHES)]
        drawn = (
            ax.barh(at, means, width, xerr=spread, **style)
            if horizontal
            else ax.bar(at, means, width, yerr=spread, **style)
        )
        ax.bar_label(drawn, [_figure(m) if s else "" for m, s in zip(means, stats, strict=True)], fontsize=7, padding=3)
    ticks = list(range(len(categories)))
    if horizontal:
        ax.set_yticks(ticks, categories, fontsize=8)
        ax.invert_yaxis()
        ax.margins(x=0.15)
    else:
        ax.set_xticks(ticks, categories)
        ax.margins(y=0.15)


def measures_chart(sets: list[ResultSet], labels: list[str]) -> Figure:
    """Every measure's mean and standard deviation, one panel per unit, the sets side by side."""
    by_unit: dict[str, list[str]] = {}
    # like measures together (every wall time, then every CPU time), each in the order of its prefix
    for measure in sorted({m for s in sets for m in s.measures}, key=lambda m: (m.rsplit(".", 1)[-1], m)):
        by_unit.setdefault(unit_of(measure), []).append(measure)
    units = sorted(by_unit, key=_unit_rank)
    heights = [0.5 + len(by_unit[u]) * (0.12 + 0.2 * len(sets)) for u in units]
    fig = Figure(figsize=(10, sum(heights) + 0.6 * len(units)), layout="constrained")
    axes = fig.subplots(len(units), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, unit in zip(axes, units, strict=True):
        scale = 100.0 if unit == "share" else 1.0
        series = []
        for label, s in zip(labels, sets, strict=True):
            stats = [summary(s.measures[m]) if s.measures.get(m) else None for m in by_unit[unit]]
            series.append((label, [{k: v * scale for k, v in st.items()} if st else None for st in stats]))
        _bars(ax, by_unit[unit], series, horizontal=True)
        ax.set_title(unit, loc="left", fontsize=10, fontweight="bold")
        ax.set_xlabel(UNITS.get(unit, unit))
        ax.set_xlim(left=0)  # a spread wider than the mean is cut at 0: nothing here is negative
        if unit == "share":
            ax.set_xlim(0, 105)
        if unit == "network":
            ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
        ax.grid(axis="x", alpha=0.3)
    if len(sets) > 1:  # above the first panel, on the line of its title
        axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(sets), fontsize=8, frameon=False)
    fig.suptitle("Measures: mean and standard deviation over the iterations, one panel per unit")
    return fig


def _wall_times(s: ResultSet) -> dict[tuple[int, str, str], dict[str, float]]:
    found = {}
    for name, values in s.measures.items():
        prefix, _, measure = name.rpartition(".")
        key = prefix_of(prefix)
        if measure == "wall_seconds" and key and values:
            found[key] = summary(values)
    return found


def wall_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Workflow sets: wall time by team size, a line per mode (and set); below it, how many times
    longer the sequential run took than the parallel one."""
    walls = [_wall_times(s) for s in sets]
    levels = [lv for lv in LEVELS if any(k[2] == lv for w in walls for k in w)]
    if not levels:
        return None
    modes = sorted({k[1] for w in walls for k in w}, key=lambda m: (m not in MODE_COLORS, m))
    both = {"parallel", "sequential"} <= set(modes)
    fig = Figure(figsize=(max(6.0, 4.5 * len(levels)), 6.5 if both else 4.5), layout="constrained")
    ratios = {"height_ratios": [2.2, 1]} if both else {}
    grid = fig.subplots(2 if both else 1, len(levels), squeeze=False, sharex="col", gridspec_kw=ratios)
    sizes = sorted({k[0] for w in walls for k in w})
    dodge = 0.04 * (max(sizes) - min(sizes) or 1)  # lines that coincide stay apart
    for col, level in enumerate(levels):
        ax = grid[0][col]
        for j, (label, w) in enumerate(zip(labels, walls, strict=True)):
            for m, mode in enumerate(modes):
                points = sorted((k[0], st) for k, st in w.items() if k[1:] == (mode, level))
                if points:
                    name = mode if len(sets) == 1 else f"{mode}, {label}"
                    shift = dodge * (m * len(sets) + j - (len(modes) * len(sets) - 1) / 2)
                    ax.errorbar(
                        [p[0] + shift for p in points],
                        [p[1]["mean"] for p in points],
                        yerr=[p[1]["stdev"] for p in points],
                        color=MODE_COLORS.get(mode, COLORS[2 + modes.index(mode) % 6]),
                        linestyle=STYLES[j % len(STYLES)],
                        marker="os^v"[m % 4],
                        capsize=3,
                        label=name,
                    )
        ax.set_title(f"wall time, {level} tasks", fontsize=10)
        ax.set_ylabel("seconds per run (mean, sd)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if both:
            _speedup(grid[1][col], walls, labels, level)
        grid[-1][col].set_xlabel("team size (agents)")
        grid[-1][col].set_xticks(sizes)
    fig.suptitle("Wall time by team size: parallel against sequential")
    return fig


def _speedup(
    ax: Axes, walls: list[dict[tuple[int, str, str], dict[str, float]]], labels: list[str], level: str
) -> None:
    for j, (label, w) in enumerate(zip(labels, walls, strict=True)):
        sizes = sorted(k[0] for k in w if k[1:] == ("parallel", level) and (k[0], "sequential", level) in w)
        ratios = [w[(n, "sequential", level)]["mean"] / w[(n, "parallel", level)]["mean"] for n in sizes]
        if sizes:
            ax.plot(sizes, ratios, color="black", linestyle=STYLES[j % len(STYLES)], marker="s", label=label)
            for n, r in zip(sizes, ratios, strict=True):
                above = (0, 7) if j % 2 == 0 else (0, -13)  # two sets' labels on either side of their lines
                ax.annotate(f"{r:.2f}x", (n, r), textcoords="offset points", xytext=above, ha="center", fontsize=8)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_title("parallel's speed-up", fontsize=9)
    ax.set_ylabel("sequential ÷ parallel")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, 0.9), max(high, 1.1))
    ax.margins(y=0.3)
    ax.grid(alpha=0.3)
    if len(labels) > 1:
        ax.legend(fontsize=8)


def phases_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Studio sets: registration and scanning, cold against cached, the sets side by side."""
    panels = [
        (
            "registration (sync of the tree), seconds",
            {"cold": "register.cold_seconds", "cached": "register.cached_seconds"},
        ),
        ("scanning the tree, seconds", {"cold": "scan.cold_seconds", "no change": "scan.rescan_seconds"}),
        ("Studio requests per sync", {"cold": "register.cold", "cached": "register.cached"}),
    ]
    drawn = []
    for title, phases in panels:
        series = []
        for label, s in zip(labels, sets, strict=True):
            source = (s.data.get("studio_requests") or {}) if title.startswith("Studio") else s.measures
            found = [source.get(m) for m in phases.values()]
            series.append((label, [summary(v) if isinstance(v, list) and v else None for v in found]))
        if any(st for _, stats in series for st in stats):
            drawn.append((title, list(phases), series))
    if not drawn:
        return None
    fig = Figure(figsize=(4 * len(drawn) + 1, 4.2), layout="constrained")
    for ax, (title, names, series) in zip(fig.subplots(1, len(drawn), squeeze=False)[0], drawn, strict=True):
        _bars(ax, names, series, horizontal=False)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle("Cold against cached: registration, scanning and Studio requests (mean, sd)")
    return fig


def resources_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """CPU and memory of the benchmark's process tree over time, a panel each, a line per set."""
    if not any(s.resources for s in sets):
        return None
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    cpu, mem = fig.subplots(2, 1, sharex=True)
    for j, (label, s) in enumerate(zip(labels, sets, strict=True)):
        t = [x["t"] for x in s.resources]
        style = {"color": COLORS[j % len(COLORS)], "linestyle": STYLES[j % len(STYLES)], "label": label}
        cpu.plot(t, [x["cpu_percent"] for x in s.resources], **style)
        mem.plot(t, [x["rss_mb"] for x in s.resources], **style)
    cpu.set_ylabel("CPU, % of one core")
    mem.set_ylabel("resident memory, MB")
    mem.set_xlabel("seconds since the benchmark started")
    for ax in (cpu, mem):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    cpu.legend(fontsize=8)
    fig.suptitle("Resource use over time: the producer and the processes it started")
    return fig
