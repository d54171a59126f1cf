"""Horizontal scale where it should show: work bound by model latency, on 1, 2 and 4 hosts.

    python benchmarks/bench_hosts.py [--hosts 1,2,4] [--concurrency 8] [--rounds 8] [--latency 1.0] [--repeat 3] [--json]

On a 2-core machine CPU-bound work cannot scale with hosts; work that waits for a model must. A
"host" here is one Celery worker process (its own node name) that runs at most C tasks at once:
`--concurrency=C`, WORKER_CONCURRENCY=C and SYNC_BATCH_SIZE=1 (one message carries one task).
The cluster-wide model limit is set out of the way (MODEL_MAX_CONCURRENCY and the model's
`max_concurrency`: --model-limit, 10,000). The stand-in endpoint answers every request after
--latency seconds, whatever else is in flight.

For each host count H: H fresh workers (the others are stopped, so they take no work), then a
workflow of N = H x C x rounds independent tasks, run by `producer run WF --json --no-cache`.
Wall: the run's seconds (created to finished, from Redis). Ideal throughput: H x C / latency
tasks/s; share = (N / wall) / ideal. CPU per task: the workers' user+system time (psutil, around
the run) / N, and the producer command's (its rusage). Host counts are interleaved within each
repeat (their order rotates from one repeat to the next); medians over --repeat are reported.
Diagnostics in --json and below the table: first task start after submit, the moment every slot
is busy (the slot filled last ends last: all its rounds start later), last task end to the
run's end, how long a slot a task left stays empty before the next task starts on it (run state:
a worker's k-th end to its (k + C)-th start), the most tasks running at once (run state) and in
flight at the endpoint (its stats).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_workflow import write_tree, write_workflow  # noqa: E402
from benchmarks.common import store_for  # noqa: E402
from producer import embedded  # noqa: E402
from shared.adapters.redis.store import Store  # noqa: E402


def host_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of host counts, each at least 1")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Throughput of latency-bound workflow tasks on 1, 2, 4 worker 'hosts' against the ideal."
    )
    ap.add_argument("--hosts", type=host_counts, default=[1, 2, 4], help="host counts, comma-separated (default 1,2,4)")
    ap.add_argument("--concurrency", type=int, default=8, help="tasks one worker runs at once (default 8)")
    ap.add_argument(
        "--rounds", type=int, default=8, help="tasks per host count: hosts x concurrency x rounds (default 8)"
    )
    ap.add_argument("--latency", type=float, default=1.0, help="the endpoint's seconds per request (default 1.0)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every host count, medians reported (default 3)")
    ap.add_argument(
        "--model-limit", type=int, default=10_000, help="cluster-wide model limit, set not to bind (default 10000)"
    )
    ap.add_argument("--warmup", type=int, default=0, help="unmeasured runs on each fresh set of workers (default 0)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--logs", type=Path, help="keep the worker logs in this directory (default: a temporary one)")
    return ap.parse_args(argv)


def cpu_of(procs: list[psutil.Process]) -> float:
    """user + system seconds of `procs` and their children (a process gone counts nothing more)."""
    total = 0.0
    for p in procs:
        try:
            family = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for q in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(q.cpu_times()[:2])
    return total


def run_workflow(path: Path, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """`producer run PATH --json --no-cache`: its report and its CPU seconds (rusage of children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "run", str(path), "--json", "--no-cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"no JSON report (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}") from None
    if report["counts"].get("done") != len(report["tasks"]):
        raise RuntimeError(f"not every task done: {report['counts']}\n{proc.stderr}")
    return report, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def peak_running(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def refill_gaps(states: dict[str, Any], concurrency: int) -> list[float]:
    """Per worker, the k-th task end to the (k + C)-th task start: how long a slot that a task
    left stays empty before the next message's task starts on it (ack, fetch, load, claim)."""
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for s in states.values():
        by_worker.setdefault(str(s.get("worker")), []).append((float(s["started"]), float(s["finished"])))
    gaps = []
    for spans in by_worker.values():
        starts, ends = sorted(a for a, _ in spans), sorted(b for _, b in spans)
        gaps += [starts[k + concurrency] - ends[k] for k in range(len(spans) - concurrency)]
    return gaps


def measure(
    store: Store,
    standin_url: str,
    path: Path,
    env: dict[str, str],
    workers: list[psutil.Process],
    tasks: int,
    slots: int,
) -> dict[str, Any]:
    httpx.post(f"{standin_url}/_reset").raise_for_status()
    cpu_before = cpu_of(workers)
    report, producer_cpu = run_workflow(path, env)
    cpu_after = cpu_of(workers)
    stats = httpx.get(f"{standin_url}/_stats").json()
    meta = m.to_dict() if (m := store.meta(report["run_id"])) else {}
    states = {label: st.to_dict() for label, st in store.node_states(report["run_id"]).items()}
    created, finished = float(meta["created"]), float(meta["finished"])
    starts = [float(s["started"]) for s in states.values()]
    ends = [float(s["finished"]) for s in states.values()]
    by_worker: dict[str, int] = {}
    for s in states.values():
        name = str(s.get("worker", "?")).split("-")[0]
        by_worker[name] = by_worker.get(name, 0) + 1
    wall = finished - created
    gaps = refill_gaps(states, slots // max(1, len(workers))) or [0.0]
    return {
        "run_id": report["run_id"],
        "wall_s": wall,
        "tasks_per_s": tasks / wall,
        "worker_cpu_ms_per_task": (cpu_after - cpu_before) * 1000 / tasks,
        "producer_cpu_ms_per_task": producer_cpu * 1000 / tasks,
        "first_start_s": min(starts) - created,
        # every slot busy: the slot that started last ends last, all its rounds later
        "slots_full_s": sorted(starts)[min(slots, len(starts)) - 1] - created,
        "tail_s": finished - max(ends),
        "task_s_median": statistics.median(e - s for s, e in zip(starts, ends, strict=True)),
        "refill_s_median": statistics.median(gaps),
        "peak_running": peak_running(list(zip(starts, ends, strict=True))),
        "endpoint_requests": stats["requests"],
        "endpoint_max_in_flight": stats["max_in_flight"],
        "tasks_by_worker": dict(sorted(by_worker.items())),
    }


def run_hosts(
    hosts: int,
    args: argparse.Namespace,
    redis_url: str,
    standin_url: str,
    path: Path,
    env: dict[str, str],
    logs: Path,
    label: str,
) -> dict[str, Any]:
    """Start `hosts` fresh workers, run the workflow (after --warmup unmeasured runs), stop them."""
    worker_env = {
        "SYNC_BATCH_SIZE": "1",
        "WORKER_CONCURRENCY": str(args.concurrency),
        "MODEL_MAX_CONCURRENCY": str(args.model_limit),
    }
    tasks = hosts * args.concurrency * args.rounds
    with embedded.LocalServices() as services:
        procs = []
        started = time.monotonic()
        for k in range(hosts):
            proc = embedded.start_worker(
                redis_url,
                concurrency=args.concurrency,
                name=f"host{k}",
                env=worker_env,
                log_path=logs / f"{label}-host{k}.log",
            )
            services.add_process(proc)
            procs.append(psutil.Process(proc.pid))
        start_s = time.monotonic() - started
        store = store_for(redis_url)
        for _ in range(args.warmup):
            run_workflow(path, env)
        result = measure(store, standin_url, path, env, procs, tasks, hosts * args.concurrency)
    ideal = hosts * args.concurrency / args.latency
    return {
        "hosts": hosts,
        "tasks": tasks,
        **result,
        "ideal_tasks_per_s": ideal,
        "share": result["tasks_per_s"] / ideal,
        "workers_start_s": start_s,
    }


NUMBERS = (
    "wall_s",
    "tasks_per_s",
    "ideal_tasks_per_s",
    "share",
    "worker_cpu_ms_per_task",
    "producer_cpu_ms_per_task",
    "first_start_s",
    "slots_full_s",
    "tail_s",
    "task_s_median",
    "refill_s_median",
    "peak_running",
    "endpoint_max_in_flight",
    "workers_start_s",
)


def summarize(runs: list[dict[str, Any]], hosts: list[int]) -> list[dict[str, Any]]:
    rows = []
    for h in hosts:
        mine = [r for r in runs if r["hosts"] == h]
        row: dict[str, Any] = {"hosts": h, "tasks": mine[0]["tasks"], "runs": len(mine)}
        for key in NUMBERS:
            row[key] = statistics.median(r[key] for r in mine)
        row["share_min"] = min(r["share"] for r in mine)
        row["share_max"] = max(r["share"] for r in mine)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"independent tasks, model latency {args.latency:g} s, {args.concurrency} tasks at once per host,"
        f" {args.rounds} rounds, median of {args.repeat}"
    )
    header = f"{'hosts':>5} {'tasks':>6} {'wall s':>7} {'tasks/s':>8} {'ideal/s':>8} {'share':>16} {'worker CPU ms/task':>19}"
    print(header)
    print("-" * len(header))
    for r in rows:
        share = f"{r['share']:.3f} ({r['share_min']:.2f}-{r['share_max']:.2f})"
        print(
            f"{r['hosts']:>5} {r['tasks']:>6} {r['wall_s']:>7.2f} {r['tasks_per_s']:>8.2f} {r['ideal_tasks_per_s']:>8.2f}"
            f" {share:>16} {r['worker_cpu_ms_per_task']:>19.2f}"
        )
    print()
    print("diagnostics (medians): producer CPU ms/task; submit -> first task start, -> every slot busy;")
    print("  last task end -> run end; a task's seconds; a freed slot's wait for its next task;")
    print("  most tasks running at once; most requests in flight at the endpoint")
    for r in rows:
        print(
            f"  {r['hosts']} host(s): producer {r['producer_cpu_ms_per_task']:.2f} ms, first start {r['first_start_s']:.3f} s,"
            f" all busy {r['slots_full_s']:.3f} s, tail {r['tail_s']:.3f} s, task {r['task_s_median']:.3f} s, refill {r['refill_s_median']:.3f} s, running {r['peak_running']:.0f},"
            f" endpoint {r['endpoint_max_in_flight']:.0f} (of {r['hosts'] * args.concurrency})"
        )


INTERRUPTED: list[int] = []


def interrupt(signum: int, _frame: Any) -> None:
    INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM end the run by an exception: every process started here is stopped (by
    # PID) on the way out
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, embedded.LocalServices() as services:
        logs = args.logs or Path(tmp) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        redis_url, redis_proc = embedded.start_redis(Path(tmp) / "redis")
        services.add_process(redis_proc)
        port = embedded.free_port()
        services.add_process(embedded.start_standin_llm(port))
        standin_url = f"http://127.0.0.1:{port}"
        httpx.post(f"{standin_url}/_control", json={"delay": args.latency}).raise_for_status()
        root = Path(tmp) / "tree"
        write_tree(root, f"{standin_url}/v1", args.model_limit)
        files = {h: write_workflow(root, f"hosts{h}", 1, h * args.concurrency * args.rounds) for h in args.hosts}
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache"),
            "SYNC_BATCH_SIZE": "1",
            "WORKER_CONCURRENCY": str(args.concurrency),
            "MODEL_MAX_CONCURRENCY": str(args.model_limit),
        }
        for i in range(args.repeat):
            shift = i % len(args.hosts)
            for h in args.hosts[shift:] + args.hosts[:shift]:
                run = run_hosts(h, args, redis_url, standin_url, files[h], env, logs, f"r{i}-h{h}")
                runs.append({"repeat": i, **run})
                if not args.json:
                    print(
                        f"  repeat {i + 1}, {h} host(s): {run['wall_s']:.2f} s, share {run['share']:.3f}",
                        file=sys.stderr,
                    )
    rows = summarize(runs, args.hosts)
    if args.json:
        print(
            json.dumps(
                {
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "summary": rows,
                    "runs": runs,
                },
                indent=2,
            )
        )
    else:
        print_table(rows, args)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        # a Ctrl-C also reaches redis-server and the stand-in (same process group): what failed
        # after it is its echo, not news
        if not INTERRUPTED:
            raise
        print("bench_hosts: interrupted; every process it started is stopped", file=sys.stderr)
        sys.exit(128 + INTERRUPTED[0])
