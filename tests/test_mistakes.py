"""The first hour: every command says what happened.

A matrix of mistaken invocations, each run as a user runs it (`python3 -m producer.cli ...` in a
folder of their own), plain and with --json. For each, the README's contract ("Exit codes"):

- the exit code says what kind of failure it was (2 bad input or usage, 3 a service that could
  not be reached, ...), never 0 for nonsense and never 1 for a crash;
- at most three lines on stderr, naming the offending path, id, option or URL;
- with --json, stdout is one JSON object with "error" and "exit_code" (the process's);
- no traceback, anywhere;
- nothing written: the folder the command ran in, its cache dir and its TMPDIR are the same
  before and after a refusal (the scanner's stat cache aside: WRITES_ALLOWED).

A few invocations are no mistake, yet misbehaved (a traceback, or silence): those cases say what
they must print instead (`status` of a workflow run; `sync` of a folder with nothing to sync).

These tests describe the target behaviour; the ones that fail are the to-do list. Each case is
its own test id, `<family>-<what>-<plain|json>`; the families are the issue's: `traceback` (a
traceback today), `nonsense` (success on nonsense), `message` (a wrong or vague message), `usage`
(unknown ids, bad values, usage errors). Every invocation is a subprocess in a folder of its own;
the module starts them all at once on a few threads (fixture `ran`), so it takes about a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer import embedded
from producer.standin_llm import ThreadedStandIn
from tests.conftest import ROOT, TEST_SECRET
from tests.test_workflow_run import agent_doc, model_doc, write_docs, write_tree, write_workflow

pytestmark = pytest.mark.integration

# Variables of the caller's shell that would point a command elsewhere than this test says.
FOREIGN_ENV = (
    "REDIS_URL",
    "BROKER_URL",
    "STUDIO_URL",
    "STUDIO_USER_ID",
    "STUDIO_TOKEN",
    "EXPORTER_URL",
    "AGENTQ_CACHE_DIR",
    "CELERY_CONFIG_MODULE",
    "OPENAI_API_KEY",
)
MAX_STDERR_LINES = 3
DEFAULT_TIMEOUT = 60.0
PARALLEL = 6  # invocations at once; most of a slow one's time is a wait on a service


# --------------------------------------------------------------------------------------------
# Services shared by the module: a closed port, a "Studio" that answers HTML, a workflow run
# and a sync run (both real, made once).


class _HtmlEverywhere(BaseHTTPRequestHandler):
    """A proxy's login page, or the wrong server: 200 and HTML for any method and path."""

    PAGE = b"<!doctype html><html><head><title>Sign in</title></head><body><form>Sign in</form></body></html>"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.PAGE)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.PAGE)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Shared:
    redis_url: str
    closed_url: str  # nothing listens there
    closed_port: int
    html_url: str  # answers every request with an HTML page
    workflow_run: str
    sync_run: str
    standin_url: str


