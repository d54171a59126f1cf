"""`producer monitor` driven in tmux against a real exporter, Redis and workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from producer import embedded
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux not installed (scripts/install.sh installs it)"
)


def test_monitor_shows_workers_queues_and_an_induced_alert(redis_url: str, worker, tmp_path: Path) -> None:
    port = embedded.free_port()
    closed = embedded.free_port()  # nothing listens here: Studio is "down", the induced alert
    exporter = embedded.start_exporter(
        redis_url,
        port,
        env={
            "STUDIO_URL": f"http://127.0.0.1:{closed}",
            "STUDIO_PROBE_INTERVAL_SECONDS": "0.5",
            "EXPORTER_QUEUES": "celery,backlog",
        },
    )
    r = redis.Redis.from_url(redis_url)
    r.delete("backlog")
    r.rpush("backlog", *[f"m{i}" for i in range(7)])
    session = f"agentq-{uuid.uuid4().hex[:6]}"
    saved = tmp_path / "session.json"
    cmd = (
        f"cd {ROOT} && env -u COLUMNS -u LINES {sys.executable} -m producer.cli monitor --refresh 1 --save-session {saved} "
        f"--exporter-url http://127.0.0.1:{port} --redis-url {redis_url}"
    )
    try:
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "220", "-y", "70", cmd], check=True)

        def showing() -> str | None:
            text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            # the worker up: heard by the exporter (its heartbeats), not only seen in Redis
            worker_up = any("test-" in line and " up " in f"{line} " for line in text.splitlines())
            return text if "StudioDown" in text and "backlog" in text and worker_up else None

        screen = wait_for(showing, 30, "the monitor to show the worker, the backlog and StudioDown", interval=0.5)
        assert "agentq monitor" in screen
        assert "test-" in screen, screen  # the session's worker, by node name
        assert any("backlog" in line and "7" in line for line in screen.splitlines()), screen
        assert "StudioDown" in screen and "Studio: DOWN" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        wait_for(saved.exists, 15, "the session file to be saved on Ctrl-C", interval=0.2)
        data = json.loads(saved.read_text())
        last = data["snapshots"][-1]
        assert last["queues"]["backlog"] == 7
        assert any(name.startswith("test-") and w["up"] for name, w in last["workers"].items())
        assert any(a["name"] == "StudioDown" and a["severity"] == "critical" for a in last["alerts"])
        assert data["thresholds"]["cpu"] == 80.0

        # --json: one reading for a script, the same facts
        once = subprocess.run(
            [sys.executable, "-m", "producer.cli", "monitor", "--json", "--refresh", "0.5"]
            + ["--exporter-url", f"http://127.0.0.1:{port}", "--redis-url", redis_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert once.returncode == 0, once.stderr
        reading = json.loads(once.stdout)
        assert reading["queues"]["backlog"] == 7 and any(a["name"] == "StudioDown" for a in reading["alerts"])
        assert isinstance(reading["recent_runs"], list)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        embedded.stop(exporter)
        r.delete("backlog")
