"""Work the broker lost is found from the run state and dispatched again; every key a run writes
expires; metrics count each task once.

A message lost as on a dead host: a consumer that blocked in BRPOP first, whose connection stays
open and never reads, takes the next messages Redis pushes (they are then in no list, not
unacknowledged, on no worker), exactly as a host that died in BRPOP does until TCP notices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producer import embedded
from shared.adapters.redis.keys import queue_lists
from shared.adapters.redis.metrics import read_counters
from shared.core.task_names import MODELS_QUEUE
from tests.conftest import WORKER_ENV, wait_for

pytestmark = pytest.mark.integration
TTL = "6"


def _thief(port: int, queue: str, messages: int) -> socket.socket:
    """A consumer that takes `messages` messages of `queue` (every priority) and never reads them."""
    sock = socket.create_connection(("127.0.0.1", port))
    names = queue_lists(queue)
    command = f"*{len(names) + 2}\r\n$5\r\nBRPOP\r\n" + "".join(f"${len(n.encode())}\r\n{n}\r\n" for n in names)
    sock.sendall(((command + "$1\r\n0\r\n") * messages).encode())
    return sock


def _task_thief(url: str, messages: int) -> threading.Thread:
    """A consumer that takes `messages` workflow-task messages of the models queue and dies with
    them; any other message (a run's start) it puts back, and waits until a worker has taken it."""
    client = redis.Redis.from_url(url, socket_timeout=90)  # above its BRPOP's own 60 s
    names = queue_lists(MODELS_QUEUE)

    def steal() -> None:
        stolen = 0
        while stolen < messages:
            got = client.brpop(names, timeout=60)
            if got is None:
                return
            name, raw = got
            if json.loads(raw)["headers"]["task"] == "agentq.run_tasks":
                stolen += 1
                continue
            client.rpush(name, raw)
            taken = wait_for(lambda: raw not in client.lrange(name, 0, -1), 60, "a worker to take the start")  # noqa: B023
            assert taken

    thread = threading.Thread(target=steal, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, int, redis.Redis, Path]]:
    port = embedded.free_port()
    url, proc = embedded.start_redis(tmp_path / "redis", port=port)
    client = redis.Redis.from_url(url, decode_responses=True)
    yield url, port, client, tmp_path
    client.close()
    embedded.stop(proc)


def _run(url: str, tmp: Path, wf: Path, **env: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
        env={**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp / "cache"), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_a_message_lost_in_a_dead_consumers_brpop_is_dispatched_again(standin, lab) -> None:
    from tests.test_workflow_run import write_tree, write_workflow

    url, port, client, tmp = lab
    base, state = standin
    state.control["delay"] = 0.05
    write_tree(tmp, base, max_concurrency=16)
    tasks = [{"id": f"t{i}", "description": f"lost {i}"} for i in range(30)]
    tasks += [{"id": f"u{i}", "description": f"after {i}", "dependencies": [f"t{i}"]} for i in range(30)]
    wf = write_workflow(tmp, tasks)
    # blocked before any worker: it puts the run's start back for the worker, which, one message at
    # a time, publishes the first workflow messages while it runs the start: the thief takes the
    # first (25 tasks) and loses it
    thief = _task_thief(url, 1)
    wait_for(lambda: client.info("clients")["blocked_clients"] >= 1, 10, "the thief to block in BRPOP")
    env = {"DISPATCH_GRACE_SECONDS": "1", "RUN_TTL_SECONDS": TTL, "CACHE_TTL_SECONDS": TTL}
    worker = embedded.start_worker(url, concurrency=1, name="lost", env={**WORKER_ENV, **env}, log_path=tmp / "w.log")
    try:
        rc, report, err = _run(url, tmp, wf, **env)
        assert rc == 0, err[-2000:]
        assert "Traceback" not in err
        assert "dispatched again" in err and "in no queue and on no worker" in err, err
        assert {t["status"] for t in report["tasks"].values()} == {"done"} and len(report["tasks"]) == 60
        run_id = report["run_id"]
        assert client.scard(f"agentq:run:{run_id}:ended") == 60  # each task ended once
        counters = read_counters(client)
        assert counters[("agentq_workflow_tasks_total", ("done",))] == 60  # each task counted once
        assert counters[("agentq_redispatches_total", ("workflow", "unclaimed"))] >= 1

        # every key the run wrote expires: once the TTLs pass, only the cluster's own keys are left
        def run_keys() -> list[str]:
            return [k for k in client.scan_iter("agentq:*", count=1000) if ":run:" in k or ":wf:" in k]

        assert all(client.ttl(k) > 0 for k in run_keys()), [(k, client.ttl(k)) for k in run_keys() if client.ttl(k) < 0]
        wait_for(lambda: not run_keys(), 30, "the run's keys to expire")
        assert not [k for k in client.scan_iter("celery-task-meta-*") if client.ttl(k) < 0]
    finally:
        thief.join(timeout=60)
        embedded.stop(worker)


def test_a_lost_start_message_is_sent_again(standin, lab) -> None:
    from tests.test_workflow_run import write_tree, write_workflow

    url, port, client, tmp = lab
    base, _ = standin
    write_tree(tmp, base)
    wf = write_workflow(tmp, [{"id": f"t{i}", "description": f"start {i}"} for i in range(5)])
    thief = _thief(port, MODELS_QUEUE, 1)  # a workflow's start message goes to the models queue
    wait_for(lambda: client.info("clients")["blocked_clients"] >= 1, 10, "the thief to block in BRPOP")
    worker = embedded.start_worker(url, concurrency=4, name="start", env=WORKER_ENV, log_path=tmp / "w.log")
    try:
        rc, report, err = _run(url, tmp, wf, DISPATCH_GRACE_SECONDS="1")
        assert rc == 0, err[-2000:]
        assert "start message is in no queue" in err, err
        assert {t["status"] for t in report["tasks"].values()} == {"done"}
    finally:
        thief.close()
        embedded.stop(worker)


def test_a_run_nobody_waits_for_whose_start_was_lost_is_started_by_the_workers(standin, lab) -> None:
    """A run written whose start never reached a worker (its producer lost Redis or the broker
    right after writing it, or `--no-wait` and the message was lost) stayed `running` for good:
    nothing but a waiting producer sent a lost start again. The workers' chore starts it."""
    from tests.test_workflow_run import write_tree, write_workflow

    url, port, client, tmp = lab
    base, _ = standin
    write_tree(tmp, base)
    wf = write_workflow(tmp, [{"id": f"t{i}", "description": f"unstarted {i}"} for i in range(3)])
    thief = _thief(port, MODELS_QUEUE, 1)  # takes the run's start and never reads it
    wait_for(lambda: client.info("clients")["blocked_clients"] >= 1, 10, "the thief to block in BRPOP")
    env = {**WORKER_ENV, "WORKER_DEAD_SECONDS": "1", "RESOURCE_INTERVAL_SECONDS": "0.5"}
    worker = embedded.start_worker(url, concurrency=2, name="chore", env=env, log_path=tmp / "w.log")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "producer.cli", "run", str(wf), "--no-wait"],
            env={**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp / "cache")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        run_id = proc.stdout.strip()
        status = [sys.executable, "-m", "producer.cli", "status", run_id, "--json", "--redis-url", url]

        def finished() -> dict | None:
            out = subprocess.run(status, capture_output=True, text=True, timeout=60, env={**os.environ, **WORKER_ENV})
            report = json.loads(out.stdout)
            return report if report["state"] == "finished" else None

        report = wait_for(finished, 60, "the workers to start the run", interval=0.5)
        assert {t["status"] for t in report["tasks"].values()} == {"done"}, report["tasks"]
        assert "was written but never started" in (tmp / "w.log").read_text()
    finally:
        thief.close()
        embedded.stop(worker)


