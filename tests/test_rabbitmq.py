"""RabbitMQ as the broker (BROKER_URL=amqp://...), Redis (REDIS_URL) for everything else.

Without servers: settings, the app's broker settings and the one place priorities are mapped.
With a private RabbitMQ node (tests/rabbitmq.py), a Redis and celery workers of their own: a
workflow and a sync run to the end, priorities still order work, and a worker killed mid-run
costs nothing, RabbitMQ itself handing its unacknowledged messages to another worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import embedded
from shared.adapters.redis import keys
from shared.core.exceptions import InvalidInput
from shared.settings import Settings, check_store, load_settings
from tests.conftest import ROOT, WORKER_ENV, Cli, wait_for
from tests.studio_proxy import StudioProxy

pytest_plugins = ["tests.rabbitmq"]

NOWHERE_REDIS = "redis://127.0.0.1:9/0"  # nothing connects to it in the tests without servers
AMQP = "amqp://agentq:s3cret-pw@rabbit.example:5672/agentq"


def _apps() -> tuple[Any, Any]:
    from shared.adapters.celery import create_app

    return create_app(Settings(redis_url=NOWHERE_REDIS)), create_app(Settings(redis_url=NOWHERE_REDIS, broker_url=AMQP))


# --- no servers -------------------------------------------------------------------------------


def test_broker_url_is_checked_and_its_password_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "http://agentq:s3cret-pw@rabbit.example:15672/")
    with pytest.raises(InvalidInput) as caught:
        load_settings()
    said = str(caught.value)
    assert "BROKER_URL" in said and "amqp://" in said and "s3cret-pw" not in said
    for good in (AMQP, "amqps://u:p@h:5671/v", "redis://127.0.0.1:6380/1", "rediss://h:6380/0"):
        monkeypatch.setenv("BROKER_URL", good)
        assert load_settings().broker_url == good
    monkeypatch.setenv("BROKER_URL", "")
    assert load_settings().broker_url is None  # set but empty: the broker is REDIS_URL's Redis


@pytest.mark.integration  # runs the program as a process
def test_a_broker_without_redis_url_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    """The embedded Redis is not the one the workers on that broker use: refused, exit code 2."""
    with pytest.raises(InvalidInput, match="set REDIS_URL"):
        check_store(Settings(redis_url=None, broker_url=AMQP))
    check_store(Settings(redis_url=NOWHERE_REDIS, broker_url=AMQP))  # both: fine
    check_store(Settings(redis_url=None, broker_url=None))  # neither: the embedded default
    (tmp_path / "tree").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"BROKER_URL": AMQP, "AGENTQ_CACHE_DIR": str(tmp_path / "cache")}
    for args in (["sync", str(tmp_path / "tree")], ["sync", str(tmp_path / "tree"), "--local-studio"]):
        proc = subprocess.run(
            [sys.executable, "-m", "producer.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "BROKER_URL is set" in lines[0] and "REDIS_URL" in lines[0] and "s3cret-pw" not in lines[0]
        assert not (tmp_path / "cache" / "redis").exists(), "no embedded Redis was started"


def test_the_app_takes_each_brokers_own_settings() -> None:
    from shared.adapters.celery import is_redis_broker

    on_redis, on_rabbit = _apps()
    assert is_redis_broker(on_redis) and not is_redis_broker(on_rabbit)
    assert on_redis.conf.broker_transport == "shared.adapters.redis.broker:Transport"
    assert on_redis.conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert on_rabbit.conf.broker_url.startswith("amqp://") and not on_rabbit.conf.broker_transport
    # the store, results and limits stay in Redis whichever broker carries the messages
    assert on_rabbit.conf.result_backend == on_redis.conf.result_backend == NOWHERE_REDIS
    assert {q.name: q.queue_arguments for q in on_rabbit.conf.task_queues} == {
        "studio": {"x-max-priority": 9},
        "models": {"x-max-priority": 9},
    }
    assert on_rabbit.conf.broker_heartbeat and on_rabbit.conf.broker_heartbeat <= 30
    # its reduction after a reconnect sends basic.qos from a pool thread on the consumer's connection
    assert not on_rabbit.conf.worker_enable_prefetch_count_reduction
    # a message sent without a priority (the watchdog's start_run, finalize, wave_done) is served
    # first on RabbitMQ, as it is on Redis; one sent with a priority keeps it
    for name in ("agentq.start_run", "agentq.finalize", "agentq.wave_done", "agentq.run_tasks"):
        assert on_rabbit.amqp.router.route({}, name)["priority"] == 9
        assert on_rabbit.amqp.router.route({"priority": None}, name)["priority"] == 9
        assert on_rabbit.amqp.router.route({"priority": 2}, name)["priority"] == 2
        assert "priority" not in on_redis.amqp.router.route({}, name)
    assert "visibility_timeout" not in on_rabbit.conf.broker_transport_options


def test_priorities_are_mapped_once_so_critical_work_goes_first_on_both_brokers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code speaks Redis's priorities (0 first); on RabbitMQ (9 first) they are reversed by the
    Dispatcher (shared/adapters/celery.py), and a message without one is served first there too."""
    from shared.adapters import celery as adapter

    on_redis, on_rabbit = _apps()
    assert [adapter.broker_priority(on_redis, p) for p in (0, 4, 9, None)] == [0, 4, 9, None]
    assert [adapter.broker_priority(on_rabbit, p) for p in (0, 4, 9, None)] == [9, 5, 0, 9]

    published: dict[str, list[tuple[Any, Any]]] = {}

    def record(app: Any, name: str) -> None:
        published.setdefault(name, [])

        class Recorder:
            def __init__(self, signatures: Any) -> None:
                self.signatures = list(signatures)

            def apply_async(self) -> None:
                published[name] += [(s.args, s.options.get("priority")) for s in self.signatures]

            def __call__(self, body: Any) -> None:  # chord(header)(body)
                self.apply_async()
                published[name].append((body.args, body.options.get("priority")))

        monkeypatch.setattr(adapter, "group", Recorder)
        monkeypatch.setattr(adapter, "chord", Recorder)
        sent = published[name]
        monkeypatch.setattr(app, "send_task", lambda task, args, **opts: sent.append((args, opts.get("priority"))))
        dispatcher = adapter.CeleryDispatcher(app)
        # three released tasks (id, rank, Redis priority), one message each
        dispatcher.publish_tasks("r", [[("urgent", 50, 0), ("later", 5, 9)], [("middle", 9, 4)]], 1)
        dispatcher.start_wave("r", 0, 2, priorities=[9, 0])
        dispatcher.start_run("r")
        dispatcher.start_finalize("r")

    record(on_redis, "redis")
    record(on_rabbit, "rabbit")
    # three released tasks, a wave of two and its chord body, start_run, finalize
    assert [p for _, p in published["redis"]] == [0, 9, 4, 9, 0, None, None, None]
    assert [p for _, p in published["rabbit"]] == [9, 0, 5, 0, 9, 9, 9, 9]
    assert [a for a, _ in published["redis"]] == [a for a, _ in published["rabbit"]]
    # the order each broker serves them in is the same: Redis lowest first, RabbitMQ highest first
    redis_order = sorted(range(5), key=lambda i: published["redis"][i][1])
    rabbit_order = sorted(range(5), key=lambda i: -published["rabbit"][i][1])
    assert redis_order == rabbit_order


