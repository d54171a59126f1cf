"""A command that fails before it has a report says so on stderr, in one line per error, and with
--json also as one JSON object on stdout, whose exit code is the process's: a program reading
stdout never gets nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from producer import embedded
from tests.conftest import ROOT

pytestmark = pytest.mark.integration  # runs the program as a process, each start ~0.4 s: not the in-process fast tier

WORKFLOW = """kind: workflow
name: w
goal: g
tasks:
  - {id: a, description: d, agent: {$ref: nobody}}
  - {id: b, description: d, agent: {$ref: a}, dependencies: [zz]}
"""


def _producer(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["sync", "{tmp}/missing"], {}, 2, ["missing is not a directory"]),
        (["run", "{tmp}/missing.yaml"], {}, 2, ["missing.yaml: cannot read file"]),
        (["run", "{tmp}/fifo.yaml"], {}, 2, ["fifo.yaml: not a regular file (a FIFO); not read"]),
        (["run", "{tmp}/zero.yaml"], {}, 2, ["zero.yaml: not a regular file (a device); not read"]),
        (
            ["run", "{tmp}/wf.yaml"],
            {"MAX_FILE_BYTES": "64"},
            2,
            ["wf.yaml: file is 155 bytes, over the limit of 64 (MAX_FILE_BYTES)"],
        ),
        (["run", "{tmp}/wf.yaml"], {}, 2, ["tasks[0].agent", "tasks[1].dependencies[0]", "tasks[1].agent"]),
        (["plan", "examples"], {"STALL_SECONDS": "abc"}, 2, ["STALL_SECONDS"]),
        (["status", "r1"], {"REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}, 3, ["is unreachable"]),
        (["bench", "workflow", "--standin", "--team-sizes", "3,abc"], {}, 2, ["--team-sizes '3,abc'"]),
        (["monitor", "--refresh", "-1"], {}, 2, ["--refresh -1"]),
        (["sync", "examples", "--timeout", "nan"], {}, 2, ["--timeout nan"]),
        (["pull", "{tmp}/pulled", "--studio-url", "http://127.0.0.1:9"], {"STUDIO_RETRIES": "0"}, 3, ["unreachable"]),
        (["sync", "examples", "--gallery", "  "], {}, 2, ["--gallery '  '"]),
    ],
    ids=[
        "no such directory",
        "no such workflow",
        "a workflow that is a FIFO",
        "a workflow that is /dev/zero",
        "a workflow over MAX_FILE_BYTES",
        "a workflow with errors",
        "a bad setting",
        "no Redis",
        "a bad option",
        "a negative refresh",
        "a timeout that is no number",
        "no Studio to pull from",
        "a blank gallery name",
    ],
)
def test_a_failure_is_said_on_stderr_and_as_json_on_stdout(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, says: list[str]
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    os.mkfifo(tmp_path / "fifo.yaml")  # a read of it would wait for a writer forever
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # and of this one, never end
    args = [a.format(tmp=tmp_path) for a in args]
    plain = _producer(*args, **env)
    assert plain.returncode == code and plain.stdout == "", plain
    assert "Traceback" not in plain.stderr and "hunter2" not in plain.stderr
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == len(says) and all(line.startswith("error:") for line in lines), plain.stderr

    as_json = _producer(*args, "--json", **env)
    assert as_json.returncode == code
    said = json.loads(as_json.stdout)
    assert said["exit_code"] == code and len(said["errors"]) == len(says)
    for line, part in zip(said["errors"], says, strict=True):
        assert part in line
    assert "hunter2" not in as_json.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sync", "examples", "--timeout", "abc"], "Invalid value for '--timeout'"),
        (["sync"], "Missing argument"),
        (["nosuch"], "No such command 'nosuch'"),
        (["sync", "examples", "--nosuch"], "No such option: --nosuch"),
    ],
)
def test_a_usage_error_reaches_a_json_reader_too(args: list[str], says: str) -> None:
    plain = _producer(*args)
    assert plain.returncode == 2 and plain.stdout == "" and says in plain.stderr
    assert "Usage:" in plain.stderr  # click's own words, as Celery's users know them

    as_json = _producer(*args, "--json")
    said = json.loads(as_json.stdout)
    assert as_json.returncode == said["exit_code"] == 2 and says in said["error"]


def test_a_sync_with_no_studio_to_reach_says_so_in_one_line_and_enqueues_nothing(tmp_path: Path) -> None:
    """Every component used to fail on its own after its retries, with exit code 1."""
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    try:
        env = {"REDIS_URL": url, "STUDIO_URL": "http://127.0.0.1:9", "STUDIO_RETRIES": "0"}
        env["AGENTQ_CACHE_DIR"] = str(tmp_path / "cache")
        proc = _producer("sync", "examples", "--json", **env)
        said = json.loads(proc.stdout)
        assert proc.returncode == said["exit_code"] == 3, proc.stderr
        assert (
            said["errors"] == [said["error"]]
            and "AutoGen Studio at http://127.0.0.1:9 is not available" in said["error"]
        )
        assert "Traceback" not in proc.stderr
        assert not redis.Redis.from_url(url).llen("studio"), "nothing is enqueued"
    finally:
        embedded.stop(redis_proc)


SLOW_EXIT = """
import atexit, os, signal, sys, time
from producer import cli
atexit.register(time.sleep, 0.8)  # an exit handler outlasting the re-raising alarm (0.5 s)
signal.signal(signal.SIGTERM, cli._terminated)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
finally:
    time.sleep(0.1)  # cleanup on the way out, as the embedded services' is
"""


def test_a_terminated_command_whose_exit_is_slow_exits_with_its_code_and_no_traceback() -> None:
    """SIGTERM re-raises its exit by an alarm; once exit handlers run that alarm must not cut them
    short nor, during the interpreter's shutdown, kill the process outright."""
    done = subprocess.run([sys.executable, "-c", SLOW_EXIT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (128 + 15, "")


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (200, b'<html><div style="height:100%;width:100%">sign in</div></html>', "Prometheus' text format"),
        (200, b'{"status": true, "data": []}', "Prometheus' text format"),
        (404, b"not found", "answered 404"),
    ],
)
def test_monitor_of_a_server_that_is_not_the_exporter_says_so_with_exit_code_3(
    status: int, body: bytes, says: str
) -> None:
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = _producer("monitor", "--json", "--refresh", "0.1", "--exporter-url", url)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
        alert = json.loads(proc.stdout)["alerts"][0]
        assert alert["name"] == "ExporterUnreachable" and url in alert["summary"] and says in alert["summary"], alert
    finally:
        server.shutdown()
        server.server_close()
