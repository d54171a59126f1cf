"""Workers on hosts of their own: Linux network namespaces on this machine (tests/netns.py), Redis
(appendonly) and the stand-in model endpoint on one host, a Celery worker on each of three others,
the producer in the root namespace. A workflow of 300 tasks in four dependency groups runs while a
host dies, is cut off for 20 s, or Redis restarts; a user then finds exit code 0 and every task
done, once. Needs root (`ip netns add`); skipped, saying why, where it cannot make namespaces.

Both brokers pass the same fault tests: each host test runs on the Redis broker and on RabbitMQ
(`[rabbitmq]`: a private node on the svc host next to Redis, BROKER_URL=amqp://... for workers and
producer; skipped where rabbitmq-server is not installed). There the broker itself hands a lost
consumer's unacknowledged messages to another once heartbeats (10 s) close its connection, 20 to
30 s after it last heard from the host. A Redis restart applies to Redis as the broker and store.

The same scenarios, repeated and counted: `python benchmarks/trials_hosts.py --help`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import netns
from tests.netns import Cluster, Outcome, run_scenario
from tests.rabbitmq import server_binary

pytestmark = pytest.mark.integration

TASKS = 300
LATENCY = 0.2  # seconds per model answer: a clean run lasts ~7 s on three workers of 4 threads
MAX_EXTRA_SECONDS = 30.0  # what losing a host may add to a run
PARTITION_SECONDS = 20.0


@pytest.fixture(scope="module", autouse=True)
def hosts_available() -> Iterator[None]:
    """Skips the module where namespaces cannot be made; afterwards, nothing made here is left."""
    ok, why = netns.available()
    if not ok:
        pytest.skip(why)
    yield
    namespaces, links = netns.leftovers()
    assert not namespaces and not links, f"left behind: namespaces {namespaces}, links {links}"


@pytest.fixture(params=netns.BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    """Celery's broker: the Redis that keeps the run state, or a RabbitMQ node next to it."""
    if request.param == "rabbitmq" and server_binary() is None:
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server; scripts/install.sh does)")
    return str(request.param)


@pytest.fixture(scope="module")
def baselines() -> dict[str, float]:
    """Broker -> how long a run without faults took (filled in by `baseline_seconds`)."""
    return {}


@pytest.fixture
def cluster(tmp_path: Path, broker: str) -> Iterator[Cluster]:
    with Cluster(tmp_path / "hosts", broker=broker) as c:
        yield c


@pytest.fixture
def baseline_seconds(broker: str, baselines: dict[str, float], cluster: Cluster) -> float:
    """How long the same run takes on the same hosts and broker with no fault (once per broker).
    Run on the first test's own hosts before its fault: a cluster of its own would cost another
    start and stop of every host (10 s and more with RabbitMQ)."""
    if broker not in baselines:
        outcome = run_scenario(cluster, "none", TASKS, LATENCY, timeout=120)
        assert_every_task_done_once(outcome)
        print(f"a run without faults on {broker}: {outcome.seconds:.1f} s")
        baselines[broker] = outcome.seconds
    return baselines[broker]


def assert_every_task_done_once(o: Outcome) -> None:
    """What a user checks: the exit code, the report (every task, once, done), no traceback; and
    the run's ended set in Redis holds each task once."""
    print(
        f"{o.scenario}: exit {o.returncode} after {o.seconds:.1f} s, fault at {o.fault_at} s on {o.victim} "
        f"({o.victim_in_flight} in flight); model re-executions {o.executions}; {o.notes}\n{o.stderr[-2000:]}"
    )
    assert o.returncode == 0, f"exit code {o.returncode}; {o.notes}\n{o.stderr[-3000:]}"
    assert "Traceback" not in o.stderr, o.stderr[-3000:]
    assert not o.missing, f"{len(o.missing)} task(s) not done: {o.missing[:20]}"
    assert not o.reported_twice, f"reported more than once: {o.reported_twice[:20]}"
    assert o.ended == o.tasks and not o.ended_unknown, f"ended set: {o.ended} of {o.tasks}, unknown {o.ended_unknown}"


def test_a_host_lost_while_its_worker_waits_for_work_loses_no_task(cluster: Cluster, baseline_seconds: float) -> None:
    """The host dies while its worker waits for work, just before a task's end releases 100 more.
    Redis: a BRPOP of the dead connection may be handed one of them, which no one will ever
    acknowledge. RabbitMQ: the dead consumer is sent up to its prefetch of them, which come back
    when heartbeats close its connection."""
    outcome = run_scenario(cluster, "lost-idle", TASKS, LATENCY, timeout=baseline_seconds + 60)
    assert outcome.victim_in_flight == 0, "the lost host's worker was to be idle"
    assert_every_task_done_once(outcome)
    extra = outcome.seconds - baseline_seconds
    assert extra <= MAX_EXTRA_SECONDS, (
        f"the lost host cost {extra:.0f} s (a run without faults: {baseline_seconds:.1f} s)"
    )


def test_a_host_lost_while_it_runs_tasks_loses_no_task(cluster: Cluster, baseline_seconds: float) -> None:
    outcome = run_scenario(cluster, "lost-busy-30", TASKS, LATENCY, timeout=baseline_seconds + 60)
    assert outcome.victim_in_flight, "the lost host's worker was to be running tasks"
    assert_every_task_done_once(outcome)
    extra = outcome.seconds - baseline_seconds
    assert extra <= MAX_EXTRA_SECONDS, (
        f"the lost host cost {extra:.0f} s (a run without faults: {baseline_seconds:.1f} s)"
    )


def test_a_worker_host_cut_off_for_20_s_then_back_runs_each_task_once(
    cluster: Cluster, baseline_seconds: float
) -> None:
    """Its worker keeps running through the cut and comes back with what it held; by then the
    others may have done its tasks. Nothing may end twice, before or after the heal.
    (RabbitMQ: the cut is about as long as heartbeats take to close a connection, 20 to 30 s after
    the last frame; either way, the connection kept or closed and its messages requeued, is fine.)"""
    outcome = run_scenario(cluster, "partition-20", TASKS, LATENCY, partition_seconds=PARTITION_SECONDS, timeout=180)
    assert outcome.victim_in_flight, "the cut host's worker was to be running tasks"
    assert_every_task_done_once(outcome)
    extra = outcome.seconds - baseline_seconds
    assert extra <= MAX_EXTRA_SECONDS, (
        f"the cut host cost {extra:.0f} s (a run without faults: {baseline_seconds:.1f} s)"
    )
    # after the heal (run_scenario waits for it and for the host's worker to settle): what a user
    # reads about the run now
    assert outcome.run_id
    later = cluster.cli("result", outcome.run_id, "--json")
    assert later.returncode == 0, later.stderr[-3000:]
    tasks = json.loads(later.stdout)["tasks"]
    assert sorted(tasks) == sorted(netns.task_ids(TASKS))
    assert {t["status"] for t in tasks.values()} == {"done"}
    ended = cluster.redis().scard(f"agentq:run:{outcome.run_id}:ended")
    assert ended == TASKS


# Redis as broker and store; on RabbitMQ, Redis as the store: benchmarks/trials_hosts.py --broker rabbitmq
@pytest.mark.parametrize("broker", ["redis"])
def test_redis_restarted_mid_run_the_run_finishes(cluster: Cluster) -> None:
    """SIGTERM to Redis at 30% of the run, started again at once on the same port and data
    directory (appendonly): workers and producer ride it out (REDIS_OUTAGE_SECONDS)."""
    outcome = run_scenario(cluster, "redis-restart", TASKS, LATENCY, timeout=150)
    assert_every_task_done_once(outcome)
