"""The README's main command: no REDIS_URL, no Studio installed by hand (`--local-studio`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from producer import embedded
from tests.conftest import ROOT, wait_for
from tests.studio_proxy import StudioProxy

pytestmark = pytest.mark.integration


def test_sync_on_the_embedded_default_starts_and_stops_its_own_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STUDIO_URL")}
    env.update(AGENTQ_CACHE_DIR=str(tmp_path / "cache"), LOCAL_STUDIO_PORT=str(embedded.free_port()))
    cmd = [sys.executable, "-m", "producer.cli", "sync", "examples", "--local-studio", "--json"]

    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "No REDIS_URL set: started an embedded Redis" in first.stderr
    assert "Started a local worker" in first.stderr
    report = json.loads(first.stdout)
    assert report["counts"]["created"] == 13 and report["counts"]["failed"] == 0

    # The embedded Redis keeps its data in the cache dir: the next run is all cache hits,
    # needs no worker and sends nothing to Studio.
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["counts"]["unchanged"] == 15 and again["studio_requests"] == {}
    assert "Started a local worker" not in second.stderr

    # nothing the command started is left running
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "cache")], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def _embedded_sync(tmp_path: Path, studio: str, *args: str, **extra: str) -> tuple[psutil.Popen, list[psutil.Process]]:
    """A sync on the embedded default against a slow Studio, once its Redis and worker run and
    its first requests reached Studio; returns it and the processes it started."""
    from tests.test_studio_outage import _write_tree

    tree = tmp_path / "tree"
    _write_tree(tree, teams=60)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STUDIO_URL")}
    env.update(AGENTQ_CACHE_DIR=str(tmp_path / "cache"), STUDIO_URL=studio, STUDIO_USER_ID=f"sig-{tmp_path.name}")
    env.update(extra)
    producer = psutil.Popen(
        [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def started() -> list[psutil.Process]:
        children, names = [], []
        for child in producer.children(recursive=True):
            try:
                names.append(" ".join(child.cmdline()))
            except (psutil.ZombieProcess, psutil.NoSuchProcess):  # a short-lived probe, ended meanwhile
                continue
            children.append(child)
        return children if "celery" in " ".join(names) and "redis-server" in " ".join(names) else []

    wait_for(lambda: bool(started()) or producer.poll() is not None, 60, "the embedded Redis and worker")
    assert producer.poll() is None, producer.communicate()
    return producer, started()


def _gone(procs: list[psutil.Process], timeout: float) -> list[str]:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [" ".join(p.cmdline()[:4]) for p in alive]


def test_a_terminated_command_stops_what_it_started(studio_url: str, tmp_path: Path) -> None:
    """SIGTERM (`kill`, `timeout`, CI) ends the command as Ctrl-C does; its worker and Redis go with it."""
    proxy = StudioProxy(studio_url)
    proxy.delay = 0.3  # a sync that lasts while the signal comes
    started: list[psutil.Process] = []
    try:
        producer, started = _embedded_sync(tmp_path, proxy.url)
        # the workers' requests, not the producer's version check: the command waits for its run
        wait_for(lambda: any(r[1] != "/api/version" for r in proxy.requests), 60, "the run to reach Studio")
        producer.send_signal(signal.SIGTERM)
        _, err = producer.communicate(timeout=60)
        assert producer.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
        assert "interrupted: run " in err and "stops with the embedded Redis" in err, err  # as Ctrl-C says it
        assert _gone(started, 30) == []
    finally:
        _stop(started)
        proxy.close()


def test_nothing_outlives_a_command_killed_outright(studio_url: str, tmp_path: Path) -> None:
    """SIGKILL leaves the command no time to stop anything: its worker and Redis stop themselves
    (on Linux, where the kernel tells them; elsewhere the worker notices)."""
    proxy = StudioProxy(studio_url)
    proxy.delay = 0.3
    started: list[psutil.Process] = []
    try:
        producer, started = _embedded_sync(tmp_path, proxy.url)
        producer.kill()
        producer.communicate(timeout=30)
        expected = (
            started if embedded.setpriv_with_pdeathsig() else [p for p in started if "celery" in " ".join(p.cmdline())]
        )
        assert _gone(expected, 30) == []
    finally:
        _stop(started)
        proxy.close()


def _stop(procs: list[psutil.Process]) -> None:
    """What a test's command left running, stopped by PID."""
    for p in procs:
        if p.is_running():
            p.kill()


