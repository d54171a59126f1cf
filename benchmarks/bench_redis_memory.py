"""Redis memory over many workflow tasks, and after their TTLs pass: every key a run writes expires.

    python benchmarks/bench_redis_memory.py [--tasks 50000] [--per-run 2000] [--ttl 20] [--json]

A private redis-server, two workers and the stand-in endpoint (no latency). Runs of --per-run
independent tasks, each a new workflow (no cache hits), until --tasks have run; RUN_TTL_SECONDS and
CACHE_TTL_SECONDS are --ttl for the producer and the workers. Prints Redis's used memory and key
count at the start (workers up, nothing run), after the last run, and once the TTLs have passed,
with the keys left over by family.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producer import embedded  # noqa: E402
from producer.standin_llm import ThreadedStandIn  # noqa: E402
from tests.test_workflow_run import write_tree, write_workflow  # noqa: E402


def reading(client: redis.Redis) -> dict[str, float]:
    client.execute_command("MEMORY", "PURGE")  # jemalloc's free pages back first: a fair reading
    info = client.info("memory")
    return {"used_memory_mib": round(info["used_memory"] / 2**20, 2), "keys": int(client.dbsize())}


def families(client: redis.Redis) -> dict[str, int]:
    """Keys by family: the part before the first id-like segment."""
    out: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        parts = key.decode(errors="replace").split(":")
        out[":".join(p if len(p) < 12 else "<id>" for p in parts[:3])] += 1
    return dict(out.most_common(20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=50_000, help="tasks in all (default 50,000)")
    ap.add_argument("--per-run", type=int, default=2_000, help="tasks per workflow run (default 2,000)")
    ap.add_argument("--ttl", type=int, default=20, help="RUN_TTL_SECONDS and CACHE_TTL_SECONDS (default 20)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    ttl = {"RUN_TTL_SECONDS": str(args.ttl), "CACHE_TTL_SECONDS": str(args.ttl), "AGENTQ_TEST_SECRET": "sk-bench"}
    with tempfile.TemporaryDirectory() as tmp, embedded.LocalServices() as services:
        root = Path(tmp)
        url, proc = embedded.start_redis(root / "redis")
        services.add_process(proc)
        for i in range(2):
            services.add_process(
                embedded.start_worker(url, concurrency=8, name=f"mem{i}", env=ttl, log_path=root / f"w{i}.log")
            )
        standin = ThreadedStandIn()
        client = redis.Redis.from_url(url)
        try:
            write_tree(root, standin.url, max_concurrency=100)
            start = reading(client)
            env = {**os.environ, **ttl, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(root / "cache")}
            runs, t0 = 0, time.monotonic()
            while runs * args.per_run < args.tasks:
                wf = write_workflow(
                    root, [{"id": f"t{i}", "description": f"run {runs} task {i}"} for i in range(args.per_run)]
                )
                done = subprocess.run(
                    [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if done.returncode != 0:
                    raise SystemExit(f"run {runs} failed: {done.stderr[-2000:]}")
                runs += 1
                print(f"run {runs}: {runs * args.per_run} tasks, {time.monotonic() - t0:.0f} s", file=sys.stderr)
            after = reading(client)
            deadline = time.monotonic() + args.ttl * 3 + 30
            while time.monotonic() < deadline and client.dbsize() > start["keys"] + 10:
                time.sleep(1)
            expired = reading(client)
            result = {
                "tasks": runs * args.per_run,
                "runs": runs,
                "ttl_seconds": args.ttl,
                "start": start,
                "after_runs": after,
                "after_ttl": expired,
                "left_over_families": families(client),
            }
        finally:
            standin.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['tasks']:,} tasks in {runs} runs, TTLs {args.ttl} s")
    for name in ("start", "after_runs", "after_ttl"):
        r = result[name]
        print(f"  {name:<11} {r['used_memory_mib']:>8.2f} MiB  {r['keys']:>8,} keys")
    print(f"  keys left by family: {result['left_over_families']}")


if __name__ == "__main__":
    main()
