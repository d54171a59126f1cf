"""Faults injected in front of a real AutoGen Studio: a share of its answers are 500s (some after
it did the work) and 429s with Retry-After. Nothing is lost, nothing is written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producer import embedded
from tests.conftest import TEST_SECRET, WORKER_ENV, Cli, assert_not_in_redis, wait_for
from tests.studio_proxy import StudioProxy
from tests.test_studio_outage import TEAMS, _write_tree

pytestmark = pytest.mark.integration


def test_sync_survives_500s_lost_answers_and_429s(cli: Cli, proxy: StudioProxy, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree)
    proxy.fault_rate = 0.2
    rc, report, err = cli.sync(tree)
    kinds = Counter(kind for _, _, kind in proxy.faults)
    print(f"faults injected and survived: {len(proxy.faults)} {dict(kinds)}")
    assert rc == 0, (report.get("error"), {k: v for k, v in report["nodes"].items() if v["status"] != "done"}, err)
    assert kinds["500"] and kinds["500-after"] and kinds["429"], kinds
    assert any(path.startswith("/api/teams") and method == "POST" for method, path, _ in proxy.faults)
    teams = cli.studio().teams_by_label()
    assert all(len(teams.get(f"team-{i:03}", [])) == 1 for i in range(TEAMS)), "every team exactly once"
    galleries = [g for g in cli.studio().galleries() if g["config"]["id"] == "agentq-tree"]
    assert len(galleries) == 1
    assert {c["label"] for c in galleries[0]["config"]["components"]["agents"]} == {"a"}


def test_sync_survives_200s_that_are_no_answer(cli: Cli, proxy: StudioProxy, tmp_path: Path) -> None:
    """An HTML page with a 200, instead of Studio's answer or after Studio did the work: retried
    as a 5xx is, a create looked up before it is sent again."""
    tree = tmp_path / "tree"
    _write_tree(tree)
    proxy.fault_rate, proxy.fault_kinds = 0.3, ("html", "html-after")
    rc, report, err = cli.sync(tree)
    kinds = Counter(kind for _, _, kind in proxy.faults)
    assert rc == 0, (report.get("error"), {k: v for k, v in report["nodes"].items() if v["status"] != "done"}, err)
    assert kinds["html"] and kinds["html-after"], kinds
    assert any(path.startswith("/api/teams") and method == "POST" for method, path, kind in proxy.faults)
    teams = cli.studio().teams_by_label()
    assert all(len(teams.get(f"team-{i:03}", [])) == 1 for i in range(TEAMS)), "every team exactly once"

    # a Studio behind a proxy that only ever answers so, or answers JSON that is not Studio's (or
    # is shaped as Studio's but holds no version): the
    # first look (the version asked before anything is enqueued) ends the sync in one line naming
    # the URL, exit code 3, in seconds rather than after every component's retries
    for kind, change in (("html", "d2"), ("json-list", "d3"), ("json-data", "d4")):
        proxy.fault_rate, proxy.max_faults_per_request, proxy.fault_kinds = 1.0, 10**6, (kind,)
        text = (tree / "agent.yaml").read_text()
        (tree / "agent.yaml").write_text(text.replace("description: d,", f"description: {change},"))
        started = time.monotonic()
        rc, report, err = cli.sync(tree)
        assert rc == 3 and "Traceback" not in err, (kind, err)
        assert proxy.url in report["error"] and len(report["errors"]) == 1, report
        assert time.monotonic() - started < 30, kind
        proxy.fault_rate = 0.0
        (tree / "agent.yaml").write_text(text)


def test_a_listing_of_rows_that_are_not_studios_fails_the_teams_and_the_sync_ends(
    cli: Cli, proxy: StudioProxy, tmp_path: Path
) -> None:
    """Studio's own answer shape, but rows without an integer id (a component that is not an
    object): the teams fail naming that answer, the rest is written, and the sync ends."""
    tree = tmp_path / "tree"
    _write_tree(tree, teams=60)  # three batches: each looks for itself once the first gave up
    proxy.fault_rate, proxy.max_faults_per_request, proxy.fault_kinds = 1.0, 10**6, ("junk-rows",)
    proxy.fault_methods, proxy.fault_paths = ("GET",), ("/api/teams/",)
    rc, report, err = cli.sync(tree, "--timeout", "120")
    assert rc == 1 and "Traceback" not in err, err
    teams = {lbl: n for lbl, n in report["nodes"].items() if lbl.startswith("team-")}
    assert len(teams) == 60 and all(n["status"] == "failed" for n in teams.values()), teams
    assert all("not a list of rows, each with its id" in n["error"] for n in teams.values()), teams
    assert report["nodes"]["a"]["status"] == "done", report["nodes"]["a"]
    assert not [lbl for lbl in cli.studio().teams_by_label() if lbl.startswith("team-")], "no team was created blind"


def test_a_create_studio_does_after_it_timed_out_is_found_not_made_twice(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    """Each team's POST is held past the worker's timeout, then done by Studio all the same: the
    worker looks for it again rather than posting it twice (it used to look once, find nothing yet,
    and post again)."""
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    env = {**WORKER_ENV, "STUDIO_TIMEOUT_SECONDS": "1", "STUDIO_BACKOFF_SECONDS": "0.05"}
    worker = embedded.start_worker(url, concurrency=4, name="late", env=env, log_path=tmp_path / "worker.log")
    try:
        cli = Cli(url, proxy.url, f"late-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=3)
        proxy.fault_rate, proxy.max_faults_per_request, proxy.fault_kinds, proxy.late = 1.0, 1, ("late",), 1.6
        proxy.fault_methods, proxy.fault_paths = ("POST",), ("/api/teams/",)
        rc, report, err = cli.sync(tree)
        assert rc == 0, (report.get("error"), err)
        assert Counter(kind for _, _, kind in proxy.faults)["late"] == 3, proxy.faults
        _each_team_once(cli, 3)
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)


def test_redis_going_away_mid_sync_is_one_clear_line_naming_it(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    """The producer waits REDIS_OUTAGE_SECONDS for Redis to come back, then ends with exit code 3
    and one line naming Redis and its URL."""
    port = embedded.free_port()
    url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)
    worker = embedded.start_worker(url, concurrency=4, name="faults", env=WORKER_ENV, log_path=tmp_path / "worker.log")
    try:
        cli = Cli(url, proxy.url, f"redis-gone-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=400)
        proxy.delay = 0.2  # a sync that takes seconds: Redis must go away while the producer waits
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "sync", str(tree)],
            env=cli.env(REDIS_OUTAGE_SECONDS="3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        r = redis.Redis.from_url(url)
        wait_for(
            lambda: any(b'"done"' in v for key in r.scan_iter("agentq:run:*:nodes") for v in r.hvals(key)),
            60,
            "the sync to start",
        )
        embedded.stop(redis_proc)
        out, errors = producer.communicate(timeout=60)
        assert producer.returncode == 3, errors
        assert f"Redis at {url} is unreachable" in errors and "Traceback" not in errors, errors
        assert len([line for line in errors.splitlines() if "error" in line.lower()]) == 1, errors

        # Redis is back (empty: it kept nothing): the same worker takes the next sync to the end
        _, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)
        proxy.delay = 0.0
        rc, report, errors = cli.sync(tree)
        assert rc == 0, errors
        assert report["counts"].get("failed", 0) == 0, report["counts"]
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)


def _own_worker(url: str, tmp_path: Path, name: str, exact_name: bool = False) -> subprocess.Popen[bytes]:
    return embedded.start_worker(
        url,
        concurrency=4,
        name=name,
        env={**WORKER_ENV, "RESOURCE_INTERVAL_SECONDS": "1", "WORKER_DEAD_SECONDS": "5"},  # as the producer's
        log_path=tmp_path / f"{name}.log",
        exact_name=exact_name,
    )


def test_a_killed_worker_costs_seconds_and_every_team_arrives_once(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    doomed = _own_worker(url, tmp_path, "doomed")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        cli = Cli(url, proxy.url, f"killed-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=150)  # killed after 20: most of them still to come
        proxy.delay = 0.03
        producer = cli.start("sync", str(tree), "--json", WORKER_DEAD_SECONDS="5")
        r = redis.Redis.from_url(url)
        wait_for(
            lambda: _nodes_done(r) >= 20,
            60,
            "the sync to get going",
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker's whole process group, mid-sync
        doomed.wait()
        survivor = _own_worker(url, tmp_path, "survivor")
        started = time.monotonic()
        out, err = producer.communicate(timeout=120)
        recovery = time.monotonic() - started
        print(f"run finished {recovery:.1f} s after the new worker started")
        assert producer.returncode == 0, err[-2000:]
        # under the 30 s a dead worker's create locks would hold its teams back, were they not taken over
        assert recovery < 28, f"the run took {recovery:.0f} s to finish after the new worker started"
        assert "silent for over 5 s; requeued" in err, err
        _each_team_once(cli, 150)
        # a new Studio user: every row was inserted by this run, those the killed worker made too
        counts = json.loads(out)["counts"]
        assert counts["unchanged"] == 0 and counts["created"] == 150 + 2, counts  # the gallery's model and agent too
    finally:
        for proc in (doomed, survivor):
            if proc is not None:
                embedded.stop(proc)
        embedded.stop(redis_proc)


def test_a_worker_killed_and_restarted_at_once_under_its_name_has_its_messages_requeued(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    """A supervisor (compose, systemd) restarts a killed worker under the same node name before it
    could be missed: its heartbeat goes on, so silence says nothing. What the dead process held is
    requeued all the same, long before WORKER_DEAD_SECONDS or the visibility timeout."""
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    doomed = _own_worker(url, tmp_path, "doomed", exact_name=True)
    again: subprocess.Popen[bytes] | None = None
    try:
        cli = Cli(url, proxy.url, f"restarted-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=120)
        proxy.delay = 0.03
        producer = cli.start("sync", str(tree), "--json", WORKER_DEAD_SECONDS="120")
        r = redis.Redis.from_url(url)
        wait_for(
            lambda: _nodes_done(r) >= 10,
            60,
            "the sync to get going",
        )
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        again = _own_worker(url, tmp_path, "doomed", exact_name=True)  # the same node name, at once
        out, err = producer.communicate(timeout=60)
        assert producer.returncode == 0, err[-2000:]
        assert "worker gone: doomed@" in err and "restarted; requeued" in err, err
        _each_team_once(cli, 120)
    finally:
        for proc in (doomed, again):
            if proc is not None:
                embedded.stop(proc)
        embedded.stop(redis_proc)


def test_a_create_whose_lock_was_lost_meanwhile_takes_its_duplicate_back(
    cli: Cli, proxy: StudioProxy, examples: Path, redis_url: str
) -> None:
    """A worker cut off mid-create (a partition past its lock's expiry): another worker makes the
    row and records it meanwhile, then the first one's create goes through. The duplicate is
    deleted at once and the recorded row updated: one row per team, the one the cache names."""
    from shared.adapters.redis import keys
    from shared.core.hashing import namespace

    r = redis.Redis.from_url(redis_url)
    made: list[int] = []

    def another_worker_first(method: str, path: str, body: bytes | None) -> None:
        sent = json.loads(body or b"{}")
        label = (sent.get("component") or {}).get("label")
        creates = method == "POST" and path.startswith("/api/teams/") and "id" not in sent
        if creates and label == "solo-researcher" and not made:
            row = httpx.post(f"{proxy.upstream}/api/teams/", json=sent, timeout=30).json()["data"]
            made.append(int(row["id"]))
            r.hset(keys.ns_key(namespace(cli.studio_url, cli.user_id), keys.TEAMS), label, row["id"])

    proxy.before = another_worker_first
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert made, "the other worker's create was not staged"
    (row,) = cli.studio().teams_by_label()["solo-researcher"]
    assert row["id"] == made[0]
    deleted = [path for method, path, _ in proxy.requests if method == "DELETE"]
    assert len(deleted) == 1 and deleted[0] != f"/api/teams/{made[0]}", deleted  # the duplicate, taken back


def test_a_worker_killed_while_nobody_waits_for_the_run_has_its_messages_requeued_by_the_others(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    """`sync --no-wait`: no producer watches the run. The remaining worker puts the dead one's
    messages back at twice WORKER_DEAD_SECONDS (5 s here), not after the visibility timeout."""
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    doomed, survivor = _own_worker(url, tmp_path, "doomed"), _own_worker(url, tmp_path, "survivor")
    try:
        cli = Cli(url, proxy.url, f"nowait-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=120)
        proxy.delay = 0.05
        started = cli.run("sync", str(tree), "--no-wait")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip().split()[-1]
        r = redis.Redis.from_url(url)
        wait_for(
            lambda: _nodes_done(r) >= 10 and r.hlen(b"agentq:inflight:" + _nodename(r, "doomed")) > 0,
            60,
            "the doomed worker to hold a batch",
        )
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        held = r.hlen(b"agentq:inflight:" + _nodename(r, "doomed"))  # 0: its batch ended just before

        def ended() -> dict | None:
            report = json.loads(cli.run("status", run_id, "--json").stdout)
            return report if report.get("state") == "finished" else None

        report = wait_for(ended, 90, "the run to finish with nobody waiting", interval=1)
        assert report["counts"]["failed"] == 0, report["counts"]
        assert not held or "requeued" in (tmp_path / "survivor.log").read_text()
        _each_team_once(cli, 120)
    finally:
        for proc in (doomed, survivor):
            embedded.stop(proc)
        embedded.stop(redis_proc)


def _each_team_once(cli: Cli, teams: int) -> None:
    rows = cli.studio().teams_by_label()
    assert all(len(rows.get(f"team-{i:03}", [])) == 1 for i in range(teams)), "every team exactly once"


def _nodes_done(r: redis.Redis) -> int:
    return sum(v.count(b'"done"') for key in r.scan_iter("agentq:run:*:nodes") for v in r.hvals(key))


def _nodename(r: redis.Redis, name: str) -> bytes:
    return next(n for n in r.hkeys("agentq:hosts") if n.startswith(name.encode() + b"-"))


FLOWER_AUTH = ("ops", uuid.uuid4().hex)


def _start_flower(redis_url: str, tmp_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = embedded.free_port()
    proc = embedded.spawn(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1"],
        tmp_path / "flower.log",
        env={**os.environ, "REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)},
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "Flower exited"
        try:
            return httpx.get(f"{base}/api/workers", auth=FLOWER_AUTH, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 30, "Flower to answer", interval=0.2)
    return base, proc


def test_a_secret_in_a_field_of_the_wrong_type_is_found_nowhere(
    cli: Cli, tmp_path: Path, services_dir: Path, redis_url: str
) -> None:
    """Studio refuses a list where it wants a dict and quotes the value in its error: the resolved
    secret must not reach the output, the run state, Redis, the worker's log, Flower or the exporter."""
    flower, flower_proc = _start_flower(redis_url, tmp_path)
    exporter_port = embedded.free_port()
    exporter = embedded.start_exporter(redis_url, exporter_port, env={"STUDIO_URL": cli.studio_url})
    try:
        _secret_in_wrong_type_field(cli, tmp_path, services_dir, redis_url, flower, exporter_port)
    finally:
        embedded.stop(flower_proc)
        embedded.stop(exporter)


def _secret_in_wrong_type_field(
    cli: Cli, tmp_path: Path, services_dir: Path, redis_url: str, flower: str, exporter_port: int
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "model.yaml").write_text(
        "provider: autogen_ext.models.openai.OpenAIChatCompletionClient\ncomponent_type: model\nlabel: leaky\n"
        "config: {model: gpt-4o-mini, api_key: '${AGENTQ_TEST_SECRET}', default_headers: ['${AGENTQ_TEST_SECRET}']}\n"
    )
    (tree / "agent.yaml").write_text(
        "provider: autogen_agentchat.agents.AssistantAgent\ncomponent_type: agent\nlabel: a\n"
        "config: {name: a, description: d, reflect_on_tool_use: false, tool_call_summary_format: '{result}',"
        " model_client: {$ref: leaky}}\n"
    )
    (tree / "team.yaml").write_text(
        "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\n"
        "label: leaky-team\nconfig:\n  participants: [{$ref: a}]\n"
    )
    rc, report, err = cli.sync(tree)
    assert rc == 1
    failed = {label: st for label, st in report["nodes"].items() if st["status"] == "failed"}
    assert failed, report["nodes"]
    assert "default_headers" in json.dumps(failed), "Studio's error should be reported"
    # Studio quotes the value shortened ("sk-agentq-test-49...c6c"): no fragment may survive either
    assert TEST_SECRET[:12] not in json.dumps(failed) and TEST_SECRET[-12:] not in json.dumps(failed)
    human = cli.run("status", report["run_id"], "-v")
    for text in (json.dumps(report), err, human.stdout, human.stderr):
        assert TEST_SECRET not in text
    assert_not_in_redis(redis_url, TEST_SECRET)
    assert TEST_SECRET not in (services_dir / "worker.log").read_text(errors="replace")

    def batches_ended() -> dict | None:
        tasks = httpx.get(f"{flower}/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
        ours = [
            t
            for t in tasks.values()
            if t.get("name") == "agentq.sync_batch" and report["run_id"] in (t.get("args") or "")
        ]
        return tasks if ours and all(t.get("state") in ("SUCCESS", "FAILURE") for t in ours) else None

    tasks = wait_for(batches_ended, 30, "Flower to show the run's batches ended", interval=0.2)
    assert TEST_SECRET not in json.dumps(tasks)
    metrics = httpx.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=10).text
    assert "agentq_" in metrics and TEST_SECRET not in metrics and TEST_SECRET[:12] not in metrics


def test_a_server_that_echoes_the_request_shows_no_secret_and_no_token(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    """Studio (or a proxy before it) answers 401 or 200 with the request's Authorization header and
    body in its page: neither STUDIO_TOKEN nor a component's resolved secret reaches the output,
    the run state or Redis."""
    token = f"studio-token-{uuid.uuid4().hex}"
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    worker = embedded.start_worker(
        url, concurrency=4, name="echo", env={**WORKER_ENV, "STUDIO_TOKEN": token}, log_path=tmp_path / "worker.log"
    )
    try:
        cli = Cli(url, proxy.url, f"echo-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "model.yaml").write_text(
            "provider: autogen_ext.models.openai.OpenAIChatCompletionClient\ncomponent_type: model\nlabel: m\n"
            "config: {model: gpt-4o-mini, api_key: '${AGENTQ_TEST_SECRET}'}\n"
        )
        (tree / "team.yaml").write_text(
            "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\nlabel: t\nconfig:\n"
            "  participants: [{provider: autogen_agentchat.agents.AssistantAgent, component_type: agent,"
            " config: {name: a, description: d, reflect_on_tool_use: false, tool_call_summary_format: '{result}',"
            " model_client: {$ref: m}}}]\n"
        )
        proxy.fault_rate, proxy.max_faults_per_request = 1.0, 10**6
        # every request, then only the writes: their bodies hold the resolved secret. A 401, or a
        # 200 that is no answer, to every request ends the sync at its first look (the version),
        # exit code 3
        for kind, methods, code in (("401-echo", None, 3), ("200-echo", None, 3), ("401-echo", ("POST",), 1)):
            proxy.fault_kinds, proxy.fault_methods = (kind,), methods
            rc, report, err = cli.sync(tree, "--force", STUDIO_TOKEN=token)
            assert rc == code, err
            said = json.dumps(report) + err
            assert "refused: Bearer ***" in said, said[:2000]  # the echo is shown, the token masked
            for secret in (token, TEST_SECRET):
                assert secret not in said
                assert_not_in_redis(url, secret)
            assert TEST_SECRET not in (tmp_path / "worker.log").read_text(errors="replace")
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)


def test_a_killed_worker_mid_workflow_loses_no_task(standin, tmp_path: Path) -> None:
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 0.2
    redis_url, redis_proc = embedded.start_redis(tmp_path / "redis")
    doomed = _own_worker(redis_url, tmp_path, "doomed")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        cli = Cli(redis_url, "http://127.0.0.1:9", "wf-kill", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url, max_concurrency=16)
        wf = write_workflow(tmp_path, [{"id": f"t{i}", "description": f"survive {i}"} for i in range(200)])
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
            env=cli.env(WORKER_DEAD_SECONDS="5"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: len(state.requests) >= 20, 60, "the run to get going")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        survivor = _own_worker(redis_url, tmp_path, "survivor")
        started = time.monotonic()
        out, err = producer.communicate(timeout=120)
        print(f"workflow finished {time.monotonic() - started:.1f} s after the new worker started")
        assert producer.returncode == 0, err[-2000:]
        report = json.loads(out)
        assert len(report["tasks"]) == 200 and all(t["status"] == "done" for t in report["tasks"].values())
        ended = redis.Redis.from_url(redis_url).smembers(f"agentq:run:{report['run_id']}:ended")
        assert len(ended) == 200  # each task ended once: end_task.lua refuses a second end
        assert "requeued" in err
    finally:
        for proc in (doomed, survivor):
            if proc is not None:
                embedded.stop(proc)
        embedded.stop(redis_proc)


def test_a_worker_whose_tasks_end_while_redis_is_away_keeps_working(standin, tmp_path: Path) -> None:
    """The model answers while Redis is down: the tasks end, their late acks find no connection, and
    the worker still takes the next run once Redis is back (kombu would stop it for good)."""
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 2.0
    port = embedded.free_port()
    redis_url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)
    worker = _own_worker(redis_url, tmp_path, "acks")
    try:
        cli = Cli(redis_url, "http://127.0.0.1:9", "wf-acks", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url, max_concurrency=16)
        wf = write_workflow(tmp_path, [{"id": f"t{i}", "description": f"away {i}"} for i in range(4)])
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
            env=cli.env(REDIS_OUTAGE_SECONDS="3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: state.in_flight >= 4, 60, "the tasks to reach the model")
        embedded.stop(redis_proc)
        _, err = producer.communicate(timeout=60)
        assert producer.returncode == 3 and "Traceback" not in err, err
        wait_for(lambda: len(state.requests) >= 4, 30, "the model to answer while Redis is away")

        _, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)  # back, empty
        state.control["delay"] = 0.0
        # --no-cache: the worker must run every task itself (an end retried once Redis was back may
        # already have cached an answer the model gave while it was away)
        rerun = cli.run("run", str(wf), "--json", "--no-cache", timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        statuses = {tid: t["status"] for tid, t in json.loads(rerun.stdout)["tasks"].items()}
        assert set(statuses.values()) == {"done"}, statuses
        assert worker.poll() is None
        log = (tmp_path / "acks.log").read_text()
        assert "Unrecoverable error" not in log, log[-3000:]
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)


