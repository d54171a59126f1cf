"""Real services for integration tests: redis-server, celery workers and AutoGen Studio,
each started on a free loopback port for the session and stopped by PID."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hypothesis  # imported here, not lazily by its plugin at the end of a run: CPython 3.11.7 then fails compiling it with "AST constructor recursion depth mismatch"
import pytest

from producer import embedded

if TYPE_CHECKING:  # what the server fixtures use is imported by them: the fast tier needs none of it
    from producer.standin_llm import StandIn
    from tests.studio_proxy import StudioProxy

ROOT = Path(__file__).resolve().parent.parent
# Fast retries, so "Studio down" ends quickly in tests.
# A secret that workflow tests resolve on the workers and then look for everywhere it must not be.
TEST_SECRET = f"sk-agentq-test-{uuid.uuid4().hex}"
TEST_MODEL = "stand-in-model-of-the-tests"  # a `${VAR}` that is no secret: the model may repeat it
WORKER_ENV = {
    "STUDIO_RETRIES": "2",
    "STUDIO_BACKOFF_SECONDS": "0.05",
    "STUDIO_TIMEOUT_SECONDS": "10",
    "MODEL_BACKOFF_SECONDS": "0.05",
    "AGENTQ_TEST_SECRET": TEST_SECRET,
    "AGENTQ_TEST_MODEL": TEST_MODEL,
}


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, message: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail loudly, saying
    `message`, when `timeout` seconds pass first. Tests synchronise on conditions, never on sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message} (last: {value!r})")
        time.sleep(interval)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    url, proc = embedded.start_redis(services_dir / "redis")
    yield url
    embedded.stop(proc)


@pytest.fixture(scope="session")
def worker(redis_url: str, services_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Two worker processes (threads pool), as a user runs one per core; both log to worker.log."""
    procs = [
        embedded.start_worker(
            redis_url, concurrency=4, name="test", env=WORKER_ENV, log_path=services_dir / "worker.log"
        )
        for i in range(2)
    ]
    yield procs[0]
    for proc in procs:
        embedded.stop(proc)


@pytest.fixture(scope="session")
def studio_url(services_dir: Path) -> Iterator[str]:
    url, proc = embedded.start_studio(services_dir / "studio", binary=os.environ.get("AUTOGENSTUDIO_BIN"))
    yield url
    embedded.stop(proc)


