"""Scheduling cost of dependency groups: 10 waves x 200 no-op nodes vs the same 2,000 flat.

    python benchmarks/bench_waves.py [--skip-naive]

Runs, on the same worker (threads pool, one redis-server):
  A. our design, batched: one chord per wave, 25 nodes per task message, 10 x 200 vs 1 x 2,000
  B. our design, one node per task message: 10 x 200 vs 1 x 2,000
  C. a plain celery group of 2,000 no-op tasks (the flat baseline)
  D. the naive nested canvas: chain of 10 chords of 200 no-op tasks (quadratic)
Each figure is wall time from publishing to the last node's result.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery import chain, chord, group  # noqa: E402

from benchmarks.common import new_run_id, redis_and_workers, store_for, wait_finished  # noqa: E402
from shared.adapters.celery import CeleryDispatcher, create_app  # noqa: E402
from shared.core.records import NewRun  # noqa: E402
from shared.core.run_model import NodeState, RunMeta, RunState, Status  # noqa: E402
from shared.settings import Settings  # noqa: E402


def run_waves(app, store, waves: int, per_wave: int, batch: int) -> float:
    run_id = new_run_id()
    labels = [[f"w{w}-n{i}" for i in range(per_wave)] for w in range(waves)]
    plan = [[wave[i : i + batch] for i in range(0, per_wave, batch)] for wave in labels]
    nodes = {lbl: NodeState(status=Status.PENDING) for wave in labels for lbl in wave}
    meta = RunMeta(
        run_id=run_id,
        waves=waves,
        total=len(nodes),
        state=RunState.RUNNING,
        created=time.time(),
        batch_task="agentq.noop_batch",
        gallery_needed=False,
        tree="bench",
        namespace="bench",
    )
    store.create_run(NewRun(meta, nodes, {}, plan))
    t0 = time.time()
    CeleryDispatcher(app).start_run(run_id)
    finished = wait_finished(store, run_id)
    counts = store.counts(run_id)
    assert counts.get("done") == len(nodes), counts
    return finished - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    with redis_and_workers(workers=1, concurrency=2) as (url, _):
        app = create_app(Settings(REDIS_URL=url))
        store = store_for(url)
        run_waves(app, store, 1, 50, 25)  # warm-up
        rows = []
        for batch in (25, 1):
            deep = run_waves(app, store, 10, 200, batch)
            flat = run_waves(app, store, 1, 2000, batch)
            rows.append((f"wave chords, {batch} node(s)/task", deep, flat))
        t0 = time.time()
        group(app.signature("agentq.noop") for _ in range(2000)).apply_async().get(timeout=600)
        flat_group = time.time() - t0
        print(f"{'design':34} {'10 x 200':>10} {'1 x 2000':>10} {'ratio':>7}")
        for name, deep, flat in rows:
            print(f"{name:34} {deep:9.2f}s {flat:9.2f}s {deep / flat:6.2f}x")
        print(f"{'plain celery group of 2000 no-ops':34} {'':>10} {flat_group:9.2f}s")
        best = rows[0][1]
        print(f"our 10 x 200 (batched) vs the plain flat group: {best / flat_group:.2f}x")
        if not args.skip_naive:
            t0 = time.time()
            canvas = chain(
                *(
                    chord([app.signature("agentq.noop") for _ in range(200)], app.signature("agentq.noop"))
                    for _ in range(10)
                )
            )
            canvas.apply_async().get(timeout=1800)
            naive = time.time() - t0
            print(f"{'naive chain of 10 chords x 200':34} {naive:9.2f}s   ({naive / flat_group:.1f}x the flat group)")


if __name__ == "__main__":
    main()
