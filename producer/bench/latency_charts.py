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
    levels = {found[2] for found in parsed.values() if found}
    for key in keys:
        head, _, rest = key.partition(" ")
        found = parsed[key]
        if found:
            size, mode, level = found
            series = " ".join(x for x in (mode, level if len(levels) > 1 else "", rest) if x)
            out.setdefault(f"team size {size}", []).append((series, key))
        elif head.startswith("register.") and rest:
            out.setdefault(rest, []).append((head.removeprefix("register."), key))
        else:
            out.setdefault("Studio calls" if not rest else head, []).append((key.removesuffix("_seconds"), key))
    return out


def _natural(text: str) -> list[Any]:
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
    panels = _grouped(sorted({k for s in sets for k, v in s.task_seconds.items() if v}, key=_natural))
    if not panels:
        return None
    most = max(len(members) for members in panels.values())
    fig, axes = _panels(len(panels), max(4.2, 0.6 * most * len(sets) + 1), 3.8)
    spread = [v for s in sets for values in s.task_seconds.values() for v in values if v > 0]
    for ax, (panel, members) in zip(axes, sorted(panels.items(), key=lambda p: _natural(p[0])), strict=False):
        width = 0.8 / len(sets)
        for i, (series, key) in enumerate(members):
            for j, s in enumerate(sets):
                values = s.task_seconds.get(key) or []
                if not values:
                    continue
                box = ax.boxplot(
                    [values],
                    positions=[i - 0.4 + width * (j + 0.5)],
                    widths=width * 0.9,
                    patch_artist=True,
                    medianprops={"color": "black"},
                )
                box["boxes"][0].set(facecolor=MODE_COLORS.get(series.split(" ")[0], COLORS[i % len(COLORS)]))
                box["boxes"][0].set(hatch=HATCHES[j % len(HATCHES)], alpha=0.8)
        ax.set_xticks(range(len(members)), [m[0] for m in members], rotation=20 if len(members) > 3 else 0)
        ax.set_title(panel, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if spread and max(spread) / min(spread) > 100:
        axes[0].set_yscale("log")
    axes[0].set_ylabel("seconds (box: quartiles; whiskers: 1.5 IQR)")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if len(sets) > 1:  # the boxes' colours are the modes (or calls), their hatching the sets
        sides = [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[j % len(HATCHES)]) for j in range(len(sets))]
        axes[0].legend(sides, labels, fontsize=8, loc="upper left")
    fig.suptitle("Task latency distributions")
    return fig


def request_chart(sets: list[ResultSet], labels: list[str]) -> Figure | None:
    """Cumulative share of the requests answered within x seconds, from the workers' histograms:
    per team size (a line per mode and model) or per Studio endpoint (cold, cached), each set a
    line style of its own; the most requested panels when there are many."""
    keys = {k for s in sets for k in s.request_latency}
    totals = {k: sum(sum(s.request_latency[k]["counts"]) for s in sets if k in s.request_latency) for k in keys}
    panels = _grouped(sorted(keys, key=_natural))
    ranked = sorted(panels, key=lambda p: -sum(totals[k] for _, k in panels[p]))
    shown = sorted(ranked[:MOST_PANELS], key=_natural)
    if not shown:
        return None
    fig, axes = _panels(len(shown), 4.2, 3.4)
    for ax, panel in zip(axes, shown, strict=False):
        seen: list[float] = []  # bucket bounds where the shares change, and where they reach all
        for i, (series, key) in enumerate(panels[panel]):
            for j, (label, s) in enumerate(zip(labels, sets, strict=True)):
                h = s.request_latency.get(key)
                if not h or not sum(h["counts"]):
                    continue
                total, cumulative, shares = sum(h["counts"]), 0, []
                for count in h["counts"][:-1]:
                    cumulative += count
                    shares.append(cumulative / total)
                q = latency_summary(h)
                name = f"{series or 'all'}{'' if len(sets) == 1 else ', ' + label}: n={total}, p95 {q['p95']:.3g} s"
                color = MODE_COLORS.get(series.split(" ")[0], COLORS[(i + 2) % len(COLORS)])
                style: dict[str, Any] = {
                    "color": color,
                    "linestyle": STYLES[j % len(STYLES)],
                    "linewidth": 3.2 if i == 0 else 1.6,
                }
                ax.step(h["bounds"], shares, where="post", label=name, **style)
                pairs = list(zip(h["bounds"], shares, strict=True))
                seen += [next(b for b, c in pairs if c > 0) if shares[-1] > 0 else h["bounds"][-1]]
                seen += [next((b for b, c in pairs if c >= 1), h["bounds"][-1])]
        ax.set_xscale("log")
        if seen:  # ticks at the buckets' bounds: the only places the shares are known
            low, high = min(seen) / 3, max(seen) * 3
            bounds = sorted(
                {b for s in sets for k in panels[panel] for b in s.request_latency.get(k[1], {}).get("bounds", [])}
            )
            ax.set_xticks([b for b in bounds if low <= b <= high], [f"{b:g}" for b in bounds if low <= b <= high])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(low, high)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1.05)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("answered within (seconds, bucket bound)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("share of requests")
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    more = f" (the {MOST_PANELS} most requested of {len(panels)})" if len(panels) > MOST_PANELS else ""
    fig.suptitle("Request latency distributions: Studio or model requests" + more)
    return fig