def _take_as_kombu_delivers(r: redis.Redis, queue: str) -> str | None:
    """One message off `queue` into the broker's unacknowledged hash, as kombu's Redis transport
    records a delivery (QoS.append): the delivery tag, or None while the queue is empty."""
    for key in [queue] + [f"{queue}\x06\x16{p}" for p in range(1, 10)]:  # its priority lists
        raw = r.rpop(key)
        if raw is not None:
            message = json.loads(raw)
            tag = uuid.uuid4().hex
            message["properties"]["delivery_tag"] = tag
            info = message["properties"]["delivery_info"]
            r.hset("unacked", tag, json.dumps([message, info["exchange"], info["routing_key"]]))
            r.zadd("unacked_index", {tag: time.time()})
            return tag
    return None


def test_a_message_a_worker_had_taken_as_redis_restarted_runs_once_it_is_back(standin, tmp_path: Path) -> None:
    """Redis restarts (append-only file) while a worker's connection had taken a message and not
    started it: Celery drops what a lost connection delivered, kombu cannot put it back on a dead
    connection, and it stays unacknowledged in Redis with nobody on it. The run stalled for the
    visibility timeout (15 min); the worker says it connected again, and the message is put back."""
    from shared.core.task_names import MODELS_QUEUE
    from tests.test_workflow_run import task_of, write_tree, write_workflow

    url, state = standin
    state.control["delay"] = 3.0
    port = embedded.free_port()
    redis_url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port, persist=True)
    env = {"RESOURCE_INTERVAL_SECONDS": "1", "WORKER_DEAD_SECONDS": "3", "SYNC_BATCH_SIZE": "1"}  # a message a task
    worker = embedded.start_worker(
        redis_url, concurrency=1, name="reconnects", env={**WORKER_ENV, **env}, log_path=tmp_path / "worker.log"
    )
    producer: subprocess.Popen[str] | None = None
    try:
        cli = Cli(redis_url, "http://127.0.0.1:9", "wf-reconnect", tmp_path / "cache", "http://127.0.0.1:9")
        write_tree(tmp_path, url, max_concurrency=16)
        wf = write_workflow(tmp_path, [{"id": f"t{i}", "description": f"restart {i}"} for i in range(2)])
        producer = cli.start("run", str(wf), "--json", **env)
        # one thread: the worker runs one task's message, the other's waits in its queue
        wait_for(lambda: state.in_flight == 1, 60, "the first task's model request under way")
        wait_for(lambda: _take_as_kombu_delivers(redis.Redis.from_url(redis_url), MODELS_QUEUE), 10, "the other task")
        embedded.stop(redis_proc)  # SIGTERM: Redis writes its append-only file and exits
        _, redis_proc = embedded.start_redis(tmp_path / "redis", port=port, persist=True)
        out, err = producer.communicate(timeout=90)
        assert producer.returncode == 0, err[-2000:]
        statuses = {tid: t["status"] for tid, t in json.loads(out)["tasks"].items()}
        assert statuses == {"t0": "done", "t1": "done"}, statuses
        assert "requeued 1 message(s) taken but never started by a worker that is gone or lost its broker" in err, err
        assert Counter(task_of(q) for q in state.requests) == {"restart 0": 1, "restart 1": 1}
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.communicate()
        embedded.stop(worker)
        embedded.stop(redis_proc)


