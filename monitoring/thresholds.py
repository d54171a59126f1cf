"""The alert thresholds, read from the one place they are set: the `agentq:threshold:*` recording
rules in monitoring/alerts.yml (Prometheus evaluates them; `producer monitor` reads them here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ALERTS = Path(__file__).resolve().parent / "alerts.yml"
PREFIX = "agentq:threshold:"
# recording rule -> the name `producer monitor` uses
NAMES = {
    "host_cpu_percent": "cpu",
    "host_memory_percent": "memory",
    "host_disk_percent": "disk",
    "studio_p95_warning_seconds": "studio_p95_warning",
    "studio_p95_critical_seconds": "studio_p95_critical",
    "queue_backlog_messages": "queue_backlog",
    "failure_ratio": "failure_ratio",
}


def thresholds(path: Path = ALERTS) -> dict[str, float]:
    """Every threshold by name; an error naming the rule when one is missing or not `vector(N)`."""
    found: dict[str, float] = {}
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            record = str(rule.get("record", ""))
            if record.startswith(PREFIX) and record.removeprefix(PREFIX) in NAMES:
                match = re.fullmatch(r"vector\(\s*([0-9.]+)\s*\)", str(rule["expr"]).strip())
                if match is None:
                    raise ValueError(f"{path}: {record} must be vector(<number>), not {rule['expr']!r}")
                found[NAMES[record.removeprefix(PREFIX)]] = float(match.group(1))
    missing = sorted(set(NAMES.values()) - found.keys())
    if missing:
        raise ValueError(f"{path}: no threshold rule for {', '.join(missing)}")
    return found
