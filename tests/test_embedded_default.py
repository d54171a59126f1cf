"""The README's main command: no REDIS_URL, no Studio installed by hand (`--local-studio`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from producer import embedded
from tests.conftest import ROOT

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