@pytest.fixture(scope="module")
def html_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
    thread = threading.Thread(target=server.serve_forever, name="html-studio", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    """The stand-in endpoint (as the `standin` fixture starts it), for the whole module."""
    server = ThreadedStandIn()
    yield server.url
    server.stop()


def _producer(args: list[str], env: dict[str, str], cwd: Path, timeout: float = DEFAULT_TIMEOUT) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _base_env(redis_url: str, studio_url: str, cache_dir: Path, tmp_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(
        {
            # the checkout under test, whatever is installed
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "REDIS_URL": redis_url,
            "STUDIO_URL": studio_url,
            "STUDIO_USER_ID": f"mistakes-{uuid.uuid4().hex[:8]}",
            "AGENTQ_CACHE_DIR": str(cache_dir),
            "AGENTQ_TEST_SECRET": TEST_SECRET,
            "TMPDIR": str(tmp_dir),
            "COLUMNS": "120",
        }
    )
    return env


@pytest.fixture(scope="module")
def shared(
    redis_url: str,
    worker: subprocess.Popen[bytes],
    html_url: str,
    standin_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Shared:
    """One real workflow run (on the stand-in) and one real sync run (of a tree whose only file is
    invalid, so it needs no Studio), made once for every case that names a run."""
    home = tmp_path_factory.mktemp("mistakes-runs")
    closed_port = embedded.free_port()
    closed_url = f"http://127.0.0.1:{closed_port}"
    env = _base_env(redis_url, closed_url, home / "cache", home)

    wf_tree = home / "wf-tree"
    write_tree(wf_tree, standin_url)
    wf = write_workflow(wf_tree, [{"id": "only", "description": "say something"}])
    ran = _producer(["run", str(wf), "--json"], env, home, timeout=120)
    assert ran.returncode == 0, f"the shared workflow run failed\n{ran.stdout}\n{ran.stderr}"
    workflow_run = json.loads(ran.stdout)["run_id"]

    components = home / "components"
    components.mkdir()
    (components / "half.yaml").write_text("component_type: model\nlabel: half\n")
    synced = _producer(["sync", str(components), "--json"], env, home, timeout=120)
    assert synced.returncode == 1, f"the shared sync run did not end as expected\n{synced.stdout}\n{synced.stderr}"
    sync_run = json.loads(synced.stdout)["run_id"]
    assert sync_run, synced.stdout
    return Shared(redis_url, closed_url, closed_port, html_url, workflow_run, sync_run, standin_url)


# --------------------------------------------------------------------------------------------
# The user's folder: every case runs in a fresh one holding the same things.


def _result_set(kind: str, measures: dict[str, list[float]]) -> dict[str, Any]:
    """A result set as producer/bench.py save() writes it (result.json in a folder)."""
    return {
        "kind": kind,
        "parameters": {"iterations": 3, "warmup": 1},
        "versions": {"agentq": "0"},
        "machine": {"cpus": 4},
        "measures": measures,
        "task_seconds": {},
        "request_latency": {},
        "resources": [],
        "peak_rss_mb": 100.0,
        "facts": {},
    }


def make_workspace(base: Path, standin_url: str) -> Path:
    """The folder a user works in (the command's cwd), with a tree, result sets and odd files."""
    cwd = base / "work"
    cwd.mkdir(parents=True)
    # a tree with a model `m`, an agent `alice`, a good workflow and one naming an unknown agent
    tree = cwd / "team-tree"
    write_docs(
        tree,
        {
            "models/m.yaml": model_doc("m", standin_url),
            "agents/alice.yaml": agent_doc("alice"),
        },
    )
    write_workflow(tree, [{"id": "only", "description": "say something"}], name="wf")
    write_workflow(tree, [{"id": "ghostly", "description": "x", "agent": {"$ref": "nobody-here"}}], name="ghost")
    # folders with nothing to sync
    (cwd / "empty-folder").mkdir()
    only = cwd / "only-workflow"
    write_workflow(only, [{"id": "only", "description": "say something", "agent": {"$ref": "alice"}}], name="lonely")
    hidden = cwd / "only-hidden"
    hidden.mkdir()
    (hidden / ".draft.yaml").write_text(yaml.safe_dump(model_doc("draft", standin_url)))
    # result sets, as bench writes them
    (cwd / "wf-results").mkdir()
    (cwd / "wf-results" / "result.json").write_text(
        json.dumps(
            _result_set(
                "workflow",
                {"team1.parallel.wall_seconds": [1.0, 1.1, 0.9], "team1.parallel.cpu_seconds": [0.2, 0.3, 0.2]},
            )
        )
    )
    (cwd / "studio-results").mkdir()
    (cwd / "studio-results" / "result.json").write_text(
        json.dumps(
            _result_set("studio", {"connect.health_seconds": [0.01, 0.02, 0.01], "scan.cold_seconds": [0.5, 0.4, 0.6]})
        )
    )
    # files that are not what a command expects
    (cwd / "not-json.json").write_text("this is { not JSON\n")
    (cwd / "binary.json").write_bytes(bytes(range(256)) * 4)
    (cwd / "array.json").write_text("[1, 2, 3]\n")
    (cwd / "object.json").write_text('{"hello": "world"}\n')
    (cwd / "empty.yaml").write_text("")
    (cwd / "broken.yaml").write_text("kind: workflow\nname: [unclosed\ntasks:\n  - id: a\n")
    (cwd / "existing.txt").write_text("keep me\n")
    (cwd / "existing-dir").mkdir()
    (cwd / "existing-dir" / "keep.txt").write_text("keep me too\n")
    return cwd


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under root: its kind, size and content digest."""
    seen: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            seen[str(p.relative_to(root))] = ("dir", 0, "")
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                seen[str(p.relative_to(root))] = ("other", 0, "")
                continue
            data = p.read_bytes()
            seen[str(p.relative_to(root))] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return seen


# The scanner's stat cache (README, "How it works": AGENTQ_CACHE_DIR/scan-*) is written by any
# command that read the tree, refused or not; it only saves the next command reading the files
# again. Everything else under the folder, the cache dir and TMPDIR must stay as it was. (An empty
# tuple here makes the check strict: `run` of a workflow naming an unknown agent and `sync` with
# Studio down then fail on it.)
WRITES_ALLOWED = ("cache/scan-",)


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    found = [f"+{p}" for p in added] + [f"-{p}" for p in removed] + [f"~{p}" for p in changed]
    return [d for d in found if not d[1:].startswith(WRITES_ALLOWED)]


# --------------------------------------------------------------------------------------------
# The cases


Says = tuple[str | tuple[str, ...], ...]  # each item must appear; a tuple: one of them must


@dataclass(frozen=True)
class Mistake:
    name: str
    args: tuple[str, ...]
    code: int
    says: Says  # in the stderr lines (and in the JSON's "error")
    env: dict[str, str] = field(default_factory=dict)  # {closed}, {html} ... are filled in
    unset: tuple[str, ...] = ()
    max_lines: int = MAX_STDERR_LINES
    max_seconds: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    json_in_args: bool = False  # the mistake is --json itself: the plain variant has it too


def M(name: str, *args: str, code: int = 2, says: Says = (), **kw: Any) -> Mistake:
    return Mistake(name, tuple(args), code, says, **kw)


WF = "team-tree/workflows/wf.yaml"
QUICK_BENCH = ("--team-sizes", "1", "--modes", "parallel", "--iterations", "1", "--warmup", "0")
GOAL = "Compare two task queues"
TEAM = ("team", GOAL, "--model", "m", "--tree", "team-tree")  # a team of the workspace's model

FAMILIES: dict[str, list[Mistake]] = {
    # 1. A traceback today.
    "traceback": [
        M("bench-report-of-a-missing-folder", "bench", "report", "no-such-results", says=("no-such-results",)),
        M("bench-report-of-an-empty-folder", "bench", "report", "empty-folder", says=("empty-folder",)),
        M("bench-report-of-a-file-that-is-not-json", "bench", "report", "not-json.json", says=("not-json.json",)),
        M("bench-report-of-a-binary-file", "bench", "report", "binary.json", says=("binary.json",)),
        M("bench-report-of-a-json-array", "bench", "report", "array.json", says=("array.json",)),
        M(
            "bench-report-of-a-json-object-that-is-no-result-set",
            "bench",
            "report",
            "object.json",
            says=("object.json",),
        ),
        M(
            "bench-report-of-a-good-set-and-a-missing-one",
            "bench",
            "report",
            "wf-results",
            "no-such-results",
            says=("no-such-results",),
        ),
        M(
            "bench-compare-of-a-missing-folder",
            "bench",
            "compare",
            "no-such-results",
            "wf-results",
            says=("no-such-results",),
        ),
        M(
            "bench-compare-with-a-missing-folder",
            "bench",
            "compare",
            "wf-results",
            "no-such-results",
            says=("no-such-results",),
        ),
        M("bench-compare-of-an-empty-folder", "bench", "compare", "empty-folder", "wf-results", says=("empty-folder",)),
        M(
            "bench-compare-of-a-file-that-is-not-json",
            "bench",
            "compare",
            "not-json.json",
            "wf-results",
            says=("not-json.json",),
        ),
        M("bench-compare-of-a-binary-file", "bench", "compare", "wf-results", "binary.json", says=("binary.json",)),
        M("bench-compare-of-a-json-array", "bench", "compare", "array.json", "wf-results", says=("array.json",)),
        M(
            "bench-compare-of-a-json-object-that-is-no-result-set",
            "bench",
            "compare",
            "wf-results",
            "object.json",
            says=("object.json",),
        ),
        M(
            "bench-report-out-an-existing-file",
            "bench",
            "report",
            "wf-results",
            "--out",
            "existing.txt",
            says=("existing.txt",),
        ),
        M(
            "bench-report-out-below-a-file",
            "bench",
            "report",
            "wf-results",
            "--out",
            "existing.txt/report",
            says=("existing.txt",),
        ),
        M(
            "bench-workflow-out-an-existing-file",
            "bench",
            "workflow",
            "--standin",
            *QUICK_BENCH,
            "--out",
            "existing.txt",
            says=("existing.txt",),
        ),
        M(
            "team-write-an-existing-folder",
            *TEAM,
            "--write",
            "existing-dir",
            says=("existing-dir",),
        ),
        M(
            "team-write-below-a-file",
            *TEAM,
            "--write",
            "existing.txt/wf.yaml",
            says=("existing.txt",),
        ),
    ],
    # 2. Success (exit 0) on nonsense today.
    "nonsense": [
        M(
            "bench-compare-a-studio-set-with-a-workflow-set",
            "bench",
            "compare",
            "studio-results",
            "wf-results",
            says=("studio", "workflow"),
        ),
        M(
            "bench-compare-fail-on-regression-negative",
            "bench",
            "compare",
            "wf-results",
            "wf-results",
            "--fail-on-regression",
            "-5",
            says=("--fail-on-regression",),
        ),
        M(
            "team-with-an-unknown-model",
            "team",
            GOAL,
            "--model",
            "nosuchmodel",
            "--tree",
            "team-tree",
            says=("nosuchmodel",),
        ),
        M("team-with-an-agent-for-a-model", "team", GOAL, "--model", "alice", "--tree", "team-tree", says=("alice",)),
        M(
            "team-write-over-a-hand-written-workflow",
            *TEAM,
            "--write",
            WF,
            says=("wf.yaml", "--force"),
        ),
        M("team-with-a-blank-goal", "team", "  ", "--model", "m", "--tree", "team-tree", says=(("goal", "GOAL"),)),
        M("team-with-an-empty-goal", "team", "", "--model", "m", "--tree", "team-tree", says=(("goal", "GOAL"),)),
        M("team-with-a-blank-model", "team", GOAL, "--model", "  ", "--tree", "team-tree", says=("--model",)),
        M(
            "team-with-a-blank-name",
            *TEAM,
            "--name",
            "  ",
            says=("--name",),
        ),
        M(
            "bench-workflow-modes-fast",
            "bench",
            "workflow",
            "--standin",
            "--team-sizes",
            "1",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--modes",
            "fast",
            "--out",
            "bench-out",
            says=("--modes", "fast"),
        ),
        M(
            "bench-workflow-modes-empty",
            "bench",
            "workflow",
            "--standin",
            "--team-sizes",
            "1",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--modes",
            ",",
            "--out",
            "bench-out",
            says=("--modes",),
        ),
        M(
            "bench-workflow-latency-nonsense",
            "bench",
            "workflow",
            "--standin",
            *QUICK_BENCH,
            "--latency",
            "quick",
            "--out",
            "bench-out",
            says=("--latency", "quick"),
        ),
        M(
            "bench-workflow-model-label-not-in-tree",
            "bench",
            "workflow",
            "--model",
            "nosuchmodel",
            "--tree",
            "team-tree",
            *QUICK_BENCH,
            "--out",
            "bench-out",
            says=("nosuchmodel",),
        ),
        M(
            "result-json-and-markdown",
            "result",
            "{workflow_run}",
            "--markdown",
            "--json",
            says=("--json", "--markdown"),
            json_in_args=True,
        ),
    ],
    # 3. A wrong or vague message today.
    "message": [
        M("run-with-a-missing-tree", "run", WF, "--tree", "no-such-tree", says=("no-such-tree",)),
        M("run-with-a-file-for-a-tree", "run", WF, "--tree", "existing.txt", says=("existing.txt",)),
        M(
            "run-of-a-component-file",
            "run",
            "team-tree/models/m.yaml",
            says=("m.yaml", "component", "workflow"),
            max_lines=1,
        ),
        M("run-of-a-folder", "run", "team-tree", says=("team-tree",)),
        M("run-of-a-missing-file", "run", "no-such-wf.yaml", says=("no-such-wf.yaml",)),
        M("run-of-an-empty-file", "run", "empty.yaml", says=("empty.yaml",)),
        M("run-of-a-binary-file", "run", "binary.json", says=("binary.json",)),
        M("run-of-a-json-array", "run", "array.json", says=("array.json",)),
        M("run-of-malformed-yaml", "run", "broken.yaml", says=("broken.yaml",)),
        M("run-of-a-workflow-with-an-unknown-agent", "run", "team-tree/workflows/ghost.yaml", says=("nobody-here",)),
        M("pull-with-studio-down", "pull", "pulled", code=3, says=("127.0.0.1:{closed_port}",)),
        M(
            "pull-from-a-studio-answering-html",
            "pull",
            "pulled",
            code=3,
            says=("{html}",),
            env={"STUDIO_URL": "{html}"},
            max_lines=1,
            max_seconds=20,
        ),
        M(
            "bench-studio-against-a-closed-studio",
            "bench",
            "studio",
            "team-tree",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--out",
            "bench-out",
            code=3,
            says=("127.0.0.1:{closed_port}",),
        ),
        M(
            "bench-studio-against-a-studio-answering-html",
            "bench",
            "studio",
            "team-tree",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--out",
            "bench-out",
            code=3,
            says=("{html}",),
            env={"STUDIO_URL": "{html}"},
            max_seconds=20,
        ),
        M("sync-against-a-closed-studio", "sync", "team-tree", code=3, says=("127.0.0.1:{closed_port}",), max_lines=1),
        M(
            "sync-against-a-studio-answering-html",
            "sync",
            "team-tree",
            code=3,
            says=("{html}",),
            env={"STUDIO_URL": "{html}"},
            max_lines=1,
            max_seconds=20,
            timeout=30,
        ),
    ],
    # 4. Unknown ids, bad values, usage errors.
    "usage": [
        M("status-of-an-unknown-run", "status", "no-such-run-4711", says=("no-such-run-4711",)),
        M("result-of-an-unknown-run", "result", "no-such-run-4711", says=("no-such-run-4711",)),
        M("status-of-a-run-id-that-is-a-glob", "status", "*", says=("*",)),
        M("result-of-a-blank-run-id", "result", "  ", says=(("blank", "empty", "' '", "'  '"),)),
        M(
            "result-markdown-of-a-sync-run",
            "result",
            "{sync_run}",
            "--markdown",
            says=("--markdown", ("{sync_run}", "--json")),
        ),
        M(
            "status-with-redis-down",
            "status",
            "no-such-run-4711",
            code=3,
            says=("127.0.0.1:{closed_port}",),
            env={"REDIS_URL": "redis://127.0.0.1:{closed_port}/0", "REDIS_OUTAGE_SECONDS": "1"},
            max_lines=1,
        ),
        M(
            "status-with-a-redis-url-without-scheme",
            "status",
            "no-such-run-4711",
            says=(("REDIS_URL", "127.0.0.1:{closed_port}"),),
            env={"REDIS_URL": "127.0.0.1:{closed_port}"},
        ),
        M(
            "sync-with-a-studio-url-without-scheme",
            "sync",
            "team-tree",
            says=(("STUDIO_URL", "localhost:{closed_port}"),),
            env={"STUDIO_URL": "localhost:{closed_port}"},
        ),
        M(
            "sync-with-a-broker-but-no-redis",
            "sync",
            "team-tree",
            says=("BROKER_URL", "REDIS_URL"),
            env={"BROKER_URL": "amqp://guest:guest@127.0.0.1:{closed_port}//"},
            unset=("REDIS_URL",),
        ),
        M(
            "sync-no-wait-without-redis",
            "sync",
            "team-tree",
            "--no-wait",
            says=("--no-wait", "REDIS_URL"),
            unset=("REDIS_URL",),
        ),
        M("run-no-wait-without-redis", "run", WF, "--no-wait", says=("--no-wait", "REDIS_URL"), unset=("REDIS_URL",)),
        M("sync-of-a-missing-folder", "sync", "no-such-dir", says=("no-such-dir",)),
        M("sync-of-a-file", "sync", "existing.txt", says=("existing.txt",)),
        M("plan-of-a-missing-folder", "plan", "no-such-dir", says=("no-such-dir",)),
        M("plan-of-a-file", "plan", "existing.txt", says=("existing.txt",)),
        M("plan-with-a-blank-gallery", "plan", "team-tree", "--gallery", "  ", says=("--gallery",)),
        M("watch-a-missing-folder", "watch", "no-such-dir", says=("no-such-dir",)),
        M("watch-a-file", "watch", "existing.txt", says=("existing.txt",)),
        M("watch-debounce-too-small", "watch", "team-tree", "--debounce", "5", says=("--debounce",)),
        M("watch-debounce-not-a-number", "watch", "team-tree", "--debounce", "soon", says=("--debounce",)),
        M("pull-into-a-file", "pull", "existing.txt", says=("existing.txt",)),
        M("pull-into-a-folder-below-a-file", "pull", "existing.txt/tree", says=("existing.txt is a file",)),
        M("pull-dry-run-below-a-file", "pull", "existing.txt/tree", "--dry-run", says=("existing.txt is a file",)),
        M("pull-with-all-and-team", "pull", "pulled", "--all", "--team", "duo", says=("--all", "--team")),
        M("pull-with-a-blank-team", "pull", "pulled", "--team", "  ", says=("--team",)),
        M("pull-with-a-blank-gallery", "pull", "pulled", "--gallery", "  ", says=("--gallery",)),
        M("sync-timeout-negative", "sync", "team-tree", "--timeout", "-5", says=("--timeout",)),
        M("sync-timeout-not-a-number", "sync", "team-tree", "--timeout", "soon", says=("--timeout",)),
        M("run-timeout-negative", "run", WF, "--timeout", "-1", says=("--timeout",)),
        M("run-timeout-zero", "run", WF, "--timeout", "0", says=("--timeout",)),
        M("run-timeout-not-a-number", "run", WF, "--timeout", "soon", says=("--timeout",)),
        M("run-mode-fast", "run", WF, "--mode", "fast", says=("--mode",)),
        M("monitor-refresh-zero", "monitor", "--refresh", "0", says=("--refresh",)),
        M(
            "monitor-json-saved-into-a-missing-folder",
            "monitor",
            "--json",
            "--refresh",
            "0.1",
            "--save-session",
            "no-such-dir/session.json",
            json_in_args=True,
            says=("--save-session", "no-such-dir"),
        ),
        M("monitor-refresh-not-a-number", "monitor", "--refresh", "soon", says=("--refresh",)),
        M(
            "team-size-zero",
            *TEAM,
            "--team-size",
            "0",
            says=("--team-size",),
        ),
        M(
            "team-size-too-big",
            *TEAM,
            "--team-size",
            "51",
            says=("--team-size",),
        ),
        M(
            "team-size-not-a-number",
            *TEAM,
            "--team-size",
            "three",
            says=("--team-size",),
        ),
        M("team-without-a-model", "team", GOAL, "--tree", "team-tree", says=("--model",)),
        M("team-with-a-missing-tree", "team", GOAL, "--model", "m", "--tree", "no-such-dir", says=("no-such-dir",)),
        M("bench-workflow-neither-standin-nor-model", "bench", "workflow", says=("--standin", "--model")),
        M(
            "bench-workflow-iterations-zero",
            "bench",
            "workflow",
            "--standin",
            "--iterations",
            "0",
            says=("--iterations",),
        ),
        M(
            "bench-workflow-team-sizes-zero",
            "bench",
            "workflow",
            "--standin",
            "--team-sizes",
            "0",
            says=("--team-sizes",),
        ),
        M(
            "bench-workflow-team-sizes-blank",
            "bench",
            "workflow",
            "--standin",
            "--team-sizes",
            "1,,3",
            says=("--team-sizes",),
        ),
        M(
            "bench-workflow-lognormal-without-sigma",
            "bench",
            "workflow",
            "--standin",
            "--latency",
            "lognormal:0.3",
            says=("--latency", "MEDIAN,SIGMA"),
        ),
        M(
            "bench-workflow-pertoken-without-its-rate",
            "bench",
            "workflow",
            "--standin",
            "--latency",
            "pertoken:0.05",
            says=("--latency",),
        ),
        M(
            "bench-workflow-complexity-unknown",
            "bench",
            "workflow",
            "--standin",
            "--complexity",
            "hard",
            says=("--complexity",),
        ),
        M("bench-studio-of-a-missing-folder", "bench", "studio", "no-such-dir", says=("no-such-dir",)),
        M("bench-studio-with-no-examples-here", "bench", "studio", says=("examples",)),
        M("bench-compare-one-set-only", "bench", "compare", "wf-results", says=("Missing argument",)),
        M(
            "bench-compare-fail-on-regression-not-a-number",
            "bench",
            "compare",
            "wf-results",
            "wf-results",
            "--fail-on-regression",
            "lots",
            says=("--fail-on-regression",),
        ),
        M("bench-report-of-nothing", "bench", "report", says=("Missing argument",)),
        M("unknown-command", "nosuch", says=("nosuch",)),
        M("unknown-bench-command", "bench", "nosuch", says=("nosuch",)),
        M("prune-is-no-command", "prune", "team-tree", says=("prune",)),
        M("unknown-option", "sync", "team-tree", "--nosuch", says=("--nosuch",)),
        M("option-that-takes-no-value", "status", "{workflow_run}", "--verbose=3", says=("--verbose",)),
        M("option-missing-its-value", "run", WF, "--mode", says=("--mode",)),
        M("missing-run-id", "cancel", says=("Missing argument",)),  # status and result default to `last`
        M("extra-argument", "result", "{workflow_run}", "extra-thing", says=("extra-thing",)),
    ],
}

CASES = [(family, case) for family, cases in FAMILIES.items() for case in cases]


def _with_json(args: list[str]) -> list[str]:
    """--json right after the command (`bench X` is two words), so that it never becomes an
    option's value."""
    at = 2 if args[:1] == ["bench"] and len(args) > 1 else 1
    return [*args[:at], "--json", *args[at:]]


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _values(shared: Shared) -> dict[str, str]:
    return {
        "closed": shared.closed_url,
        "closed_port": str(shared.closed_port),
        "html": shared.html_url,
        "workflow_run": shared.workflow_run,
        "sync_run": shared.sync_run,
    }


def _nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _found(part: str | tuple[str, ...], text: str) -> bool:
    return any(p in text for p in part) if isinstance(part, tuple) else part in text


def _shown(parts: list[str | tuple[str, ...]]) -> str:
    return ", ".join(" or ".join(map(repr, p)) if isinstance(p, tuple) else repr(p) for p in parts)


@dataclass
class Invocation:
    args: list[str]
    proc: subprocess.CompletedProcess[str] | None
    seconds: float
    written: list[str]
    timed_out: float | None = None

    def said(self) -> str:
        if self.proc is None:
            return f"$ producer {' '.join(self.args)}\n(still running after {self.timed_out:g} s: killed)"
        return (
            f"$ producer {' '.join(self.args)}\nexit code {self.proc.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.proc.stdout[-3000:]}\n--- stderr ---\n{self.proc.stderr[-3000:]}"
        )


def invoke(
    base: Path,
    shared: Shared,
    args: list[str],
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> Invocation:
    """Run `producer ARGS` in a fresh user folder under `base`, and say what changed under base."""
    cwd = make_workspace(base, shared.standin_url)
    (base / "cache").mkdir()
    (base / "tmp").mkdir()
    run_env = _base_env(shared.redis_url, shared.closed_url, base / "cache", base / "tmp")
    values = _values(shared)
    run_env.update({k: _fill(v, values) for k, v in (env or {}).items()})
    for name in unset:
        run_env.pop(name, None)
    args = [_fill(a, values) for a in args]
    before = snapshot(base)
    started = time.monotonic()
    try:
        proc = _producer(args, run_env, cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Invocation(args, None, time.monotonic() - started, [], timed_out=timeout)
    seconds = time.monotonic() - started
    return Invocation(args, proc, seconds, differences(before, snapshot(base)))


def _args(spec: Mistake | Answer, as_json: bool) -> list[str]:
    return _with_json(list(spec.args)) if as_json and not getattr(spec, "json_in_args", False) else list(spec.args)


def _slow_first(spec: Mistake | Answer) -> int:
    """Cases that wait on a service (retries, backoff) start first, so that they overlap the rest."""
    slow = {"pull", "sync", "bench"}
    return 0 if isinstance(spec, Mistake) and (spec.max_seconds or spec.args[0] in slow) else 1


@pytest.fixture(scope="module")
def ran(
    request: pytest.FixtureRequest, shared: Shared, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, bool], Future[Invocation]]]:
    """Every selected invocation of this module, started at once on a few threads (each is its
    own subprocess in its own folder): the module takes the time of its slowest cases, not of
    their sum. Each test waits for its own."""
    wanted: list[tuple[Mistake | Answer, bool]] = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        spec = params.get("case") or params.get("answer")
        if getattr(item, "module", None) is request.module and isinstance(spec, Mistake | Answer):
            wanted.append((spec, params["as_json"]))
    wanted.sort(key=lambda w: _slow_first(w[0]))
    futures: dict[tuple[str, bool], Future[Invocation]] = {}
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="mistake") as pool:
        for spec, as_json in wanted:
            base = tmp_path_factory.mktemp(f"{spec.name[:40]}-{'json' if as_json else 'plain'}")
            futures[(spec.name, as_json)] = pool.submit(
                invoke,
                base,
                shared,
                _args(spec, as_json),
                getattr(spec, "env", None),
                getattr(spec, "unset", ()),
                getattr(spec, "timeout", DEFAULT_TIMEOUT),
            )
        yield futures
        for future in futures.values():
            future.cancel()


def _invocation(
    ran: dict[tuple[str, bool], Future[Invocation]],
    spec: Mistake | Answer,
    as_json: bool,
    tmp_path: Path,
    shared: Shared,
) -> Invocation:
    future = ran.get((spec.name, as_json))
    if future is None:  # not collected with the module (should not happen): run it here
        return invoke(
            tmp_path / "user", shared, _args(spec, as_json), getattr(spec, "env", None), getattr(spec, "unset", ())
        )
    return future.result()


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize(("family", "case"), CASES, ids=[f"{f}-{c.name}" for f, c in CASES])
def test_a_mistake_is_refused_in_a_few_lines_naming_it(
    tmp_path: Path,
    shared: Shared,
    ran: dict[tuple[str, bool], Future[Invocation]],
    family: str,
    case: Mistake,
    as_json: bool,
) -> None:
    got = _invocation(ran, case, as_json, tmp_path, shared)
    problems = refusal_problems(got, case, as_json or case.json_in_args, _values(shared))
    if problems:
        pytest.fail("; ".join(problems) + "\n" + got.said(), pytrace=False)


def refusal_problems(got: Invocation, case: Mistake, as_json: bool, values: dict[str, str]) -> list[str]:
    """Every way this refusal is not what the README promises (empty: it is)."""
    if got.proc is None:
        return [f"still running after {got.timed_out:g} s"]
    proc = got.proc
    says = tuple(tuple(_fill(p, values) for p in s) if isinstance(s, tuple) else _fill(s, values) for s in case.says)
    problems = []
    if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
        problems.append("a traceback")
    if proc.returncode != case.code:
        problems.append(f"exit code {proc.returncode}, expected {case.code}")
    lines = _nonblank(proc.stderr)
    if not 1 <= len(lines) <= case.max_lines:
        problems.append(f"{len(lines)} line(s) on stderr, expected 1 to {case.max_lines}")
    missing = [s for s in says if not _found(s, proc.stderr)]
    if missing:
        problems.append(f"stderr does not name {_shown(missing)}")
    if as_json:
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "error" not in data:
            problems.append("stdout is not one JSON object with an 'error'")
        else:
            if data.get("exit_code") != proc.returncode:
                problems.append(f"the JSON's exit_code is {data.get('exit_code')!r}, not the process's")
            missing = [s for s in says if not _found(s, str(data["error"]))]
            if missing:
                problems.append(f"the JSON's error does not name {_shown(missing)}")
    elif proc.stdout.strip():
        problems.append("output on stdout (a refusal without --json prints only on stderr)")
    if got.written:
        shown = ", ".join(got.written[:4]) + (f" and {len(got.written) - 4} more" if len(got.written) > 4 else "")
        problems.append(f"wrote {shown}")
    if case.max_seconds is not None and got.seconds >= case.max_seconds:
        problems.append(f"took {got.seconds:.1f} s (at most {case.max_seconds:g})")
    return problems


# --------------------------------------------------------------------------------------------
# No mistake, but no answer either: what these must print instead.


@dataclass(frozen=True)
class Answer:
    name: str
    args: tuple[str, ...]
    check: Callable[[subprocess.CompletedProcess[str], bool, Shared], str | None]  # None: fine


def _status_of_a_workflow_run(proc: Any, as_json: bool, shared: Shared) -> str | None:
    if proc.returncode != 0:
        return "expected exit code 0 (the run succeeded)"
    if as_json:
        data = json.loads(proc.stdout)
        if data.get("kind") != "workflow" or data.get("run_id") != shared.workflow_run:
            return "the JSON is not the workflow run's report"
    elif "workflow" not in proc.stdout or shared.workflow_run not in proc.stdout:
        return "the table does not say it is the workflow run"
    return None


def _result_of_a_sync_run(proc: Any, as_json: bool, shared: Shared) -> str | None:
    """`result` is for workflow runs; given a sync run it shows that run's report, saying it is a
    sync (never "no such run", never a table that could be either), with the exit code `status`
    gives for it (the shared sync failed: 1)."""
    if proc.returncode != 1:
        return "expected exit code 1 (the sync run failed), as `status` gives"
    if as_json:
        data = json.loads(proc.stdout)
        if data.get("kind") != "sync" or data.get("run_id") != shared.sync_run:
            return "the JSON does not say it is a sync run"
    elif "sync" not in (proc.stdout + proc.stderr).lower():
        return "the output does not say that this is a sync run (and not a workflow run)"
    return None


def _nothing_to_sync(folder: str) -> Callable[[Any, bool, Shared], str | None]:
    def check(proc: Any, as_json: bool, shared: Shared) -> str | None:
        if proc.returncode != 0:
            return "expected exit code 0: nothing to sync is no failure"
        told = proc.stderr
        if as_json:
            data = json.loads(proc.stdout)
            if not isinstance(data, dict):
                return "stdout is not one JSON object"
            told += json.dumps(data)
        if "nothing to sync" not in told.lower():
            return "it does not say there was nothing to sync" + (" (stderr or JSON)" if as_json else " (stderr)")
        if folder not in told:
            return f"it does not name {folder}"
        return None

    return check


ANSWERS = [
    Answer("traceback-status-of-a-workflow-run", ("status", "{workflow_run}"), _status_of_a_workflow_run),
    Answer("message-result-of-a-sync-run", ("result", "{sync_run}"), _result_of_a_sync_run),
    Answer("nonsense-sync-of-an-empty-folder", ("sync", "empty-folder"), _nothing_to_sync("empty-folder")),
    Answer(
        "nonsense-sync-of-a-folder-holding-only-a-workflow",
        ("sync", "only-workflow"),
        _nothing_to_sync("only-workflow"),
    ),
    Answer(
        "nonsense-sync-of-a-folder-holding-only-hidden-files", ("sync", "only-hidden"), _nothing_to_sync("only-hidden")
    ),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("answer", ANSWERS, ids=[a.name for a in ANSWERS])
def test_no_mistake_but_it_says_what_happened(
    tmp_path: Path, shared: Shared, ran: dict[tuple[str, bool], Future[Invocation]], answer: Answer, as_json: bool
) -> None:
    got = _invocation(ran, answer, as_json, tmp_path, shared)
    problems = answer_problems(got, answer, as_json, shared)
    if problems:
        pytest.fail("; ".join(problems) + "\n" + got.said(), pytrace=False)


def answer_problems(got: Invocation, answer: Answer, as_json: bool, shared: Shared) -> list[str]:
    if got.proc is None:
        return [f"still running after {got.timed_out:g} s"]
    proc = got.proc
    problems = []
    if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
        problems.append("a traceback")
    if len(_nonblank(proc.stderr)) > MAX_STDERR_LINES:
        problems.append(f"{len(_nonblank(proc.stderr))} lines on stderr (at most {MAX_STDERR_LINES})")
    if as_json:
        try:
            json.loads(proc.stdout)
        except ValueError:
            return [*problems, "stdout is not one JSON object"]
    problem = answer.check(proc, as_json, shared)
    return problems if problem is None else [*problems, problem]


def test_the_matrix_is_wide() -> None:
    """At least 60 mistaken invocations, over every command."""
    assert len(CASES) >= 60
    names = [c.name for _, c in CASES] + [a.name for a in ANSWERS]
    assert len(names) == len(set(names)), "a case's name is its key"
    commands = {c.args[0] if c.args[0] != "bench" else " ".join(c.args[:2]) for _, c in CASES}
    expected = {"sync", "plan", "run", "status", "result", "watch", "pull", "monitor", "team"}
    expected |= {"bench workflow", "bench studio", "bench report", "bench compare"}
    assert expected <= commands, expected - commands
