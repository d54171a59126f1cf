"""Runs a user can find, follow and stop: `producer runs`, `status`/`result` of `last` (the
default), `producer cancel`, and Ctrl-C saying which run goes on and how to cancel it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from producer import embedded
from tests.conftest import WORKER_ENV, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def lab(tmp_path: Path, standin):
    from tests.test_workflow_run import write_tree

    url, proc = embedded.start_redis(tmp_path / "redis")
    base, state = standin
    write_tree(tmp_path, base, max_concurrency=4)
    worker = embedded.start_worker(url, concurrency=4, name="runs", env=WORKER_ENV, log_path=tmp_path / "w.log")
    env = {**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp_path / "cache")}
    yield env, state, tmp_path
    embedded.stop(worker)
    embedded.stop(proc)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def start(env: dict[str, str], wf: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "run", str(wf), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def workflow(tmp: Path, n: int, name: str) -> Path:
    from tests.test_workflow_run import write_workflow

    return write_workflow(tmp, [{"id": f"t{i}", "description": f"{name} {i}"} for i in range(n)], name=name)


def test_runs_lists_the_newest_first_and_status_and_result_default_to_the_last(lab) -> None:
    env, _, tmp = lab
    first = json.loads(cli(env, "run", str(workflow(tmp, 3, "first")), "--json").stdout)
    second = json.loads(cli(env, "run", str(workflow(tmp, 4, "second")), "--json").stdout)
    listed = cli(env, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs: list[dict[str, Any]] = json.loads(listed.stdout)["runs"]
    assert [r["run_id"] for r in runs[:2]] == [second["run_id"], first["run_id"]]
    assert runs[0]["kind"] == "workflow" and runs[0]["state"] == "finished"
    assert runs[0]["ended"] == runs[0]["total"] == 4 and runs[0]["counts"]["done"] == 4
    plain = cli(env, "runs")
    assert plain.returncode == 0 and second["run_id"] in plain.stdout and "workflow" in plain.stdout
    for args in (["status", "--json"], ["result", "last", "--json"]):
        shown = cli(env, *args)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["run_id"] == second["run_id"]


def test_a_cancelled_run_starts_nothing_new_and_is_marked_cancelled(lab) -> None:
    env, state, tmp = lab
    state.control["delay"] = 0.3
    producer = start(env, workflow(tmp, 200, "long"))
    wait_for(lambda: len(state.requests) >= 12, 60, "the run to get going")
    run_id = json.loads(cli(env, "runs", "--json").stdout)["runs"][0]["run_id"]
    cancelled = cli(env, "cancel", run_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    outcome = json.loads(cancelled.stdout)
    assert outcome["cancelled"] is True and outcome["run_id"] == run_id
    at_cancel = len(state.requests) + state.in_flight
    out, err = producer.communicate(timeout=60)  # the waiting command ends with the run
    report = json.loads(out)
    assert report["state"] == "cancelled" and producer.returncode == 1, err
    wait_for(lambda: state.in_flight == 0, 30, "the tasks running at the cancel to end")
    # tasks that already held a model slot end on their own; none starts after: 4 slots, and the
    # cancel is seen within half a second by each worker process
    assert len(state.requests) <= at_cancel + 8, (len(state.requests), at_cancel)
    tasks = json.loads(cli(env, "result", run_id, "--json").stdout)["tasks"]
    statuses = [t["status"] for t in tasks.values()]
    # every task not begun at the cancel is skipped (the same 8 of slack as above; the cancel's own
    # moment moves with the machine's load, so no fixed share)
    said = {
        tid: (t["status"], t.get("error") or t.get("reason")) for tid, t in tasks.items() if t["status"] != "skipped"
    }
    assert statuses.count("skipped") >= 200 - at_cancel - 8, (at_cancel, len(state.requests), said)
    assert "pending" not in statuses and "running" not in statuses
    again = cli(env, "cancel", run_id, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["cancelled"] is False  # already over


def test_tasks_waiting_for_a_model_slot_at_the_cancel_call_no_model(lab) -> None:
    """All 12 tasks were running (claimed), 4 held the model's slots. When the 4 answers came, the
    first task to get a slot asked Redis whether the run was cancelled, and the tasks given slots
    meanwhile took the answer from before the cancel: 3 more model calls, seconds after it."""
    env, state, tmp = lab
    state.control["delay"] = 2.0
    producer = start(env, workflow(tmp, 12, "waiting"))
    wait_for(lambda: state.in_flight == 4, 60, "the model's 4 slots taken")
    run_id = json.loads(cli(env, "runs", "--json").stdout)["runs"][0]["run_id"]
    cancelled = cli(env, "cancel", run_id, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["cancelled"] is True, cancelled.stderr
    producer.communicate(timeout=60)
    wait_for(
        lambda: (
            sum(
                t["status"] == "running"
                for t in json.loads(cli(env, "result", run_id, "--json").stdout)["tasks"].values()
            )
            == 0
        ),
        60,
        "the tasks running at the cancel to end",
    )
    assert state.in_flight == 0 and len(state.requests) == 4, [r["messages"][-1]["content"] for r in state.requests]


def test_tasks_retrying_a_model_at_the_cancel_send_no_more_retries(lab) -> None:
    """A task waiting out a 429's Retry-After checked for a cancel only before its first request:
    its retries went on after the cancel, each one a model call."""
    from tests.test_workflow_run import write_workflow

    env, state, tmp = lab
    state.control.update(fail_rate=1.0, fail_status=429, retry_after=1)
    tasks = [{"id": f"t{i}", "description": f"retrying {i}", "retries": 8} for i in range(4)]
    producer = start(env, write_workflow(tmp, tasks, name="retrying"))
    wait_for(lambda: len(state.requests) >= 8, 60, "every task retrying")
    run_id = json.loads(cli(env, "runs", "--json").stdout)["runs"][0]["run_id"]
    cancelled = cli(env, "cancel", run_id, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["cancelled"] is True, cancelled.stderr
    at_cancel = len(state.requests) + state.in_flight
    producer.communicate(timeout=60)
    wait_for(
        lambda: all(
            t["status"] != "running" for t in json.loads(cli(env, "result", run_id, "--json").stdout)["tasks"].values()
        ),
        60,
        "the tasks running at the cancel to end",
    )
    # a retry due within the half second a worker takes to see the cancel may still go: one a task
    assert len(state.requests) <= at_cancel + 4, (len(state.requests), at_cancel)


def test_ctrl_c_before_the_runs_start_reached_the_broker_names_the_run_it_ended(lab) -> None:
    """Ctrl-C while the run's start was being sent: the run was ended (nothing of it ran) and the
    command exited 130 saying nothing, so nobody knew there was a run to look at."""
    import socket

    env, _, tmp = lab
    before = {r["run_id"] for r in json.loads(cli(env, "runs", "--json").stdout)["runs"]}
    with socket.socket() as silent:  # a broker that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        broker = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "run", str(workflow(tmp, 2, "unsent"))],
            env={**env, "BROKER_URL": broker},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def written() -> str | None:
            runs = json.loads(cli(env, "runs", "--json").stdout)["runs"]
            return next((r["run_id"] for r in runs if r["run_id"] not in before), None)

        run_id = wait_for(written, 60, "the run written, its start on its way")
        producer.send_signal(signal.SIGINT)
        _, err = producer.communicate(timeout=60)
    assert producer.returncode == 130, err
    assert f"run {run_id} ended before its start reached the broker; nothing of it ran" in err, err
    assert "Traceback" not in err
    shown = json.loads(cli(env, "status", run_id, "--json").stdout)
    assert shown["state"] != "running", shown


def test_redis_lost_as_the_run_starts_names_the_run_and_the_workers_start_it_later(tmp_path: Path, standin) -> None:
    """The producer lost Redis between writing the run and sending its start (a partition): it said
    only "Redis is unreachable", and the run, never started nor ended, stayed `running` for good.
    It names the run; once Redis is back, the workers start it."""
    import socket

    from tests.test_workflow_run import write_tree

    base, _ = standin
    write_tree(tmp_path, base)
    port = embedded.free_port()
    url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port, persist=True)
    env = {**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp_path / "cache")}
    env["REDIS_OUTAGE_SECONDS"] = "2"
    worker = None
    try:
        with socket.socket() as silent:  # a broker that takes the connection and never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            producer = subprocess.Popen(
                [sys.executable, "-m", "producer.cli", "run", str(workflow(tmp_path, 2, "partitioned"))],
                env={**env, "BROKER_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            run_id = wait_for(
                lambda: (runs := json.loads(cli(env, "runs", "--json").stdout)["runs"]) and runs[0]["run_id"],
                60,
                "the run written, its start on its way",
                interval=0.2,
            )
            embedded.stop(redis_proc)  # Redis goes (and the silent broker never answers)
            _, err = producer.communicate(timeout=120)
        assert producer.returncode == 3, err
        assert f"run {run_id} is written but not started" in err and f"producer cancel {run_id}" in err, err
        assert "Traceback" not in err

        url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port, persist=True)  # back, with its data
        fast = {**WORKER_ENV, "WORKER_DEAD_SECONDS": "1", "RESOURCE_INTERVAL_SECONDS": "0.5"}
        worker = embedded.start_worker(url, concurrency=2, name="back", env=fast, log_path=tmp_path / "w.log")

        def ended() -> dict | None:
            report = json.loads(cli(env, "status", run_id, "--json").stdout)
            return report if report["state"] == "finished" else None

        report = wait_for(ended, 90, "the workers to start the run", interval=0.5)
        assert {t["status"] for t in report["tasks"].values()} == {"done"}, report
    finally:
        if worker is not None:
            embedded.stop(worker)
        embedded.stop(redis_proc)


def test_ctrl_c_on_a_real_redis_says_the_run_goes_on_and_how_to_cancel_it(lab) -> None:
    env, state, tmp = lab
    state.control["delay"] = 0.3
    producer = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "run", str(workflow(tmp, 40, "interrupted"))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(state.requests) >= 4, 60, "the run to get going")
    producer.send_signal(signal.SIGINT)
    _, err = producer.communicate(timeout=60)
    run_id = json.loads(cli(env, "runs", "--json").stdout)["runs"][0]["run_id"]
    assert producer.returncode == 130, err
    assert "Traceback" not in err
    assert f"run {run_id} goes on" in err and f"producer cancel {run_id}" in err, err
    wait_for(
        lambda: json.loads(cli(env, "status", run_id, "--json").stdout)["state"] == "finished", 120, "the run to end"
    )


def _embedded_lab(tmp_path: Path, standin: Any) -> tuple[dict[str, str], Any]:
    """The tree on the stand-in, and the environment of a command on the embedded default."""
    from tests.test_workflow_run import write_tree

    base, state = standin
    write_tree(tmp_path, base, max_concurrency=4)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL")}
    env.update(WORKER_ENV, AGENTQ_CACHE_DIR=str(tmp_path / "cache"), EXPORTER_PORT=str(embedded.free_port()))
    return env, state


def test_an_interrupted_embedded_run_is_not_taken_up_by_a_later_command(tmp_path: Path, standin) -> None:
    """The embedded Redis keeps its data for the cache: the messages an interrupted run left in it
    are not run again by the next command's worker, and the run reads as ended, saying why."""
    from tests.test_workflow_run import task_of

    env, state = _embedded_lab(tmp_path, standin)
    state.control["delay"] = 0.3
    producer = start(env, workflow(tmp_path, 200, "interrupted"))
    wait_for(lambda: len(state.requests) >= 4, 60, "the run to get going")
    producer.send_signal(signal.SIGINT)
    _, err = producer.communicate(timeout=60)
    assert producer.returncode == 130 and "stops with the embedded Redis" in err, err
    old_run = err.split("interrupted: run ")[1].split()[0]
    wait_for(lambda: state.in_flight == 0, 30, "the requests in flight to end")
    asked_before = len(state.requests)

    state.control["delay"] = 0.0
    later = cli(env, "run", str(workflow(tmp_path, 2, "later")), "--json")
    assert later.returncode == 0, later.stderr
    assert "worker gone" not in later.stderr and "requeued" not in later.stderr, later.stderr
    asked = [task_of(r) for r in state.requests[asked_before:]]
    assert asked and all(task.startswith("later") for task in asked), asked
    old = json.loads(cli(env, "status", old_run, "--json").stdout)
    assert old["state"] == "finished" and "interrupted" in old["error"], old
    listed = next(r for r in json.loads(cli(env, "runs", "--json").stdout)["runs"] if r["run_id"] == old_run)
    assert "interrupted" in listed["error"] and listed["counts"]["skipped"] > 0, listed  # not "finished, 0 failed"
    left = [t for t in old["tasks"].values() if t["status"] not in ("done", "failed")]
    assert left and all(t["status"] == "skipped" and "interrupted" in t["reason"] for t in left), left


