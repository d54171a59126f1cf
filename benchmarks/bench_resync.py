"""No-change re-sync of 10,000 generated component files (target: under 1 s wall).

    python benchmarks/bench_resync.py [--files 10000]

A real first sync (real redis-server, a celery worker, a real AutoGen Studio) fills the cache;
then `producer sync DIR` is run again, unchanged, as a user would: wall time of the whole
command (process start included), plus where the time goes in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers, store_for  # noqa: E402
from benchmarks.gen_tree import mixed_tree  # noqa: E402
from producer import embedded  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=1, concurrency=2) as (url, _):
        tree = Path(tmp) / "tree"
        mixed_tree(tree, args.files)
        studio_url, studio = embedded.start_studio(Path(tmp) / "studio")
        try:
            env = {**os.environ, "REDIS_URL": url, "STUDIO_URL": studio_url, "STUDIO_USER_ID": "bench",
                   "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache")}
            cmd = [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json"]
            t0 = time.time()
            first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
            report = json.loads(first.stdout)
            print(f"first sync of {args.files} files: {time.time() - t0:.1f} s, counts {report['counts']}")
            walls = []
            for _ in range(args.repeat):
                t0 = time.time()
                again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
                walls.append(time.time() - t0)
                rep = json.loads(again.stdout)
                assert rep["counts"]["unchanged"] == args.files and not rep["studio_requests"], rep["counts"]
            print(f"no-change re-sync, whole command: median {statistics.median(walls):.3f} s "
                  f"(min {min(walls):.3f}, max {max(walls):.3f}) over {args.repeat} runs")
            _breakdown(tree, url, env)
        finally:
            embedded.stop(studio)


def _breakdown(tree: Path, url: str, env: dict[str, str]) -> None:
    from producer.planner import make_plan, tree_gallery_key
    from producer.scanner import default_cache_path, scan
    from shared.hashing import namespace
    from shared.settings import Settings
    from shared.tree import build_tree

    settings = Settings(AGENTQ_CACHE_DIR=env["AGENTQ_CACHE_DIR"])
    store = store_for(url)
    t0 = time.perf_counter()
    result = scan(tree.resolve(), default_cache_path(tree.resolve(), settings.cache_dir))
    t1 = time.perf_counter()
    built = build_tree(result.documents, os.environ.keys())
    t2 = time.perf_counter()
    ns = namespace(env["STUDIO_URL"], "bench")
    valid = built.valid
    gkey = tree_gallery_key(built, tree.name)
    hits, ghit, last = store.lookup(ns, [built.nodes[v].key for v in valid], gkey, str(tree.resolve()))
    t3 = time.perf_counter()
    cached = {lbl: h for lbl, h in zip(valid, hits) if h is not None}
    make_plan(built, tree_name=str(tree), gallery_name=tree.name, cached=cached, gallery_cached=ghit is not None,
              last_keys=last, batch_size=25)
    t4 = time.perf_counter()
    print(f"in-process: scan {t1 - t0:.3f} s ({result.parsed} files parsed), validate+keys {t2 - t1:.3f} s, "
          f"one Redis round trip for {len(valid)} keys {t3 - t2:.3f} s, plan {t4 - t3:.3f} s")


if __name__ == "__main__":
    main()
