"""The report's latency distributions (matplotlib, drawn off-screen): box plots of the tasks'
seconds (or of the Studio calls), and the cumulative share of the requests answered within each
bucket bound of the workers' histograms; a panel per team size or per Studio endpoint, the modes
(or cold and cached) and the sets side by side in each."""

from __future__ import annotations

import re
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, PercentFormatter

from producer.bench.charts import COLORS, HATCHES, MODE_COLORS, STYLES, prefix_of
from producer.bench.results import ResultSet
from producer.bench.stats import latency_summary

MOST_PANELS = 9


def _grouped(keys: list[str]) -> dict[str, list[tuple[str, str]]]:
    """panel -> [(series, key)]: workflow keys by team size (series: mode, complexity, model),
    Studio keys by endpoint (series: cold or cached), anything else in one panel."""
    out: dict[str, list[tuple[str, str]]] = {}
    parsed = {key: prefix_of(key.partition(" ")[0].removesuffix(".wall_seconds")) for key in keys}
    several_levels = _count_levels(parsed) > 1
    for key in keys:
        panel, series = _place(key, parsed[key], several_levels)
        out.setdefault(panel, []).append((series, key))
    return out


def _count_levels(parsed: dict[str, tuple[int, str, str] | None]) -> int:
    """How many complexities the workflow keys name."""
    return len({found[2] for found in parsed.values() if found})


def _place(key: str, found: tuple[int, str, str] | None, several_levels: bool) -> tuple[str, str]:
    """(panel, series) of a key: its team size (and mode, complexity where there are several,
    model), its Studio endpoint (and cold or cached), or else its call."""
    head, _, rest = key.partition(" ")
    if found:
        size, mode, level = found
        return f"team size {size}", _joined(mode, level if several_levels else "", rest)
    if head.startswith("register.") and rest:
        return rest, head.removeprefix("register.")
    return ("Studio calls" if not rest else head), key.removesuffix("_seconds")


def _joined(*words: str) -> str:
    """The words that are not empty, with a space between."""
    return " ".join(x for x in words if x)


def _natural(text: str) -> list[int | str]:
    """A sort key that puts `team size 3` before `team size 10`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _panels(count: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    cols = min(3, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols + 1, height * rows + 0.8), layout="constrained")
    return fig, list(fig.subplots(rows, cols, squeeze=False, sharey=True).flat)


def task_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Box plots of task seconds (workflow: per team size, a box per mode; Studio: per call),
    each set's box next to the other's."""
    panels = _grouped(sorted({k for s in sets for k in _sampled(s.task_seconds)}, key=_natural))
    if not panels:
        return None
    fig, axes = _panels(len(panels), _box_panel_width(panels, len(sets)), 3.8)
    for ax, (panel, members) in zip(axes, sorted(panels.items(), key=lambda p: _natural(p[0])), strict=False):
        _box_panel(ax, panel, members, sets)
    if _spans_decades(sets):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("seconds (box: quartiles; whiskers: 1.5 IQR)")
    _hide(axes[len(panels) :])
    _sets_legend(axes[0], labels)
    fig.suptitle("Task latency distributions")
    return fig


def _sampled(samples: dict[str, list[float]]) -> list[str]:
    """The keys that hold samples."""
    return [k for k, v in samples.items() if v]


def _box_panel_width(panels: dict[str, list[tuple[str, str]]], sets: int) -> float:
    """Inches for a panel: room for each set's box of the panel with the most series."""
    most = max(len(members) for members in panels.values())
    return max(4.2, 0.6 * most * sets + 1)


def _sets_legend(ax: Axes, labels: list[str]) -> None:
    """With several sets, which hatching is which set: the boxes' colours are the modes (or calls)."""
    if len(labels) > 1:
        sides = [
            Patch(facecolor="white", edgecolor="black", hatch=HATCHES[j % len(HATCHES)]) for j in range(len(labels))
        ]
        ax.legend(sides, labels, fontsize=8, loc="upper left")


def _box_panel(ax: Axes, panel: str, members: list[tuple[str, str]], sets: list[ResultSet]) -> None:
    """A box per series and set: the series' colour, the set's hatching."""
    width = 0.8 / len(sets)
    for i, (series, key) in enumerate(members):
        color = MODE_COLORS.get(series.split(" ")[0], COLORS[i % len(COLORS)])
        for j, s in enumerate(sets):
            _box(
                ax,
                s.task_seconds.get(key) or [],
                i - 0.4 + width * (j + 0.5),
                width,
                (color, HATCHES[j % len(HATCHES)]),
            )
    _series_ticks(ax, [m[0] for m in members])
    ax.set_title(panel, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _series_ticks(ax: Axes, names: list[str]) -> None:
    """A tick per series, slanted where there are more than three."""
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 3 else 0)


def _box(ax: Axes, values: list[float], at: float, width: float, look: tuple[str, str]) -> None:
    """A box plot of the values at `at`, in `look` (colour, hatching); nothing for no values."""
    if not values:
        return
    box = ax.boxplot([values], positions=[at], widths=width * 0.9, patch_artist=True, medianprops={"color": "black"})
    box["boxes"][0].set(facecolor=look[0])
    box["boxes"][0].set(hatch=look[1], alpha=0.8)