def test_ctrl_c_to_the_terminals_group_as_the_embedded_default_starts_is_one_line(tmp_path: Path, standin) -> None:
    """A terminal's Ctrl-C reaches the whole process group: it stopped the embedded redis-server
    too, and the command ended in a kombu traceback or "Redis is unreachable"; or, a moment later,
    in exit 130 with nothing said (and nothing on stdout for --json)."""
    env, _ = _embedded_lab(tmp_path, standin)
    producer = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "run", str(workflow(tmp_path, 2, "startup")), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell gives a foreground job
    )
    assert producer.stderr is not None
    first = producer.stderr.readline()
    assert "started an embedded Redis" in first, first
    os.killpg(producer.pid, signal.SIGINT)
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 130, first + err
    assert "Traceback" not in err and "unreachable" not in err, err
    said = json.loads(out)
    assert said["exit_code"] == 130 and "interrupted" in said["error"], said


def test_ctrl_c_on_the_embedded_default_does_not_wait_for_a_model_call(tmp_path: Path, standin) -> None:
    """A model answering in 25 s: Ctrl-C ends the command, and its worker, long before."""
    import psutil

    env, state = _embedded_lab(tmp_path, standin)
    state.control["delay"] = 25.0
    producer = start(env, workflow(tmp_path, 2, "slow"))
    wait_for(lambda: state.in_flight >= 1, 60, "a model call to start")
    started = [p for p in psutil.Process(producer.pid).children(recursive=True) if "celery" in " ".join(p.cmdline())]
    producer.send_signal(signal.SIGINT)
    _, err = producer.communicate(timeout=20)  # before the model's answer: 3 s here (it was 10 s)
    assert producer.returncode == 130 and "Traceback" not in err, err
    assert started and not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], started


