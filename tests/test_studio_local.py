"""A local Studio you can look at: `producer studio up` keeps one running on LOCAL_STUDIO_PORT with
the database `--local-studio` uses, the commands that talk to Studio find it, `down` stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from producer import embedded
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def test_studio_up_status_down_and_local_studio_reuses_it(tmp_path: Path) -> None:
    port = embedded.free_port()
    env = {**os.environ, "AGENTQ_CACHE_DIR": str(tmp_path / "cache"), "LOCAL_STUDIO_PORT": str(port)}
    env.pop("REDIS_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args], env=env, capture_output=True, text=True, timeout=180
        )

    pid = None
    try:
        assert cli("studio", "status", "--json").returncode == 3
        up = cli("studio", "up", "--json")
        assert up.returncode == 0, up.stderr
        started = json.loads(up.stdout)
        pid = started["pid"]
        assert started["started"] and started["url"] == f"http://127.0.0.1:{port}"
        assert started["database"] == str(tmp_path / "cache" / "studio" / "ags.db")
        assert httpx.get(f"{started['url']}/api/health").status_code == 200  # it outlived `up`
        again = json.loads(cli("studio", "up", "--json").stdout)
        assert again["pid"] == pid and not again["started"]
        assert json.loads(cli("studio", "status", "--json").stdout) == {
            "running": True,
            "url": started["url"],
            "pid": pid,
        }

        tree = tmp_path / "tree"
        (tree / "agents").mkdir(parents=True)
        plan = cli("plan", str(tree), "--local-studio")
        assert plan.returncode == 0, plan.stderr
        assert f"Using the local AutoGen Studio at {started['url']}" in plan.stderr

        # another user (another cache dir) on the same port: that Studio is not theirs to write into
        env["AGENTQ_CACHE_DIR"] = str(tmp_path / "other")
        for args in (("studio", "up", "--json"), ("plan", str(tree), "--local-studio", "--json")):
            refused = cli(*args)
            assert refused.returncode == 3 and f"port {port} is in use" in json.loads(refused.stdout)["error"]
        # their record naming that Studio's PID by hand: neither reported as theirs nor stopped
        (tmp_path / "other" / "studio").mkdir(parents=True, exist_ok=True)
        (tmp_path / "other" / "studio" / "studio.json").write_text(json.dumps({"pid": pid, "url": started["url"]}))
        assert cli("studio", "status").returncode == 3
        assert json.loads(cli("studio", "down", "--json").stdout)["stopped"] is False
        assert psutil.pid_exists(pid) and httpx.get(f"{started['url']}/api/health").status_code == 200
        env["AGENTQ_CACHE_DIR"] = str(tmp_path / "cache")

        down = cli("studio", "down", "--json")
        assert json.loads(down.stdout) == {"stopped": True, "pid": pid}
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 30, "Studio to stop")
        assert cli("studio", "status").returncode == 3
        assert json.loads(cli("studio", "down", "--json").stdout)["stopped"] is False
    finally:
        if pid is not None and psutil.pid_exists(pid):
            psutil.Process(pid).kill()


def test_a_studio_is_known_by_its_exact_command_line_and_a_named_binary_must_exist(tmp_path: Path) -> None:
    app_dir = tmp_path / "studio"
    real = ["/venv/bin/python", "/venv/bin/autogenstudio", "ui", "--port", "8081", "--appdir", str(app_dir)]
    assert embedded._studio_on(real, app_dir)
    assert embedded._studio_on(real[1:], app_dir)
    # a python named autogenstudio serving a folder whose path holds the app dir's
    forged = ["/x/autogenstudio", "-m", "http.server", "--directory", f"{app_dir}-foreign/srv"]
    assert not embedded._studio_on(forged, app_dir)
    assert not embedded._studio_on([*real[:-1], f"{app_dir}-foreign"], app_dir)
    assert not embedded._studio_on([*real[:-1]], app_dir)  # --appdir last, with no value
    with pytest.raises(embedded.ServiceError, match="AUTOGENSTUDIO_BIN=/nonexistent: no such file"):
        embedded.studio_binary("/nonexistent")