# --- a private RabbitMQ node, Redis and workers -----------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    url, proc = embedded.start_redis(tmp_path / "redis")
    yield url
    embedded.stop(proc)


def _rabbit_worker(
    redis_url: str, broker: str, tmp_path: Path, name: str, concurrency: int = 4, **env: str
) -> subprocess.Popen[bytes]:
    return embedded.start_worker(
        redis_url,
        concurrency=concurrency,
        name=name,
        env={**WORKER_ENV, "RESOURCE_INTERVAL_SECONDS": "1", **env},
        log_path=tmp_path / f"{name}.log",
        broker_url=broker,
    )


def _chains(count: int, width: int) -> list[dict[str, Any]]:
    """`count` workflow tasks in `width` chains: each waits for the one `width` before it."""
    return [
        {"id": f"t{i}", "description": f"step {i}", **({"dependencies": [f"t{i - width}"]} if i >= width else {})}
        for i in range(count)
    ]


def _run(cli: Cli, wf: Path, broker: str, **env: str) -> tuple[int, dict[str, Any], str]:
    proc = cli.run("run", str(wf), "--json", BROKER_URL=broker, **env)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except ValueError:
        raise AssertionError(f"no JSON report\nstdout: {proc.stdout}\nstderr: {proc.stderr}") from None


