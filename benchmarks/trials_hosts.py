"""Fault trials on test hosts: the scenarios of tests/test_hosts.py, outside pytest, N times each.

Each trial builds fresh hosts (Linux network namespaces on this machine, tests/netns.py: Redis with
appendonly and the stand-in model endpoint on one, a Celery worker on each of the others), runs a
workflow of --tasks tasks in four dependency groups with `producer run --json` from the root
namespace, injects the scenario's fault and counts what a user would find:

  lost-idle      a worker host dies while its worker waits for work, just before a task's end
                 releases a group (Redis may hand a message to the dead connection's BRPOP;
                 RabbitMQ sends the dead consumer up to its prefetch)
  lost-busy-30   a worker host dies while it runs tasks, at 30% of the run (lost-busy-70: at 70%)
  partition-20   a worker host is cut off for 20 s (packets dropped both ways), then back
  redis-restart  Redis gets SIGTERM at 30% of the run and is started again (same port, same data):
                 the broker and the store, or with --broker rabbitmq the store alone

--broker rabbitmq: Celery's messages go through a private RabbitMQ node on the Redis host
(tests/rabbitmq.py, started in that host's namespace), BROKER_URL=amqp://... for the workers and
the producer; Redis keeps the run state. The clean run is made on the same broker.

Per scenario: runs finished (exit 0, every task done, none twice) of N, exit codes, tasks missing,
tasks reported twice, re-executions (model requests beyond one per task in the stand-in's request
log: a node's state keeps only its latest start; and the workers' metric
agentq_workflow_task_redeliveries_total in agentq:metrics:counters when they count it), seconds from the fault to the end of
the run and extra seconds over a run without fault (median, max). Needs root (`ip netns add`).
Everything it starts is removed when it ends, on Ctrl-C and on SIGTERM too.

    sudo python benchmarks/trials_hosts.py --scenario lost-idle --trials 5 --tasks 1000
    sudo python benchmarks/trials_hosts.py --broker rabbitmq --scenario all --trials 3 --tasks 2000
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer.embedded import ServiceError  # noqa: E402
from tests import netns  # noqa: E402
from tests.netns import Cluster, Outcome, run_scenario, summary  # noqa: E402

FAULTS = ("lost-idle", "lost-busy-30", "lost-busy-70", "partition-20", "redis-restart")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=[*FAULTS, "all"], default="all", help="the fault to inject (default: all)")
    ap.add_argument(
        "--broker", choices=netns.BROKERS, default="redis", help="Celery's broker: redis (default) or rabbitmq"
    )
    ap.add_argument("--trials", type=int, default=10, help="runs per scenario (default 10)")
    ap.add_argument("--tasks", type=int, default=2000, help="tasks in the workflow (default 2000)")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per model answer (default 0.1)")
    ap.add_argument("--workers", type=int, default=3, help="worker hosts (default 3)")
    ap.add_argument("--concurrency", type=int, default=4, help="threads per worker (default 4)")
    ap.add_argument("--partition-seconds", type=float, default=20.0, help="how long partition-20 cuts (default 20)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a run may take before it is stopped (default: 3x clean + 120)",
    )
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout instead of a table")
    ap.add_argument("--keep", type=Path, default=None, help="keep logs and data in this directory")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.tasks < 4 or args.workers < 2:
        ap.error("--trials >= 1, --tasks >= 4 and --workers >= 2")
    if args.broker == "rabbitmq":
        from tests.rabbitmq import server_binary

        if server_binary() is None:
            ap.error("--broker rabbitmq needs rabbitmq-server (apt-get install rabbitmq-server)")
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def one_trial(args: argparse.Namespace, scenario: str, workdir: Path, timeout: float) -> Outcome:
    with Cluster(workdir, workers=args.workers, concurrency=args.concurrency, broker=args.broker) as cluster:
        return run_scenario(
            cluster,
            scenario,
            tasks=args.tasks,
            latency=args.latency,
            partition_seconds=args.partition_seconds,
            timeout=timeout,
        )


def describe(o: Outcome) -> str:
    fault = f", fault at {o.fault_at:.1f} s on {o.victim}" if o.fault_at is not None else ""
    return (
        f"exit {o.returncode} in {o.seconds:.1f} s{fault}; missing {len(o.missing)}, twice {len(o.reported_twice)}, "
        f"re-executed {sum(n - 1 for n in o.executions.values())}{'; ' + '; '.join(o.notes) if o.notes else ''}"
    )


def table(result: dict[str, Any]) -> str:
    lines = [f"clean run: {result['baseline_seconds']:.1f} s ({result['tasks']} tasks, broker {result['broker']})"]
    head = f"{'scenario':<14} {'finished':>9} {'exit codes':<18} {'missing':>7} {'twice':>5} {'re-exec':>7} {'redeliv.':>8} {'after fault med/max':>20} {'extra med/max':>15}"
    lines += [head, "-" * len(head)]
    for name, s in result["scenarios"].items():
        codes = ",".join(f"{k}x{v}" for k, v in sorted(s["exit_codes"].items()))
        after, extra = s["seconds_after_fault"], s["extra_seconds"]
        lines.append(
            f"{name:<14} {s['finished']:>4} of {s['trials']:<2} {codes:<18} {s['tasks_missing']:>7} "
            f"{s['tasks_reported_twice']:>5} {s['re_executions']:>7} {str(s['redeliveries_metric']):>8} "
            f"{_pair(after):>20} {_pair(extra):>15}"
        )
        for error in s.get("errors", []):
            lines.append(f"{'':<14} harness error: {error}")
    return "\n".join(lines)


def _pair(values: dict[str, float | None]) -> str:
    if values["median"] is None:
        return "-"
    return f"{values['median']:.1f} / {values['max']:.1f}"


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    scenarios = FAULTS if args.scenario == "all" else (args.scenario,)
    say(f"a clean run of {args.tasks} tasks on {args.workers} worker hosts, broker {args.broker} ...")
    clean = one_trial(args, "none", workdir / "baseline", timeout=args.timeout or 900)
    say(f"  {describe(clean)}")
    if clean.returncode != 0 or clean.missing:
        raise SystemExit(f"the clean run did not succeed ({describe(clean)}); stderr:\n{clean.stderr[-3000:]}")
    timeout = args.timeout or 3 * clean.seconds + 120
    result: dict[str, Any] = {
        "tasks": args.tasks,
        "broker": args.broker,
        "baseline_seconds": round(clean.seconds, 2),
        "scenarios": {},
    }
    for scenario in scenarios:
        outcomes: list[Outcome] = []
        errors: list[str] = []
        for trial in range(1, args.trials + 1):
            try:
                outcome = one_trial(args, scenario, workdir / f"{scenario}-{trial}", timeout)
            except (netns.NetworkError, ServiceError, TimeoutError, OSError) as exc:  # the harness, not the product
                errors.append(f"trial {trial}: {exc}")
                say(f"{scenario} {trial}/{args.trials}: harness error: {exc}")
                continue
            outcomes.append(outcome)
            say(f"{scenario} {trial}/{args.trials}: {describe(outcome)}")
        result["scenarios"][scenario] = {**summary(outcomes, clean.seconds), "errors": errors}
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok, why = netns.available()
    if not ok:
        say(f"cannot make test hosts here: {why}")
        return 2

    def terminated(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    started = time.monotonic()
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            result = run(args, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="trials-hosts-") as tmp:
                result = run(args, Path(tmp))
    except KeyboardInterrupt:
        say("interrupted: hosts and processes removed")
        return 130
    finally:
        netns.close_all()  # whatever an interrupted trial left open
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
