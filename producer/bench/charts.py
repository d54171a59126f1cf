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

import numpy as np
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


# the panel of a measure by the end of its name, after those of rates and of seconds
SUFFIX_UNITS = (("_bytes", "network"), ("_mb", "memory"), ("_share", "share"), ("_rate", "share"))

# Studio sets' panels: (title, phases, the measure (or Studio requests' key) of each phase)
PHASES = (
    (
        "registration (sync of the tree), seconds",
        ("cold", "cached"),
        ("register.cold_seconds", "register.cached_seconds"),
    ),
    ("scanning the tree, seconds", ("cold", "no change"), ("scan.cold_seconds", "scan.rescan_seconds")),
    ("Studio requests per sync", ("cold", "cached"), ("register.cold", "register.cached")),
)

Walls = dict[tuple[int, str, str], dict[str, float]]  # (team size, mode, complexity) -> wall time summary
Series = list[tuple[str, list[dict[str, float] | None]]]  # (set's label, a summary or None per category)


def unit_of(measure: str) -> str:
    """The panel a measure is drawn in: one per unit (a rate: per thing counted)."""
    last = measure.rsplit(".", 1)[-1]
    if last.endswith("_per_second"):
        return last.removesuffix("_per_second").rsplit("_", 1)[-1] + " per second"
    if last.endswith("_seconds"):
        return _time_unit(measure, last)
    return "share" if last == "availability" else _suffix_unit(last)


def _time_unit(measure: str, last: str) -> str:
    is_request = "request" in last or measure.startswith(("connectivity.", "fetch."))
    return "request latency" if is_request else "time"


def _suffix_unit(last: str) -> str:
    return next((unit for suffix, unit in SUFFIX_UNITS if last.endswith(suffix)), "count")


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


def _bars(ax: Axes, categories: list[str], series: Series, horizontal: bool) -> None:
    """Bars of means with standard deviations, the series side by side in each category."""
    width = 0.8 / max(1, len(series))
    for j, (label, stats) in enumerate(series):
        at = [i - 0.4 + width * (j + 0.5) for i in range(len(categories))]
        _bar_series(ax, at, width, j, label, stats, horizontal)
    _category_ticks(ax, categories, horizontal)


def _bar_series(
    ax: Axes, at: list[float], width: float, j: int, label: str, stats: list[dict[str, float] | None], horizontal: bool
) -> None:
    """One series' bars, the j-th series' colour and hatching, each labelled with its mean."""
    means = [_of(s, "mean") for s in stats]
    spread = [_of(s, "stdev") for s in stats]
    style: dict[str, Any] = {"color": COLORS[j % len(COLORS)], "label": label, "capsize": 2}
    style["hatch"] = HATCHES[j % len(HATCHES)]
    drawn = (
        ax.barh(at, means, width, xerr=spread, **style)
        if horizontal
        else ax.bar(at, means, width, yerr=spread, **style)
    )
    ax.bar_label(drawn, _bar_labels(means, stats), fontsize=7, padding=3)


def _bar_labels(means: list[float], stats: list[dict[str, float] | None]) -> list[str]:
    """Each bar's mean; none for a measure the set lacks."""
    return [_figure(m) if s else "" for m, s in zip(means, stats, strict=True)]


def _of(stats: dict[str, float] | None, key: str) -> float:
    return stats[key] if stats else 0.0


def _category_ticks(ax: Axes, categories: list[str], horizontal: bool) -> None:
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
    by_unit = _by_unit(sets)
    units = sorted(by_unit, key=_unit_rank)
    heights = [0.5 + len(by_unit[u]) * (0.12 + 0.2 * len(sets)) for u in units]
    fig = Figure(figsize=(10, sum(heights) + 0.6 * len(units)), layout="constrained")
    axes = fig.subplots(len(units), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, unit in zip(axes, units, strict=True):
        series = [(label, _scaled(s, by_unit[unit], unit)) for label, s in zip(labels, sets, strict=True)]
        _bars(ax, by_unit[unit], series, horizontal=True)
        _unit_axis(ax, unit)
    if len(sets) > 1:  # above the first panel, on the line of its title
        axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(sets), fontsize=8, frameon=False)
    fig.suptitle("Measures: mean and standard deviation over the iterations, one panel per unit")
    return fig