def _no_message_went_through_redis(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    assert not list(r.scan_iter("_kombu*")) and not r.exists("studio", "models", "unacked"), "Redis was the broker"


@pytest.mark.integration
def test_queue_lengths_are_rabbitmqs_own_counts(rabbitmq_url: str) -> None:
    from kombu import Queue

    from shared.adapters.celery import amqp_queue_lengths, create_app

    app = create_app(Settings(redis_url=NOWHERE_REDIS, broker_url=rabbitmq_url))
    name = f"lengths-{uuid.uuid4().hex[:6]}"
    queue = Queue(name, queue_arguments={"x-max-priority": 9}, auto_delete=False)
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for priority in (1, 9, 5):
            producer.publish({"n": priority}, routing_key=name, declare=[queue], priority=priority)
        assert amqp_queue_lengths(app, [name, "no-such-queue"]) == {name: 3, "no-such-queue": 0}
        # and they come out highest first
        with conn.SimpleQueue(queue) as simple:
            assert [simple.get(timeout=5).payload["n"] for _ in range(3)] == [9, 5, 1]
        queue(conn.default_channel).delete()


@pytest.mark.integration
def test_the_exporter_hears_workers_over_rabbitmq_and_forgets_one_stopped_on_purpose(
    rabbitmq_url: str, own_redis: str, tmp_path: Path
) -> None:
    """The exporter's event stream on RabbitMQ: a worker's heartbeats keep it up across the
    seconds without an event, and its offline event removes its series."""
    import httpx

    name = f"ev-{uuid.uuid4().hex[:6]}"
    worker = _rabbit_worker(own_redis, rabbitmq_url, tmp_path, name, concurrency=1)
    port = embedded.free_port()
    exporter = embedded.start_exporter(
        own_redis,
        port,
        env={"BROKER_URL": rabbitmq_url, "STUDIO_URL": "http://127.0.0.1:9"},
        log_path=tmp_path / "exporter.log",
    )
    try:

        def up() -> str:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            return next(
                (line for line in text.splitlines() if line.startswith(f'celery_worker_up{{hostname="{name}')), ""
            )

        wait_for(lambda: up().endswith(" 1.0"), 60, "the worker heard", interval=0.2)
        deadline = time.monotonic() + 12  # past WORKER_TIMEOUT: heard all along, never taken for gone
        while time.monotonic() < deadline:
            assert up().endswith(" 1.0"), up()
            time.sleep(0.5)
        embedded.stop_worker(worker, grace=30)
        wait_for(lambda: up() == "", 30, "the stopped worker's series gone", interval=0.2)
    finally:
        embedded.stop(worker)
        embedded.stop(exporter)


@pytest.mark.integration
def test_a_workflow_of_100_tasks_runs_on_workers_consuming_from_rabbitmq(
    rabbitmq_url: str, own_redis: str, standin, tmp_path: Path
) -> None:
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 0.02
    workers = [_rabbit_worker(own_redis, rabbitmq_url, tmp_path, f"rabbit{i}") for i in range(2)]
    try:
        write_tree(tmp_path, url, max_concurrency=16)
        tasks = _chains(100, 10)  # ten chains of ten
        cli = Cli(own_redis, "http://127.0.0.1:9", "wf-rabbit", tmp_path / "cache", "http://127.0.0.1:9")
        rc, report, err = _run(cli, write_workflow(tmp_path, tasks), rabbitmq_url)
        assert rc == 0, err[-2000:]
        assert len(report["tasks"]) == 100 and {t["status"] for t in report["tasks"].values()} == {"done"}
        assert len(state.requests) == 100
        ended = redis.Redis.from_url(own_redis).smembers(f"agentq:run:{report['run_id']}:ended")
        assert len(ended) == 100
        _no_message_went_through_redis(own_redis)
        # both workers took messages
        took = [(tmp_path / f"rabbit{i}.log").read_text().count("agentq.run_tasks") for i in range(2)]
        assert all(took), took
    finally:
        for proc in workers:
            embedded.stop(proc)


@pytest.mark.integration
def test_a_high_priority_task_released_among_low_ones_goes_first(
    rabbitmq_url: str, own_redis: str, standin, tmp_path: Path
) -> None:
    """One worker, one message at a time, one task a message: 98 low-priority tasks wait in the
    queue when the root's end releases the high-priority one, which is the next to start."""
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    worker = _rabbit_worker(own_redis, rabbitmq_url, tmp_path, "single", concurrency=1, SYNC_BATCH_SIZE="1")
    try:
        write_tree(tmp_path, url)
        tasks = [{"id": "root", "description": "root", "priority": 1}]
        tasks += [{"id": f"low{i}", "description": f"low {i}", "priority": 1} for i in range(98)]
        tasks += [{"id": "high", "description": "high", "priority": 9, "dependencies": ["root"]}]
        cli = Cli(own_redis, "http://127.0.0.1:9", "wf-prio", tmp_path / "cache", "http://127.0.0.1:9")
        rc, report, err = _run(cli, write_workflow(tmp_path, tasks), rabbitmq_url)
        assert rc == 0, err[-2000:]
        from tests.test_workflow_run import task_of

        order = [task_of(q) for q in sorted(state.requests, key=lambda q: q["started"])]
        assert len(order) == 100
        waiting = [t for t in order[order.index("root") + 1 :] if t.startswith("low")]
        assert order[order.index("root") + 1] == "high", order[:10]
        assert len(waiting) > 50, "the low-priority tasks were still queued when high was released"
    finally:
        embedded.stop(worker)


@pytest.mark.integration
def test_a_sync_into_studio_over_rabbitmq(
    rabbitmq_url: str, own_redis: str, studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    from tests.test_studio_outage import _write_tree

    worker = _rabbit_worker(own_redis, rabbitmq_url, tmp_path, "rabbit-sync")
    try:
        cli = Cli(own_redis, proxy.url, f"rabbit-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=12)
        rc, report, err = cli.sync(tree, BROKER_URL=rabbitmq_url)
        assert rc == 0, (err[-2000:], report.get("counts"))
        teams = cli.studio().teams_by_label()
        assert all(len(teams.get(f"team-{i:03}", [])) == 1 for i in range(12)), "every team exactly once"
        galleries = [g for g in cli.studio().galleries() if g["config"]["id"] == "agentq-tree"]
        assert len(galleries) == 1
        _no_message_went_through_redis(own_redis)
        # nothing changed: nothing to enqueue, nothing written
        rc, report, err = cli.sync(tree, BROKER_URL=rabbitmq_url)
        counts = {k: v for k, v in report["counts"].items() if v}
        assert rc == 0 and set(counts) == {"unchanged"}, (err, counts)
    finally:
        embedded.stop(worker)


@pytest.mark.integration
def test_a_worker_killed_mid_workflow_rabbitmq_hands_its_messages_to_another(
    rabbitmq_url: str, own_redis: str, standin, tmp_path: Path
) -> None:
    """SIGKILL: the connection drops, RabbitMQ requeues what the worker had not acknowledged
    (late acks), and the next worker finishes the run; each task ends once. The producer's
    watchdog is kept out of it (WORKER_DEAD_SECONDS far away): the broker alone brings them back."""
    from tests.test_workflow_run import task_of, write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 0.2
    doomed = _rabbit_worker(own_redis, rabbitmq_url, tmp_path, "doomed")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        cli = Cli(own_redis, "http://127.0.0.1:9", "wf-rabbit-kill", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url, max_concurrency=16)
        wf = write_workflow(tmp_path, [{"id": f"t{i}", "description": f"survive {i}"} for i in range(200)])
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
            env=cli.env(BROKER_URL=rabbitmq_url, WORKER_DEAD_SECONDS="600"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: len(state.requests) >= 20 and state.in_flight >= 1, 60, "the run to get going")
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker's whole process group, mid-request
        doomed.wait()
        survivor = _rabbit_worker(own_redis, rabbitmq_url, tmp_path, "survivor")
        out, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err[-2000:]
        report = json.loads(out)
        assert len(report["tasks"]) == 200 and all(t["status"] == "done" for t in report["tasks"].values())
        ended = redis.Redis.from_url(own_redis).smembers(f"agentq:run:{report['run_id']}:ended")
        assert len(ended) == 200  # each task ended once: end_task.lua refuses a second end
        assert "requeued" not in err, err  # not the watchdog's doing
        # what the dead worker was asking the model when it died was asked again: its message came back
        asked = Counter(task_of(q) for q in state.requests)
        assert set(asked) == {f"survive {i}" for i in range(200)}
        assert any(n > 1 for n in asked.values()), "no message of the killed worker was redelivered"
    finally:
        for proc in (doomed, survivor):
            if proc is not None:
                embedded.stop(proc)


@pytest.mark.integration
def test_a_broker_out_of_reach_at_the_start_is_one_line_and_the_run_is_ended(own_redis: str, tmp_path: Path) -> None:
    """exit code 3 naming the broker (its password masked), and a run no worker will ever see ends
    with that error rather than looking as if it were running."""
    from tests.test_workflow_run import write_tree, write_workflow

    write_tree(tmp_path, "http://127.0.0.1:9/v1")
    cli = Cli(own_redis, "http://127.0.0.1:9", "wf-no-broker", tmp_path / "cache", "http://127.0.0.1:9")
    closed = f"amqp://guest:s3cret-pw@127.0.0.1:{embedded.free_port()}//"
    wf = write_workflow(tmp_path, [{"id": "a", "description": "never"}])
    rc, report, err = _run(cli, wf, closed)
    assert rc == 3 and "Traceback" not in err and "s3cret-pw" not in err + json.dumps(report), err
    assert "the broker at amqp://guest:***@127.0.0.1" in report["error"] and "unreachable" in report["error"]
    r = redis.Redis.from_url(own_redis)
    metas = [json.loads(v) for v in r.mget(list(r.scan_iter(f"agentq:run:*:{keys.META}")))]
    assert len(metas) == 1 and metas[0]["state"] == "finished" and "unreachable" in metas[0]["error"], metas


@pytest.mark.integration
def test_rabbitmq_restarted_mid_run_the_run_finishes_and_its_workers_stay_alive(
    own_redis: str, standin, tmp_path: Path
) -> None:
    """The node stopped at 30% of a run and started again on its port and data: workers reconnect
    and keep reporting, the producer rides out the publishes that found no broker (one line, no
    traceback), and every task ends, once."""
    from tests.rabbitmq import start_rabbitmq, stop_rabbitmq
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 0.1
    node = start_rabbitmq(tmp_path / "rabbit")
    port = int(node.url.rsplit(":", 1)[1].strip("/"))
    workers = [_rabbit_worker(own_redis, node.url, tmp_path, f"restart{i}") for i in range(2)]
    try:
        write_tree(tmp_path, url, max_concurrency=16)
        tasks = _chains(200, 20)  # ten waves of twenty
        cli = Cli(own_redis, "http://127.0.0.1:9", "wf-rabbit-restart", tmp_path / "cache", "http://127.0.0.1:9")
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(write_workflow(tmp_path, tasks)), "--json"],
            env=cli.env(BROKER_URL=node.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        r = redis.Redis.from_url(own_redis)

        def ended() -> int:
            return sum(r.scard(key) for key in r.scan_iter("agentq:run:*:ended"))

        def reported_since(when: float) -> list[str]:
            readings = [json.loads(v) for v in r.hgetall(keys.HOSTS).values()]
            return [str(x["ts"]) for x in readings if float(x["ts"]) > when]

        wait_for(lambda: ended() >= 60, 120, "30% of the run")
        stop_rabbitmq(node)
        down = time.time()
        # the heartbeats go to Redis: a broker away is no worker gone (they stopped with the broker)
        wait_for(lambda: len(reported_since(down + 0.5)) == 2, 30, "both workers to report while the broker is down")
        node = start_rabbitmq(tmp_path / "rabbit", port=port)
        back = time.time()
        out, err = producer.communicate(timeout=240)
        assert producer.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert "no worker is running" not in err, err[-3000:]  # their heartbeats went on
        report = json.loads(out)
        assert len(report["tasks"]) == 200 and {t["status"] for t in report["tasks"].values()} == {"done"}
        assert ended() == 200  # each task ended once

        wait_for(lambda: len(reported_since(back + 1)) == 2, 30, "both workers to report after the restart")
    finally:
        for proc in workers:
            embedded.stop(proc)
        stop_rabbitmq(node)


@pytest.mark.integration
def test_after_a_broker_restart_a_worker_keeps_its_connection_while_its_prefetch_comes_back(
    own_redis: str, standin, tmp_path: Path
) -> None:
    """A worker busy on every thread when RabbitMQ restarts reconnects, and its consumer connection
    then stays up: no second loss. Celery's prefetch-count reduction after a reconnect sent
    `basic.qos` on that connection from the pool thread that acknowledged a task, while the worker's
    own thread read the same socket (py-amqp is not thread safe): a corrupt frame left that thread
    blocked mid-read, so no heartbeats, and RabbitMQ closed the connection ~3 heartbeats later
    ("missed heartbeats from client"), handing the worker's messages back a second time."""
    from shared.adapters.celery import BROKER_HEARTBEAT
    from tests.rabbitmq import start_rabbitmq, stop_rabbitmq
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 0.2
    node = start_rabbitmq(tmp_path / "rabbit")
    port = int(node.url.rsplit(":", 1)[1].strip("/"))
    name = f"busy-{uuid.uuid4().hex[:6]}"
    # a message per task, eight at a time: every thread busy when the broker goes
    worker = _rabbit_worker(own_redis, node.url, tmp_path, name, concurrency=8, SYNC_BATCH_SIZE="1")
    log = tmp_path / f"{name}.log"
    try:
        write_tree(tmp_path, url, max_concurrency=16)
        cli = Cli(own_redis, "http://127.0.0.1:9", "wf-rabbit-qos", tmp_path / "cache", "http://127.0.0.1:9")
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(write_workflow(tmp_path, _chains(300, 30))), "--json"],
            env=cli.env(BROKER_URL=node.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: len(state.requests) >= 40 and state.in_flight >= 6, 120, "the worker busy on its threads")
        stop_rabbitmq(node)
        node = start_rabbitmq(tmp_path / "rabbit", port=port)
        wait_for(lambda: log.read_text().count("Connected to amqp://") >= 2, 60, "the worker to reconnect")
        back = time.monotonic()
        out, err = producer.communicate(timeout=240)
        assert producer.returncode == 0, err[-3000:]
        assert {t["status"] for t in json.loads(out)["tasks"].values()} == {"done"}

        def broken() -> str:
            lost = log.read_text().count("Connection to broker lost")
            missed = "missed heartbeats from client" in "".join(p.read_text() for p in node.log.parent.rglob("*.log"))
            return f"lost {lost} times, RabbitMQ missed its heartbeats: {missed}" if lost > 1 or missed else ""

        # the worker's thread blocked mid-frame sends no heartbeats: RabbitMQ drops it ~3 of them later
        deadline = back + 3 * BROKER_HEARTBEAT + 5
        while time.monotonic() < deadline and not broken():
            time.sleep(0.5)
        assert not broken(), broken()
    finally:
        embedded.stop(worker)
        stop_rabbitmq(node)