def test_the_embedded_default_is_observable_while_it_runs(studio_url: str, tmp_path: Path) -> None:
    """It starts the exporter beside its worker: `producer monitor` and a scrape see the run."""
    import httpx

    proxy = StudioProxy(studio_url)
    proxy.delay = 0.3
    # the run's writes wait until `monitor` has looked: the command (and its exporter) is still there
    looked = threading.Event()
    proxy.before = lambda method, path, body: looked.wait(120) if method == "POST" else None
    port = embedded.free_port()
    started: list[psutil.Process] = []
    try:
        # the Studio given by flag, not the environment's: the exporter probed the environment's (down)
        producer, started = _embedded_sync(
            tmp_path, "http://127.0.0.1:9", "--studio-url", proxy.url, EXPORTER_PORT=str(port)
        )

        def scraped() -> str:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return ""

        metrics = wait_for(
            lambda: "celery_worker_up{" in scraped() and scraped(), 60, "the embedded exporter to hear the worker"
        )
        assert "agentq_" in metrics
        wait_for(lambda: "agentq_studio_up 1.0" in scraped(), 60, "the exporter to find the command's Studio up")
        # `producer monitor` in another terminal, with the same settings, sees the worker: no ExporterUnreachable
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EXPORTER_URL")}
        monitor = subprocess.run(
            [sys.executable, "-m", "producer.cli", "monitor", "--json", "--refresh", "0.5"],
            cwd=ROOT,
            env={**env, "EXPORTER_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert monitor.returncode == 0, monitor.stderr
        reading = json.loads(monitor.stdout)
        assert not [a for a in reading["alerts"] if a["name"] == "ExporterUnreachable"], reading["alerts"]
        assert any(w["up"] for w in reading["workers"].values()), reading["workers"]
        looked.set()
        _, err = producer.communicate(timeout=120)
        assert f"http://127.0.0.1:{port}/metrics" in err and "Traceback" not in err, err
        wait_for(lambda: not scraped(), 30, "the exporter to stop with the command")
    finally:
        looked.set()
        _stop(started)
        proxy.close()


def test_flower_on_the_embedded_default_asks_for_the_password_kept_for_the_user(
    studio_url: str, tmp_path: Path
) -> None:
    """`sync --flower`: Flower beside the embedded worker, open to whoever has the password in the
    cache dir's flower.auth (mode 0600), closed to others; the password is never printed; it stops
    with the command."""
    import httpx

    proxy = StudioProxy(studio_url)
    proxy.delay = 2.0  # the sync lasts until Flower is seen (a loaded machine starts it in seconds)
    port = embedded.free_port()
    started: list[psutil.Process] = []
    base = f"http://127.0.0.1:{port}"

    def answers(auth: tuple[str, str] | None = None) -> int | None:
        try:
            return httpx.get(f"{base}/api/workers", auth=auth, timeout=2).status_code
        except httpx.HTTPError:
            return None

    try:
        producer, started = _embedded_sync(tmp_path, proxy.url, "--flower", FLOWER_PORT=str(port))
        wait_for(lambda: answers() is not None, 60, "Flower to answer")
        saved = tmp_path / "cache" / "flower.auth"
        assert saved.stat().st_mode & 0o777 == 0o600
        user, password = saved.read_text().strip().split(":", 1)
        assert answers() == 401 and answers((user, "wrong")) == 401
        assert answers((user, password)) == 200
        proxy.delay = 0.0
        out, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err
        assert f"Flower at {base}" in err and password not in err + out
        wait_for(lambda: answers() is None, 30, "Flower to stop with the command")
    finally:
        _stop(started)
        proxy.close()


def test_flower_is_refused_beside_a_configured_redis(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "sync", str(tmp_path), "--flower", "--json"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--flower needs the embedded default" in proc.stderr and "Traceback" not in proc.stderr
    assert "--flower needs the embedded default" in json.loads(proc.stdout)["error"]


def test_a_variable_that_is_no_secret_changes_what_is_synced_and_run(studio_url: str, standin, tmp_path: Path) -> None:
    """`${MODEL}` set to another value is another component: the sync writes the rows again and a
    cached task runs again; the same value again is no change. (The embedded default: its worker
    has the command's environment.)"""
    from tests.conftest import TEST_SECRET, StudioView
    from tests.test_workflow_run import agent_doc, model_doc, write_docs, write_workflow

    url, _ = standin
    tree = tmp_path / "tree"
    model = model_doc("m", url, model="${AGENTQ_PLAIN_MODEL:-first-model}")
    team = {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "label": "t",
        "config": {"participants": [{"$ref": "alice"}], "max_turns": 1},
    }
    write_docs(tree, {"models/m.yaml": model, "agents/a.yaml": agent_doc("alice"), "teams/t.yaml": team})
    wf = write_workflow(tree, [{"id": "ask", "description": "which model", "agent": {"$ref": "alice"}}])
    user = f"plain-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STUDIO_URL", "AGENTQ_PLAIN_MODEL")}
    env.update(AGENTQ_CACHE_DIR=str(tmp_path / "cache"), STUDIO_URL=studio_url, STUDIO_USER_ID=user)
    env.update(AGENTQ_TEST_SECRET=TEST_SECRET)

    def command(*args: str, **extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "producer.cli", *args, "--json"],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def the_model_in_studio() -> str:
        (row,) = StudioView(studio_url, user).teams_by_label()["t"]
        return row["component"]["config"]["participants"][0]["config"]["model_client"]["config"]["model"]

    assert command("sync", str(tree))["counts"]["created"] >= 2
    assert the_model_in_studio() == "first-model"
    assert command("sync", str(tree), AGENTQ_PLAIN_MODEL="first-model")["counts"]["unchanged"] >= 3
    changed = command("sync", str(tree), AGENTQ_PLAIN_MODEL="second-model")
    assert changed["counts"]["updated"] >= 1 and the_model_in_studio() == "second-model", changed["counts"]
    again = command("sync", str(tree), AGENTQ_PLAIN_MODEL="second-model")
    assert again["counts"]["unchanged"] == 3 and again["studio_requests"] == {}, again["counts"]

    first = command("run", str(wf))["tasks"]["ask"]
    assert "first-model" in first["output"]  # the stand-in names the model it was asked as
    assert command("run", str(wf))["tasks"]["ask"]["status"] == "cached"
    other = command("run", str(wf), AGENTQ_PLAIN_MODEL="second-model")["tasks"]["ask"]
    assert other["status"] == "done" and "second-model" in other["output"], other


def test_a_stand_in_port_another_server_holds_is_said_and_a_free_one_gets_a_stand_in_of_its_own(
    tmp_path: Path,
) -> None:
    """A second `run --standin-llm` beside a first said it had started a stand-in while its own had
    died on the taken port: its tasks were answered by the first command's, then refused once
    that command ended and stopped it."""
    from producer.standin_llm import ThreadedStandIn

    held = ThreadedStandIn()  # another command's stand-in on the port
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL")}
        env.update(AGENTQ_CACHE_DIR=str(tmp_path / "cache"), STANDIN_LLM_PORT=str(held.port))
        wf = ROOT / "examples" / "workflows" / "research.yaml"
        cmd = [sys.executable, "-m", "producer.cli", "run", str(wf), "--standin-llm", "--json"]
        refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 3, refused.stderr
        assert f"port {held.port} is in use" in refused.stderr and "STANDIN_LLM_PORT" in refused.stderr
        assert "Started the stand-in" not in refused.stderr and "Traceback" not in refused.stderr
        assert json.loads(refused.stdout)["exit_code"] == 3
    finally:
        held.stop()
    port = embedded.free_port()
    own = embedded.start_standin_llm(port)
    try:
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/_stats", timeout=5).json()["pid"] == own.pid
    finally:
        embedded.stop(own)


def test_a_stand_in_on_another_port_answers_the_examples_models_on_the_embedded_default(tmp_path: Path) -> None:
    """With STANDIN_LLM_PORT set and LOCAL_LLM_BASE_URL not, the stand-in started on the new port
    while every model asked the old one: each task failed "could not connect", or someone else's
    server on that port answered."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL", "LOCAL_LLM_BASE_URL")}
    env.update(AGENTQ_CACHE_DIR=str(tmp_path / "cache"), STANDIN_LLM_PORT=str(embedded.free_port()))
    env.update(EXPORTER_PORT=str(embedded.free_port()))
    wf = ROOT / "examples" / "workflows" / "research.yaml"
    cmd = [sys.executable, "-m", "producer.cli", "run", str(wf), "--standin-llm", "--no-cache", "--json"]
    ran = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert {t["status"] for t in json.loads(ran.stdout)["tasks"].values()} == {"done"}


def test_a_redis_port_another_server_took_first_is_not_taken_for_ours(tmp_path: Path) -> None:
    """A free port is picked, then bound by the server: another server can take it in between
    (parallel tests, two commands). Ours then exits, and its readiness check must not take the
    other one's answer for it: the caller would use a Redis that goes when its owner stops it."""
    url, other = embedded.start_redis(tmp_path / "other")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        with pytest.raises(embedded.ServiceError, match=f"redis-server on port {port}"):
            embedded.start_redis(tmp_path / "ours", port=port)
    finally:
        embedded.stop(other)


def test_a_studio_port_another_server_took_while_ours_started_is_not_taken_for_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Studio takes seconds to bind its port: another server that binds it first (another test's
    Studio, another command's) answered the readiness check for ours, which had exited."""
    import http.server

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": true}')

        def log_message(self, *_args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    monkeypatch.setattr(embedded, "port_free", lambda _port: True)  # it was free when looked at
    try:
        with pytest.raises(embedded.ServiceError, match="autogenstudio exited"):
            embedded.start_studio(tmp_path / "studio", port=other.server_address[1])
    finally:
        other.shutdown()
