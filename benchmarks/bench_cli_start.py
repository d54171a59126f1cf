"""CLI start-up: `producer --help` and `producer --version` against `python3 -c pass`.

    python benchmarks/bench_cli_start.py [--repeat 15]

Alternating runs on the same machine load; ratios of medians (target for --help: at most 3x).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    commands = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "producer --help": [sys.executable, "-m", "producer.cli", "--help"],
        "producer --version": [sys.executable, "-m", "producer.cli", "--version"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            walls[name].append(_wall(cmd))
    base = statistics.median(walls["python3 -c pass"])
    for name, values in walls.items():
        med = statistics.median(values)
        print(f"{name}: median {med * 1000:.0f} ms (min {min(values) * 1000:.0f}), {med / base:.1f}x python3 -c pass")


if __name__ == "__main__":
    main()