def test_ctrl_c_on_a_workflow_bench_cancels_the_run_it_started(lab) -> None:
    """The bench's stand-in stops with it: its run would only fail, and count as failures."""
    env, _, tmp = lab
    bench = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "bench", "workflow", "--standin", "--latency", "fixed:2"]
        + ["--team-sizes", "3", "--modes", "parallel", "--iterations", "2", "--warmup", "0", "--out", str(tmp / "b")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def running() -> str | None:
        """The bench's run once a worker took its start (written, a run shows as running before)."""
        runs = json.loads(cli(env, "runs", "--json").stdout)["runs"]
        run_id = next((r["run_id"] for r in runs if r["state"] == "running"), None)
        if run_id is None:
            return None
        tasks = json.loads(cli(env, "status", run_id, "--json").stdout)["tasks"].values()
        return run_id if any(t["status"] != "pending" for t in tasks) else None

    run_id = wait_for(running, 120, "the bench's run to start")
    bench.send_signal(signal.SIGINT)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 130 and "Traceback" not in err, err
    assert f"benchmark run {run_id} cancelled" in err
    ended = wait_for(
        lambda: (s := json.loads(cli(env, "status", run_id, "--json").stdout))["state"] != "running" and s,
        120,
        "the run to end",
    )
    assert ended["state"] == "cancelled", ended


def test_a_worker_on_the_models_queue_alone_runs_a_workflow_whole(tmp_path: Path, standin) -> None:
    """`celery -A workers worker -Q models` is the README's model-only worker: a workflow's start
    went to the studio queue, and waited for a worker there."""
    from tests.test_workflow_run import write_tree

    base, state = standin
    write_tree(tmp_path, base)
    with embedded.LocalServices() as services:
        url, proc = embedded.start_redis(tmp_path / "redis")
        services.add_process(proc)
        services.add_process(
            embedded.start_worker(url, name="models-only", env=WORKER_ENV, extra_args=["-Q", "models"])
        )
        env = {**os.environ, **WORKER_ENV, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp_path / "cache")}
        proc = start(env, workflow(tmp_path, 5, "models-only"))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["counts"]["done"] == 5
        assert "no running worker takes" not in err and "again" not in err, err