def test_a_workers_copy_of_tasks_another_worker_took_over_stops_within_seconds(
    wf_cli: Cli, standin, tmp_path: Path, services_dir: Path
) -> None:
    """A worker cut off past WORKER_DEAD_SECONDS has its message requeued, and another worker claims
    its tasks. Back, its own copy went on for up to the task's timeout (300 s): paying for model
    calls, holding model slots the others waited for, and ending the tasks a second time."""
    from shared.adapters.redis import keys
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    write_tree(tmp_path, url)
    wf = write_workflow(tmp_path, [{"id": "slow", "description": "taken over", "retries": 0}], name="taken")
    state.control["delay"] = 8  # the stale copy's request is under way when its task is taken
    proc = wf_cli.run("run", str(wf), "--no-wait", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    r = redis.Redis.from_url(wf_cli.redis_url, decode_responses=True)
    nodes = keys.run_key(run_id, keys.NODES)
    wait_for(lambda: state.in_flight == 1, 60, "the task's model request under way")
    mine = json.loads(r.hget(nodes, "slow") or "{}")
    assert mine["status"] == "running" and mine["worker"].startswith("test"), mine
    # what the requeued copy's claim writes on the worker that took the message over
    elsewhere = {**mine, "worker": "elsewhere@host", "pid": 1, "task_id": "another-delivery"}
    r.hset(nodes, "slow", json.dumps(elsewhere))
    log = services_dir / "worker.log"
    wait_for(
        lambda: (
            f"another worker process runs or ended its tasks: slow of run {run_id}" in log.read_text(errors="replace")
        ),
        15,
        "the stale copy stopped",
        interval=0.2,
    )
    wait_for(lambda: state.in_flight == 0, 30, "the stand-in done with the stale request")
    assert json.loads(r.hget(nodes, "slow") or "{}")["worker"] == "elsewhere@host"  # nothing of the copy written
    assert wf_cli.run("cancel", run_id).returncode == 0


def test_a_copy_whose_task_another_worker_took_still_ends_its_other_tasks(
    wf_cli: Cli, standin, tmp_path: Path, services_dir: Path
) -> None:
    """A requeued or re-dispatched copy carries its tasks in other groups than the message this
    worker runs (the producer sends a gone worker's tasks again 25 to a message, in no message's
    order): a copy elsewhere may take one task of this worker's message and not the other, whose
    copy waits for this worker, alive again after a partition. Stopping the whole message left
    that task running here forever, its copies waiting on a live worker: the run hung."""
    from shared.adapters.redis import keys
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    write_tree(tmp_path, url)
    specs = [{"id": tid, "description": f"half taken {tid}", "retries": 0} for tid in ("taken", "kept")]
    wf = write_workflow(tmp_path, specs, name="halftaken")
    state.control["delay"] = 6  # both requests under way when one task is taken
    proc = wf_cli.run("run", str(wf), "--no-wait", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    r = redis.Redis.from_url(wf_cli.redis_url, decode_responses=True)
    nodes = keys.run_key(run_id, keys.NODES)

    def both_running() -> dict[str, Any] | None:
        got = {t: json.loads(r.hget(nodes, t) or "{}") for t in ("taken", "kept")}
        ok = all(s.get("status") == "running" for s in got.values()) and state.in_flight == 2
        return got if ok else None

    mine = wait_for(both_running, 60, "both tasks' model requests under way")
    assert mine["taken"]["task_id"] == mine["kept"]["task_id"], "the two tasks were to travel in one message"
    # the claim of a copy elsewhere that carries "taken" and not "kept"
    elsewhere = {**mine["taken"], "worker": "elsewhere@host", "pid": 1, "task_id": "another-delivery"}
    r.hset(nodes, "taken", json.dumps(elsewhere))

    def kept_ended() -> dict[str, Any] | None:
        st = json.loads(r.hget(nodes, "kept") or "{}")
        return st if st.get("status") != "running" else None

    # the task still this worker's ends here: the model answers 6 s after its request
    kept = wait_for(kept_ended, 30, "the task nobody took to end on its worker", interval=0.2)
    assert kept["status"] == "done" and kept["worker"] == mine["kept"]["worker"], kept
    assert json.loads(r.hget(nodes, "taken") or "{}")["worker"] == "elsewhere@host"  # nothing written for it
    log = services_dir / "worker.log"
    assert f"another worker process runs or ended its tasks: taken of run {run_id}" in log.read_text(errors="replace")
    assert wf_cli.run("cancel", run_id).returncode == 0


def test_a_copy_of_a_message_whose_tasks_run_on_a_live_worker_waits_and_calls_no_model(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """A RabbitMQ restart hands back the messages of the connections it lost, those of live workers
    too: the copy claimed their tasks and ran them again (25 of 80 tasks twice, one four times)."""
    from shared.adapters.celery import create_app
    from shared.core.task_names import MODELS_QUEUE
    from shared.settings import Settings
    from tests.test_workflow_run import write_tree, write_workflow

    url, state = standin
    write_tree(tmp_path, url)
    wf = write_workflow(tmp_path, [{"id": "once", "description": "handed back", "retries": 0}], name="twice")
    state.control["delay"] = 5
    proc = wf_cli.run("run", str(wf), "--no-wait", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    wait_for(lambda: state.in_flight == 1, 60, "the task's model request under way")
    # the copy the broker hands back: to this worker's other process, or to the one running it
    create_app(Settings(redis_url=wf_cli.redis_url)).send_task(
        "agentq.run_tasks", args=[run_id, ["once"]], queue=MODELS_QUEUE
    )

    def status() -> dict[str, Any] | None:
        shown = json.loads(wf_cli.run("status", run_id, "--json").stdout)
        return shown if shown["state"] != "running" else None

    report = wait_for(status, 60, "the run to end", interval=0.5)
    assert report["state"] == "finished" and report["tasks"]["once"]["status"] == "done", report
    wait_for(lambda: state.in_flight == 0, 30, "no request left")
    asked = [q for q in state.requests if "handed back" in json.dumps(q["messages"])]
    assert len(asked) == 1, f"the model was asked {len(asked)} times"
