"""Edit-to-Studio latency under `producer watch` (issue "6 of 6").

    python benchmarks/bench_watch.py [--edits 20] [--debounce 100]

A real redis-server, one celery worker and a real AutoGen Studio; the example tree. Each edit
changes the writer agent's system message (two teams use it); the latency runs from the file
write to the team row's `updated_at` changing, as seen through Studio's API (polled every 10 ms).
Baseline, in the same run and alternating with the watch's edits: the same edit followed by a
one-shot `producer sync DIR` (process start included), timed the same way. Target: watch p95
under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers  # noqa: E402
from producer import embedded  # noqa: E402

TEAM = "research-team"
WRITER = "agents/writer.yaml"


def _row(client: httpx.Client, url: str) -> dict[str, object]:
    rows = client.get(f"{url}/api/teams/", params={"user_id": "bench"}).json()["data"]
    return next(r for r in rows if r["component"]["label"] == TEAM)


def _edit(tree: Path, message: str) -> None:
    path = tree / WRITER
    lines = [
        f"  system_message: {message}" if ln.startswith("  system_message:") else ln
        for ln in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


def _until_updated(client: httpx.Client, url: str, before: object, start: float, timeout: float = 60) -> float:
    while time.perf_counter() - start < timeout:
        if _row(client, url)["updated_at"] != before:
            return time.perf_counter() - start
        time.sleep(0.01)
    raise TimeoutError("the edit never reached Studio")


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--debounce", type=int, default=100, help="--debounce of producer watch (ms)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=1, concurrency=4) as (redis_url, _):
        tree = Path(tmp) / "tree"
        shutil.copytree(ROOT / "examples", tree)
        studio_url, studio = embedded.start_studio(Path(tmp) / "studio")
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "STUDIO_URL": studio_url,
            "STUDIO_USER_ID": "bench",
            "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache"),
        }
        cli = [sys.executable, "-m", "producer.cli"]
        watch = subprocess.Popen(
            [*cli, "watch", str(tree), "--json", "--debounce", str(args.debounce)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert watch.stdout is not None
            first = json.loads(watch.stdout.readline())
            assert not first["error"] and not first["counts"]["failed"], first
            with httpx.Client(timeout=30) as client:
                watched, synced = [], []
                for i in range(args.edits):
                    before = _row(client, studio_url)["updated_at"]
                    start = time.perf_counter()
                    _edit(tree, f"Watched edit {i}.")
                    watched.append(_until_updated(client, studio_url, before, start))
                    line = json.loads(watch.stdout.readline())  # the sync's own line: it has ended
                    assert not line["error"] and not line["counts"]["failed"], line
                    # the baseline: the same kind of edit, synced by hand (the watch syncs it too,
                    # after the one-shot sync has written it; that sync's line is read below)
                    watch.send_signal(signal.SIGSTOP)  # paused, so that only the one-shot sync writes
                    before = _row(client, studio_url)["updated_at"]
                    start = time.perf_counter()
                    _edit(tree, f"Synced edit {i}.")
                    subprocess.run([*cli, "sync", str(tree), "--json"], env=env, capture_output=True, check=False)
                    synced.append(_until_updated(client, studio_url, before, start))
                    watch.send_signal(signal.SIGCONT)
                    json.loads(watch.stdout.readline())  # it finds the edit already in Studio
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(timeout=60)
            embedded.stop(studio)
    for name, values in (("producer watch", watched), ("one-shot producer sync", synced)):
        print(
            f"{name}: edit to updated_at median {statistics.median(values):.3f} s, "
            f"p95 {_p95(values):.3f} s, max {max(values):.3f} s ({len(values)} edits)"
        )
    print(
        f"ratio watch/sync: median {statistics.median(watched) / statistics.median(synced):.2f}x, "
        f"p95 {_p95(watched) / _p95(synced):.2f}x; target: watch p95 under 1 s"
    )


if __name__ == "__main__":
    main()