def test_status_of_a_run_still_going_exits_0_until_something_of_it_failed(lab) -> None:
    """A script polling `status` tells a run that is still going from one that failed: exit 0 and
    the state `running` while nothing failed, 1 once a task failed, though the run goes on."""
    from tests.test_workflow_run import write_workflow

    env, state, tmp = lab
    wf = write_workflow(
        tmp,
        [
            {"id": "first", "description": "[delay:6] first"},
            {"id": "fails", "description": "fail here", "dependencies": ["first"]},
            {"id": "slow", "description": "[delay:15] slow"},
        ],
        name="going",
    )
    state.control.update(fail_when_contains="fail here", fail_status=400)
    run_id = cli(env, "run", str(wf), "--no-wait").stdout.strip()
    wait_for(lambda: state.in_flight >= 2, 60, "the first and slow tasks' model calls")
    going = cli(env, "status", run_id, "--json")
    shown = json.loads(going.stdout)
    assert shown["state"] == "running" and going.returncode == 0, (shown["counts"], shown.get("error"))

    def failed() -> dict[str, Any] | None:
        shown: dict[str, Any] = json.loads(cli(env, "status", run_id, "--json").stdout)
        return shown if shown["tasks"]["fails"]["status"] == "failed" else None

    wait_for(failed, 60, "the failing task to fail")
    failing = cli(env, "status", run_id)
    assert failing.returncode == 1 and "running" in failing.stdout, failing.stdout
    cli(env, "cancel", run_id)


def test_a_team_task_a_cancel_stopped_midway_shows_its_model_calls_and_its_turns(lab) -> None:
    """A cancel stops a team between turns: the task is skipped, and says what its model calls
    cost and what was said until then (it showed no tokens and no transcript)."""
    from tests.test_workflow_run import write_workflow

    env, state, tmp = lab
    wf = write_workflow(tmp, [{"id": "talk", "description": "[delay:2] talk it over", "agent": {"$ref": "duo"}}])
    run_id = cli(env, "run", str(wf), "--no-wait").stdout.strip()
    wait_for(lambda: len(state.requests) >= 1, 60, "the first speaker's answer")
    assert cli(env, "cancel", run_id).returncode == 0

    def ended() -> dict[str, Any] | None:
        task: dict[str, Any] = json.loads(cli(env, "result", run_id, "--json").stdout)["tasks"]["talk"]
        return task if task["status"] not in ("pending", "running") else None

    task = wait_for(ended, 60, "the task to end")
    assert task["status"] == "skipped" and task["reason"] == "the run was cancelled", task
    assert task["model_calls"] >= 1 and task["prompt_tokens"] > 0, task
    assert [m["source"] for m in task["transcript"]][:2] == ["user", "alice"], task["transcript"]