API_RUN = """
import json, sys, warnings
from producer import run_workflow
warnings.simplefilter("always")
result = run_workflow(sys.argv[1], timeout=60)
print(json.dumps({"succeeded": result.succeeded, "statuses": [t["status"] for t in result.report["tasks"].values()]}))
"""


def test_a_lost_start_message_is_sent_again_for_a_run_of_the_python_api(standin, lab) -> None:
    """`producer.run_workflow` waits with the watchdog too: without it, a start message lost with a
    dead consumer left the run waiting until its timeout."""
    from tests.test_workflow_run import write_tree, write_workflow

    url, port, client, tmp = lab
    base, _ = standin
    write_tree(tmp, base)
    wf = write_workflow(tmp, [{"id": f"t{i}", "description": f"api start {i}"} for i in range(3)])
    thief = _thief(port, MODELS_QUEUE, 1)
    wait_for(lambda: client.info("clients")["blocked_clients"] >= 1, 10, "the thief to block in BRPOP")
    worker = embedded.start_worker(url, concurrency=2, name="api", env=WORKER_ENV, log_path=tmp / "w.log")
    env = {**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp / "cache")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", API_RUN, str(wf)],
            env={**env, "DISPATCH_GRACE_SECONDS": "1"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "start message is in no queue" in proc.stderr, proc.stderr  # said as a Python warning
        assert json.loads(proc.stdout) == {"succeeded": True, "statuses": ["done"] * 3}
    finally:
        thief.close()
        embedded.stop(worker)


def test_status_and_result_show_either_kind_of_run(standin, lab) -> None:
    """`status` on a workflow run ended in KeyError: 'ran'; `result` on a sync said "no workflow run"."""
    from tests.test_workflow_run import write_tree, write_workflow

    url, _, client, tmp = lab
    base, _ = standin
    write_tree(tmp, base)
    wf = write_workflow(tmp, [{"id": f"t{i}", "description": f"status {i}"} for i in range(3)])
    worker = embedded.start_worker(url, concurrency=4, name="status", env=WORKER_ENV, log_path=tmp / "w.log")
    try:
        rc, report, err = _run(url, tmp, wf)
        assert rc == 0, err
        env = {**os.environ, "REDIS_URL": url}
        for command in ("status", "result"):
            shown = subprocess.run(
                [sys.executable, "-m", "producer.cli", command, report["run_id"], "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
            assert json.loads(shown.stdout)["kind"] == "workflow"
            assert set(json.loads(shown.stdout)["tasks"]) >= {"t0", "t1", "t2"}
        both = subprocess.run(
            [sys.executable, "-m", "producer.cli", "result", report["run_id"], "--json", "--markdown"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert both.returncode == 2 and "choose one" in both.stderr, both.stderr
    finally:
        embedded.stop(worker)
