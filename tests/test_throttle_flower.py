"""Workers that stop taking tasks under resource pressure; Flower with basic auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis

from producer import embedded
from tests.conftest import ROOT, TEST_SECRET, WORKER_ENV, Cli
from tests.test_workflow_run import run, write_tree, write_workflow


def _hosts(r: redis.Redis) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in r.hgetall("agentq:hosts").items()}


def test_a_worker_over_its_memory_threshold_stops_taking_tasks_until_raised(
    redis_url: str, worker: subprocess.Popen[bytes], tmp_path: Path, standin
) -> None:
    url, state = standin
    state.control["delay"] = 0.05
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    log = tmp_path / "throttled.log"
    proc = embedded.start_worker(
        redis_url,
        concurrency=1,
        name="tight",
        log_path=log,
        env={**WORKER_ENV, "THROTTLE_MEMORY_PERCENT": "0.1", "RESOURCE_INTERVAL_SECONDS": "0.3"},
    )
    try:
        deadline = time.monotonic() + 30
        tight = None
        while time.monotonic() < deadline:
            tight = next((k for k, v in _hosts(r).items() if k.startswith("tight-") and v["throttled"]), None)
            if tight:
                break
            time.sleep(0.1)
        assert tight, "the worker should report itself throttled"
        time.sleep(1.0)  # the cancel_consumer broadcast reaches the worker's own loop
        cli = Cli(redis_url, "http://127.0.0.1:9", "thr", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url)
        rc, report = run(
            cli, write_workflow(tmp_path, [{"id": f"t{i}", "description": f"paused {i}"} for i in range(16)], "a")
        )
        assert rc == 0
        states = r.hgetall(f"agentq:run:{report['run_id']}:nodes")
        assert all(json.loads(v)["worker"] != tight for v in states.values()), "a throttled worker took a task"

        r.hset(f"agentq:throttle:{tight}", "memory_percent", 100)  # raise the threshold at run time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _hosts(r)[tight]["throttled"]:
            time.sleep(0.1)
        assert not _hosts(r)[tight]["throttled"]
        time.sleep(1.0)
        # more messages (of SYNC_BATCH_SIZE tasks) than the session's workers have threads
        state.control["delay"] = 0.1
        rc, report = run(
            cli, write_workflow(tmp_path, [{"id": f"u{i}", "description": f"resumed {i}"} for i in range(300)], "b")
        )
        assert rc == 0
        workers = {json.loads(v)["worker"] for v in r.hgetall(f"agentq:run:{report['run_id']}:nodes").values()}
        assert tight in workers, "the resumed worker should take tasks again"
        text = log.read_text()
        assert "throttling " + tight in text and "resuming " + tight in text
    finally:
        embedded.stop(proc)
        r.delete(f"agentq:throttle:{tight}")


def test_flower_requires_auth_and_shows_secret_free_task_args(
    redis_url: str, worker: subprocess.Popen[bytes], tmp_path: Path, standin
) -> None:
    url, _ = standin
    port = embedded.free_port()
    password = uuid.uuid4().hex
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": f"ops:{password}"}
    flower = embedded.spawn(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1"],
        tmp_path / "flower.log",
        env=env,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        cli = Cli(redis_url, "http://127.0.0.1:9", "flower", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url)
        rc, report = run(
            cli, write_workflow(tmp_path, [{"id": "a", "description": "x"}, {"id": "b", "description": "y"}])
        )
        assert rc == 0
        assert httpx.get(f"{base}/api/tasks", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/tasks", auth=("ops", "wrong"), timeout=10).status_code == 401
        deadline = time.monotonic() + 30
        tasks: dict = {}
        while time.monotonic() < deadline:
            tasks = httpx.get(f"{base}/api/tasks", auth=("ops", password), timeout=10).json()
            if any(
                t.get("name") == "agentq.run_tasks" and report["run_id"] in (t.get("args") or "")
                for t in tasks.values()
            ):
                break
            time.sleep(0.5)
        ours = [t for t in tasks.values() if report["run_id"] in (t.get("args") or "")]
        assert {t["name"] for t in ours} >= {"agentq.run_tasks", "agentq.start_run"}
        assert all(TEST_SECRET not in json.dumps(t) for t in tasks.values())
    finally:
        embedded.stop(flower)
