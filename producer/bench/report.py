"""`producer bench report`: a self-contained report.html (the charts of charts.py and
latency_charts.py as embedded PNGs, after the summary) and report.md (a table per set, request
latencies, recommendations). Matplotlib is imported only here, when a report is drawn."""

from __future__ import annotations

import base64
import html as html_text
import io
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.bench.results import ResultSet, same_kind, table_rows
from producer.bench.stats import figure, latency_summary, recommendations

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def labels_of(sets: list[ResultSet]) -> list[str]:
    """How charts and tables call each set: its folder's name, or the path as given where two
    folders have the same name."""
    names = Counter(s.name for s in sets)
    return [s.name if names[s.name] == 1 else str(s.path) for s in sets]


def _fact_table(title: str, facts: object) -> list[str]:
    """A mapping as a two-column Markdown table (a reader's table, not a Python dict)."""
    if not isinstance(facts, dict) or not facts:
        return []
    rows = [f"| {key} | {value} |" for key, value in facts.items()]
    return [f"| {title} | |", "|---|---|", *rows, ""]


def markdown(sets: list[ResultSet], labels: list[str]) -> list[str]:
    md = ["# Benchmark report", ""]
    for label, r in zip(labels, sets, strict=True):
        md += [
            f"## {label} ({r.kind})",
            "",
            *_fact_table("machine", r.machine),
            "| measure | mean | median | stdev | min | max |",
            "|---|---|---|---|---|---|",
        ]
        md += [
            f"| {m} | " + " | ".join(figure(s[k]) for k in ("mean", "median", "stdev", "min", "max")) + " |"
            for m, s in table_rows(r.measures)
        ]
        if r.request_latency:
            md += ["", "| requests | count | mean s | p50 s | p95 s |", "|---|---|---|---|---|"]
            for what, h in sorted(r.request_latency.items()):
                q = latency_summary(h)
                md.append(f"| {what} | {q['count']:.0f} | {q['mean']:.3f} | {q['p50']:.3f} | {q['p95']:.3f} |")
        advice = recommendations(r.data)
        md += ["", "Recommendations:" if advice else "No recommendation: nothing measured calls for a change.", ""]
        md += [f"- {a}" for a in advice]
        md.append("")
    return md


def charts(sets: list[ResultSet], labels: list[str]) -> list[tuple[str, Figure]]:
    """The report's charts, in order, each with its title; those with nothing to draw left out."""
    from producer.bench.charts import measures_chart, phases_chart, resources_chart, wall_chart
    from producer.bench.latency_charts import request_chart, task_chart

    found = [
        ("Measures, one panel per unit", measures_chart(sets, labels)),
        ("Wall time by team size: parallel against sequential", wall_chart(sets, labels)),
        ("Cold against cached: registration and scanning", phases_chart(sets, labels)),
        ("Task latency distributions", task_chart(sets, labels)),
        ("Request latency distributions (Studio or model requests)", request_chart(sets, labels)),
        ("Resource use over time", resources_chart(sets, labels)),
    ]
    return [(title, fig) for title, fig in found if fig is not None]


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def report(sets: list[ResultSet], out: Path) -> tuple[Path, Path]:
    """Write report.html and report.md into `out` (created); sets of one kind only."""
    same_kind(sets)
    labels = labels_of(sets)
    md = markdown(sets, labels)
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>Benchmark report</title></head><body>"]
    page.append("<pre>" + html_text.escape("\n".join(md)) + "</pre>")
    with warnings.catch_warnings():  # numpy's and matplotlib's on extreme values: the chart says it
        warnings.simplefilter("ignore")
        for title, fig in charts(sets, labels):
            shown = html_text.escape(title)
            page.append(f"<h2>{shown}</h2><img alt='{shown}' src='data:image/png;base64,{png(fig)}'>")
    page.append("</body></html>")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text("\n".join(page))
    (out / "report.md").write_text("\n".join(md))
    return out / "report.html", out / "report.md"