@dataclass
class Cli:
    redis_url: str
    studio_url: str
    user_id: str
    cache_dir: Path
    view_url: str  # the real Studio, for checks that must not pass through a test proxy

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "STUDIO_URL": self.studio_url,
            "STUDIO_USER_ID": self.user_id,
            "AGENTQ_CACHE_DIR": str(self.cache_dir),
            "AGENTQ_TEST_SECRET": TEST_SECRET,
            "AGENTQ_TEST_MODEL": TEST_MODEL,
            **extra,
        }

    def run(self, *args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args],
            env=self.env(**extra_env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """The command started, not waited for; its output piped."""
        return subprocess.Popen(
            [sys.executable, "-m", "producer.cli", *args],
            env=self.env(**extra_env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sync(self, directory: Path, *args: str, **extra_env: str) -> tuple[int, dict[str, Any], str]:
        proc = self.run("sync", str(directory), "--json", *args, **extra_env)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"sync printed no JSON report\nstdout: {proc.stdout}\nstderr: {proc.stderr}") from None
        return proc.returncode, report, proc.stderr

    def studio(self) -> StudioView:
        return StudioView(self.view_url, self.user_id)


@dataclass
class StudioView:
    """What a user sees in Studio, through its own API."""

    url: str
    user_id: str

    def teams(self) -> list[dict[str, Any]]:
        import httpx

        resp = httpx.get(f"{self.url}/api/teams/", params={"user_id": self.user_id}, timeout=30)
        resp.raise_for_status()
        return resp.json()["data"]

    def teams_by_label(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for row in self.teams():
            out.setdefault(row["component"].get("label"), []).append(row)
        return out

    def galleries(self) -> list[dict[str, Any]]:
        import httpx

        resp = httpx.get(f"{self.url}/api/gallery/", params={"user_id": self.user_id}, timeout=30)
        resp.raise_for_status()
        return resp.json()["data"]


@pytest.fixture
def proxy(studio_url: str) -> Iterator[StudioProxy]:
    from tests.studio_proxy import StudioProxy

    p = StudioProxy(studio_url)
    yield p
    p.close()


@pytest.fixture
def cli(redis_url: str, studio_url: str, worker: subprocess.Popen[bytes], proxy: StudioProxy, tmp_path: Path) -> Cli:
    """The producer CLI, talking to Studio through a recording proxy; a fresh Studio user per
    test keeps tests independent on one shared server."""
    return Cli(redis_url, proxy.url, f"test-{uuid.uuid4().hex[:8]}", tmp_path / "cache", studio_url)


@pytest.fixture
def wf_cli(redis_url: str, worker: subprocess.Popen[bytes], tmp_path: Path) -> Cli:
    """The CLI for workflow runs: no Studio behind it."""
    return Cli(redis_url, "http://127.0.0.1:9", f"wf-{uuid.uuid4().hex[:6]}", tmp_path / "cache", "http://127.0.0.1:9")


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of examples/, safe to edit."""
    target = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", target)
    return target


@pytest.fixture
def standin() -> Iterator[tuple[str, StandIn]]:
    """The stand-in model endpoint, in a thread of the test process; tests drive `state.control`."""
    from producer.standin_llm import ThreadedStandIn

    server = ThreadedStandIn()
    yield server.url, server.state
    server.stop()


@pytest.fixture
def own_studio(tmp_path: Path):
    """A Studio of this test's own, which it may stop and restart (same port, same database)."""
    app_dir = tmp_path / "studio"
    port = embedded.free_port()
    url, proc = embedded.start_studio(app_dir, port=port)
    state = {"proc": proc}

    def restart() -> None:
        state["proc"] = embedded.start_studio(app_dir, port=port)[1]

    yield url, state, restart
    embedded.stop(state["proc"])


def assert_not_in_redis(redis_url: str, text: str) -> None:
    """`text` is in no key and no value of any kind, nor a hash's field name (queued task messages
    included)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    needle = text.encode()
    for key in r.scan_iter("*", count=1000):
        assert needle not in key
        kind = r.type(key)
        if kind == b"string":
            values = [r.get(key)]
        elif kind == b"hash":
            values = [part for item in r.hgetall(key).items() for part in item]
        elif kind == b"list":
            values = r.lrange(key, 0, -1)
        elif kind == b"zset":
            values = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            values = list(r.smembers(key))
        elif kind == b"stream":
            values = [part for _, fields in r.xrange(key) for item in fields.items() for part in item]
        else:
            values = []
        assert not any(v and needle in v for v in values), f"found in Redis key {key!r}"


# fixtures that start or need a server: a test using any of them is in the integration tier
SERVER_FIXTURES = {
    "redis_url",
    "studio_url",
    "worker",
    "cli",
    "wf_cli",
    "proxy",
    "standin",
    "services_dir",
    "stack",
    "own_studio",
}


# Hypothesis's own way to size property tests by where they run: many cases on CI, a quick
# pass in the fast tier a developer runs after each edit (HYPOTHESIS_PROFILE picks one)
hypothesis.settings.register_profile("ci", max_examples=200, deadline=None, database=None)
hypothesis.settings.register_profile("dev", max_examples=40, deadline=None, database=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

# a module whose every test is integration says so at its top; the fast tier does not even import it
_WHOLE_MODULE_INTEGRATION = re.compile(r"^pytestmark = \[?\s*pytest\.mark\.integration\b", re.M)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("markexpr") != "not integration" or collection_path.suffix != ".py":
        return None
    return bool(_WHOLE_MODULE_INTEGRATION.search(collection_path.read_text())) or None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not integration"` runs the core tests, which need no server."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run is over: the interpreter's last collection over every object the tests left alive
    (AutoGen, matplotlib, Hypothesis ...) would only delay the exit, so they are frozen out of it."""
    import gc

    gc.freeze()