def _by_unit(sets: list[ResultSet]) -> dict[str, list[str]]:
    """unit -> its measures: like measures together (every wall time, then every CPU time), each
    in the order of its prefix."""
    by_unit: dict[str, list[str]] = {}
    for measure in sorted({m for s in sets for m in s.measures}, key=lambda m: (m.rsplit(".", 1)[-1], m)):
        by_unit.setdefault(unit_of(measure), []).append(measure)
    return by_unit


def _scaled(s: ResultSet, measures: list[str], unit: str) -> list[dict[str, float] | None]:
    """Each measure's summary in the set (None where it has none), shares as percentages."""
    scale = 100.0 if unit == "share" else 1.0
    return [_times(_summary(s.measures.get(m)), scale) for m in measures]


def _times(stats: dict[str, float] | None, scale: float) -> dict[str, float] | None:
    return {k: v * scale for k, v in stats.items()} if stats else None


def _summary(values: object) -> dict[str, float] | None:
    """The values' summary; None where there are none."""
    return summary(values) if isinstance(values, list) and values else None


def _unit_axis(ax: Axes, unit: str) -> None:
    ax.set_title(unit, loc="left", fontsize=10, fontweight="bold")
    ax.set_xlabel(UNITS.get(unit, unit))
    ax.set_xlim(left=0)  # a spread wider than the mean is cut at 0: nothing here is negative
    if unit == "share":
        ax.set_xlim(0, 105)
    if unit == "network":
        ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.grid(axis="x", alpha=0.3)


def _wall_times(s: ResultSet) -> Walls:
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
    levels, modes, sizes = _wall_keys(walls)
    if not levels:
        return None
    both = {"parallel", "sequential"} <= set(modes)
    fig, grid = _wall_grid(len(levels), both)
    dodge = 0.04 * (max(sizes) - min(sizes) or 1)  # lines that coincide stay apart
    for col, level in enumerate(levels):
        _wall_panel(grid[0][col], walls, labels, modes, level, dodge)
        if both:
            _speedup(grid[1][col], walls, labels, level)
        grid[-1][col].set_xlabel("team size (agents)")
        grid[-1][col].set_xticks(sizes)
    fig.suptitle("Wall time by team size: parallel against sequential")
    return fig


def _wall_keys(walls: list[Walls]) -> tuple[list[str], list[str], list[int]]:
    """The levels, the modes (parallel and sequential first) and the team sizes measured."""
    keys: set[tuple[int, str, str]] = set().union(*walls)
    levels = {k[2] for k in keys}
    modes = sorted({k[1] for k in keys}, key=lambda m: (m not in MODE_COLORS, m))
    return [lv for lv in LEVELS if lv in levels], modes, sorted({k[0] for k in keys})


def _wall_grid(columns: int, both: bool) -> tuple[Figure, np.ndarray]:
    """A column of panels per level; with both modes, a row of speed-ups below the wall times."""
    fig = Figure(figsize=(max(6.0, 4.5 * columns), 6.5 if both else 4.5), layout="constrained")
    ratios = {"height_ratios": [2.2, 1]} if both else {}
    return fig, fig.subplots(2 if both else 1, columns, squeeze=False, sharex="col", gridspec_kw=ratios)


def _wall_panel(ax: Axes, walls: list[Walls], labels: list[str], modes: list[str], level: str, dodge: float) -> None:
    """A level's wall times by team size: a line per mode and set, shifted apart by `dodge`."""
    count = len(walls)
    for j, (label, w) in enumerate(zip(labels, walls, strict=True)):
        for m, mode in enumerate(modes):
            shift = dodge * (m * count + j - (len(modes) * count - 1) / 2)
            name = mode if count == 1 else f"{mode}, {label}"
            _wall_line(ax, _by_size(w, mode, level), shift, (mode, m), (name, j))
    ax.set_title(f"wall time, {level} tasks", fontsize=10)
    ax.set_ylabel("seconds per run (mean, sd)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _wall_line(
    ax: Axes, points: list[tuple[int, dict[str, float]]], shift: float, mode: tuple[str, int], name: tuple[str, int]
) -> None:
    """Mean wall time by team size, with its spread: the colour and marker of the mode (name and
    place among the modes), the line style of the set (label and place among the sets)."""
    if not points:
        return
    stats = [p[1] for p in points]
    ax.errorbar(
        [p[0] + shift for p in points],
        _column(stats, "mean"),
        yerr=_column(stats, "stdev"),
        color=MODE_COLORS.get(mode[0], COLORS[2 + mode[1] % 6]),
        linestyle=STYLES[name[1] % len(STYLES)],
        marker="os^v"[mode[1] % 4],
        capsize=3,
        label=name[0],
    )


