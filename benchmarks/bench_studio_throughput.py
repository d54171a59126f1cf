"""Full sync of 1,000 teams into a real AutoGen Studio vs the Studio's own ceiling.

    python benchmarks/bench_studio_throughput.py [--teams 1000] [--concurrency 32]

Same run, same Studio (one uvicorn worker, SQLite, as the reference server):
  ceiling A: a raw httpx client posting the 1,000 team rows (POST /api/teams/) at high concurrency;
  ceiling B: the same client doing what a sync must do per team: POST /api/validate/ then POST /api/teams/;
  ours: `producer sync` of a tree with the same 1,000 teams (two worker processes), which validates
  every component and creates every row, from enqueue to the last result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers  # noqa: E402
from benchmarks.gen_tree import teams_tree  # noqa: E402
from producer import embedded  # noqa: E402
from shared.core.refs import inline_refs  # noqa: E402


async def raw(url: str, user: str, teams: list[dict], concurrency: int, validate: bool) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=url + "/api", timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def one(team: dict) -> None:
            async with gate:
                if validate:
                    (await client.post("/validate/", json={"component": team})).raise_for_status()
                (await client.post("/teams/", json={"user_id": user, "component": team})).raise_for_status()

        t0 = time.time()
        await asyncio.gather(*(one(t) for t in teams))
        return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teams", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=2, concurrency=2) as (url, _):
        tree = Path(tmp) / "tree"
        docs = teams_tree(tree, args.teams)
        model = json.loads((tree / "model.json").read_text())
        model["config"]["api_key"] = "not-a-key"
        resolved = [inline_refs(d, lambda _lbl: model) for d in docs]
        studio_url, studio = embedded.start_studio(Path(tmp) / "studio")
        try:
            httpx.get(f"{studio_url}/api/teams/", params={"user_id": "warm"})  # server warm-up
            ceiling_a = asyncio.run(raw(studio_url, "raw-a", resolved, args.concurrency, validate=False))
            ceiling_b = asyncio.run(raw(studio_url, "raw-b", resolved, args.concurrency, validate=True))
            env = {
                **os.environ,
                "REDIS_URL": url,
                "STUDIO_URL": studio_url,
                "STUDIO_USER_ID": "ours",
                "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache"),
            }
            proc = subprocess.run(
                [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
            )
            report = json.loads(proc.stdout)
            ours = report["seconds"]
            assert report["counts"]["created"] == args.teams + 1, report["counts"]
        finally:
            embedded.stop(studio)
    n = args.teams
    print(f"ceiling A, raw POST /teams/ x{n} @ {args.concurrency}: {ceiling_a:.2f} s ({n / ceiling_a:.0f} teams/s)")
    print(f"ceiling B, raw validate + POST x{n} @ {args.concurrency}: {ceiling_b:.2f} s ({n / ceiling_b:.0f} teams/s)")
    print(f"producer sync of {n} teams (+1 model), 2 workers: {ours:.2f} s ({n / ours:.0f} teams/s)")
    print(f"ours vs ceiling B (same work): {ceiling_b / ours:.0%}; vs ceiling A (rows only): {ceiling_a / ours:.0%}")
    print(f"our Studio requests: {report['studio_requests']}")


if __name__ == "__main__":
    main()
