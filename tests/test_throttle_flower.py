"""Workers that stop taking tasks under resource pressure; Flower with basic auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producer import embedded
from shared.adapters.celery import create_app
from shared.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, WORKER_ENV, Cli, wait_for
from tests.test_workflow_run import run, write_tree, write_workflow

pytestmark = pytest.mark.integration


def _hosts(r: redis.Redis) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in r.hgetall("agentq:hosts").items()}


def _consumed(app: Any, worker: str) -> set[str] | None:
    """The queues a worker consumes from, as it says itself (None: it did not answer)."""
    answer = app.control.inspect(destination=[worker], timeout=2).active_queues() or {}
    return {q["name"] for q in answer[worker]} if worker in answer else None


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
    app = create_app(Settings(REDIS_URL=redis_url))
    try:
        tight = wait_for(
            lambda: next((k for k, v in _hosts(r).items() if k.startswith("tight-") and v["throttled"]), None),
            30,
            "the worker to report itself throttled",
        )
        wait_for(lambda: _consumed(app, tight) == set(), 30, "the throttled worker to stop consuming")
        cli = Cli(redis_url, "http://127.0.0.1:9", "thr", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url)
        rc, report = run(
            cli, write_workflow(tmp_path, [{"id": f"t{i}", "description": f"paused {i}"} for i in range(16)], "a")
        )
        assert rc == 0
        states = r.hgetall(f"agentq:run:{report['run_id']}:nodes")
        assert all(json.loads(v)["worker"] != tight for v in states.values()), "a throttled worker took a task"

        r.hset(f"agentq:throttle:{tight}", "memory_percent", 100)  # raise the threshold at run time
        wait_for(lambda: not _hosts(r)[tight]["throttled"], 30, "the worker to report itself resumed")
        wait_for(lambda: _consumed(app, tight) == {"studio", "models"}, 30, "the resumed worker to consume again")
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
        wait_for(lambda: _answers(base), 30, "Flower to answer")
        cli = Cli(redis_url, "http://127.0.0.1:9", "flower", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url)
        rc, report = run(
            cli, write_workflow(tmp_path, [{"id": "a", "description": "x"}, {"id": "b", "description": "y"}])
        )
        assert rc == 0
        assert httpx.get(f"{base}/api/tasks", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/tasks", auth=("ops", "wrong"), timeout=10).status_code == 401

        def seen() -> dict | None:
            tasks = httpx.get(f"{base}/api/tasks", auth=("ops", password), timeout=10).json()
            mine = (
                t.get("name") == "agentq.run_tasks" and report["run_id"] in (t.get("args") or "")
                for t in tasks.values()
            )
            return tasks if any(mine) else None

        tasks = wait_for(seen, 30, "Flower to show the run's tasks", interval=0.5)
        ours = [t for t in tasks.values() if report["run_id"] in (t.get("args") or "")]
        assert {t["name"] for t in ours} >= {"agentq.run_tasks", "agentq.start_run"}
        assert all(TEST_SECRET not in json.dumps(t) for t in tasks.values())
    finally:
        embedded.stop(flower)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True