def _by_size(w: Walls, mode: str, level: str) -> list[tuple[int, dict[str, float]]]:
    return sorted((k[0], st) for k, st in w.items() if k[1:] == (mode, level))


def _speedup(ax: Axes, walls: list[Walls], labels: list[str], level: str) -> None:
    for j, (label, w) in enumerate(zip(labels, walls, strict=True)):
        sizes, ratios = _ratios(w, level)
        if sizes:
            _speedup_line(ax, sizes, ratios, j, label)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_title("parallel's speed-up", fontsize=9)
    ax.set_ylabel("sequential ÷ parallel")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, 0.9), max(high, 1.1))
    ax.margins(y=0.3)
    ax.grid(alpha=0.3)
    if len(labels) > 1:
        ax.legend(fontsize=8)


def _ratios(w: Walls, level: str) -> tuple[list[int], list[float]]:
    """The team sizes run both ways, and how many times longer sequential took than parallel."""
    sizes = sorted(k[0] for k in w if k[1:] == ("parallel", level) and (k[0], "sequential", level) in w)
    return sizes, [w[(n, "sequential", level)]["mean"] / w[(n, "parallel", level)]["mean"] for n in sizes]


def _speedup_line(ax: Axes, sizes: list[int], ratios: list[float], j: int, label: str) -> None:
    ax.plot(sizes, ratios, color="black", linestyle=STYLES[j % len(STYLES)], marker="s", label=label)
    above = (0, 7) if j % 2 == 0 else (0, -13)  # two sets' labels on either side of their lines
    for n, r in zip(sizes, ratios, strict=True):
        ax.annotate(f"{r:.2f}x", (n, r), textcoords="offset points", xytext=above, ha="center", fontsize=8)


def phases_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Studio sets: registration and scanning, cold against cached, the sets side by side."""
    drawn = _phase_panels(sets, labels)
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


def _phase_panels(sets: list[ResultSet], labels: list[str]) -> list[tuple[str, list[str], Series]]:
    """(title, phases, series) of each panel with something to draw."""
    drawn = []
    for title, phases, measures in PHASES:
        series = [(label, _phases(s, title, measures)) for label, s in zip(labels, sets, strict=True)]
        if _any_drawn(series):
            drawn.append((title, list(phases), series))
    return drawn


def _any_drawn(series: Series) -> bool:
    return any(st for _, stats in series for st in stats)


def _phases(s: ResultSet, title: str, names: tuple[str, ...]) -> list[dict[str, float] | None]:
    """The summaries of a panel's phases in the set: of its measures, or of its Studio requests."""
    source = (s.data.get("studio_requests") or {}) if title.startswith("Studio") else s.measures
    return [_summary(source.get(m)) for m in names]


def resources_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """CPU and memory of the benchmark's process tree over time, a panel each, a line per set."""
    if not any(s.resources for s in sets):
        return None
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    cpu, mem = fig.subplots(2, 1, sharex=True)
    for j, (label, s) in enumerate(zip(labels, sets, strict=True)):
        _resource_lines(cpu, mem, s.resources, j, label)
    _resource_axes(cpu, mem)
    fig.suptitle("Resource use over time: the producer and the processes it started")
    return fig


def _resource_axes(cpu: Axes, mem: Axes) -> None:
    cpu.set_ylabel("CPU, % of one core")
    mem.set_ylabel("resident memory, MB")
    mem.set_xlabel("seconds since the benchmark started")
    for ax in (cpu, mem):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    cpu.legend(fontsize=8)


def _resource_lines(cpu: Axes, mem: Axes, samples: list[dict[str, float]], j: int, label: str) -> None:
    """The j-th set's CPU and memory over time, in its colour and line style."""
    style: dict[str, Any] = {"color": COLORS[j % len(COLORS)], "linestyle": STYLES[j % len(STYLES)], "label": label}
    t = _column(samples, "t")
    cpu.plot(t, _column(samples, "cpu_percent"), **style)
    mem.plot(t, _column(samples, "rss_mb"), **style)


def _column(rows: list[dict[str, float]], key: str) -> list[float]:
    return [row[key] for row in rows]