def _spans_decades(sets: list[ResultSet]) -> bool:
    """Whether the task seconds span more than two decades: a log scale shows them better."""
    spread = [v for s in sets for values in s.task_seconds.values() for v in values if v > 0]
    return bool(spread) and max(spread) / min(spread) > 100


def _hide(axes: list[Axes]) -> None:
    for ax in axes:
        ax.set_visible(False)


def request_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Cumulative share of the requests answered within x seconds, from the workers' histograms:
    per team size (a line per mode and model) or per Studio endpoint (cold, cached), each set a
    line style of its own; the most requested panels when there are many."""
    panels = _grouped(sorted({k for s in sets for k in s.request_latency}, key=_natural))
    shown = _most_requested(sets, panels)
    if not shown:
        return None
    fig, axes = _panels(len(shown), 4.2, 3.4)
    for ax, panel in zip(axes, shown, strict=False):
        seen = _shares_panel(ax, panels[panel], sets, labels)
        _shares_axis(ax, panel, seen, _bounds(sets, panels[panel]))
    axes[0].set_ylabel("share of requests")
    _hide(axes[len(shown) :])
    more = f" (the {MOST_PANELS} most requested of {len(panels)})" if len(panels) > MOST_PANELS else ""
    fig.suptitle("Request latency distributions: Studio or model requests" + more)
    return fig


def _most_requested(sets: list[ResultSet], panels: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The MOST_PANELS panels with the most requests, in their natural order."""
    ranked = sorted(panels, key=lambda p: -sum(_requests(sets, k) for _, k in panels[p]))
    return sorted(ranked[:MOST_PANELS], key=_natural)


def _requests(sets: list[ResultSet], key: str) -> int:
    return sum(sum(s.request_latency[key]["counts"]) for s in sets if key in s.request_latency)


def _shares_panel(ax: Axes, members: list[tuple[str, str]], sets: list[ResultSet], labels: list[str]) -> list[float]:
    """A step line per series and set; returns the bucket bounds where the shares change, and
    where they reach all."""
    seen: list[float] = []
    for i, (series, key) in enumerate(members):
        for j, (label, s) in enumerate(zip(labels, sets, strict=True)):
            h = s.request_latency.get(key)
            if h and sum(h["counts"]):
                seen += _shares_line(ax, h, _line_name(series, label, len(sets)), _line_style(series, i, j))
    return seen


def _line_name(series: str, label: str, sets: int) -> str:
    """The series (`all` for none), and the set's label where there are several."""
    return f"{series or 'all'}{'' if sets == 1 else ', ' + label}"


def _line_style(series: str, i: int, j: int) -> dict[str, Any]:
    """The series' colour (the first the thickest), the set's line style."""
    color = MODE_COLORS.get(series.split(" ")[0], COLORS[(i + 2) % len(COLORS)])
    return {"color": color, "linestyle": STYLES[j % len(STYLES)], "linewidth": 3.2 if i == 0 else 1.6}


def _shares_line(ax: Axes, h: dict[str, Any], shown: str, style: dict[str, Any]) -> list[float]:
    """The cumulative share of a histogram's requests by bucket bound; returns the bound where it
    starts to rise and the one where it reaches all."""
    total = sum(h["counts"])
    shares = _cumulative(h["counts"][:-1], total)
    q = latency_summary(h)
    ax.step(h["bounds"], shares, where="post", label=f"{shown}: n={total}, p95 {q['p95']:.3g} s", **style)
    return _reach(h["bounds"], shares)


def _reach(bounds: list[float], shares: list[float]) -> list[float]:
    """The bound where the shares start to rise (the last one when they never do), and the one
    where they reach all (else the last)."""
    pairs = list(zip(bounds, shares, strict=True))
    rises = next(b for b, c in pairs if c > 0) if shares[-1] > 0 else bounds[-1]
    return [rises, next((b for b, c in pairs if c >= 1), bounds[-1])]


def _cumulative(counts: list[float], total: float) -> list[float]:
    cumulative: float = 0
    shares = []
    for count in counts:
        cumulative += count
        shares.append(cumulative / total)
    return shares


def _bounds(sets: list[ResultSet], members: list[tuple[str, str]]) -> list[float]:
    """Every bucket bound of the panel's histograms, in order."""
    return sorted({b for s in sets for k in members for b in s.request_latency.get(k[1], {}).get("bounds", [])})


def _shares_axis(ax: Axes, panel: str, seen: list[float], bounds: list[float]) -> None:
    ax.set_xscale("log")
    if seen:  # ticks at the buckets' bounds: the only places the shares are known
        low, high = min(seen) / 3, max(seen) * 3
        inside = [b for b in bounds if low <= b <= high]
        ax.set_xticks(inside, [f"{b:g}" for b in inside])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(low, high)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.set_title(panel, fontsize=10)
    ax.set_xlabel("answered within (seconds, bucket bound)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
