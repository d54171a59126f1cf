"""The producer's watchdog gives up on a run that stopped moving, and not on one that moves, and
says when no worker is running at all, or none that takes the queue a run needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from producer import embedded
from producer.recovery import Watchdog
from tests.conftest import ROOT


def _watchdog(give_up_after: float) -> Watchdog:
    # every=inf: only the stall clock is exercised, no store or broker is touched
    return Watchdog(
        None,
        "r1",
        lambda: None,
        dead_after=20,
        stuck_after=120,
        say=print,  # type: ignore[arg-type]
        every=float("inf"),
        give_up_after=give_up_after,
    )


def test_a_run_that_stops_moving_is_given_up_naming_the_setting() -> None:
    watch = _watchdog(give_up_after=0.0)
    watch(3)  # a node ended just now: the clock restarts
    with pytest.raises(TimeoutError, match="STALL_SECONDS"):
        watch(3)


def test_a_run_that_keeps_moving_is_never_given_up() -> None:
    watch = _watchdog(give_up_after=0.0)
    for done in range(50):
        watch(done)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("worker_queues", "said"),
    [
        (None, "no worker is running"),
        ("models", "no running worker takes the queue(s) this run needs: studio"),
    ],
    ids=["no worker", "a models-only worker"],
)
def test_a_sync_no_worker_takes_says_so_and_ends(
    studio_url: str, tmp_path: Path, worker_queues: str | None, said: str
) -> None:
    """REDIS_URL given, and no `celery -A workers worker` started, or only one that takes other
    queues (`-Q models`): the producer says what is missing once WORKER_DEAD_SECONDS pass, and
    gives up after STALL_SECONDS."""
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    worker = None
    try:
        if worker_queues:
            worker = embedded.start_worker(
                url, env={"RESOURCE_INTERVAL_SECONDS": "0.3"}, extra_args=["-Q", worker_queues]
            )
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "tool.yaml").write_text(
            "provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\nlabel: t\n"
            'config: {source_code: "def f() -> int:\\n    return 1\\n", name: f, description: d, global_imports: []}\n'
        )
        env = {
            **os.environ,
            "REDIS_URL": url,
            "STUDIO_URL": studio_url,  # the producer asks it whether it answers before it enqueues
            "AGENTQ_CACHE_DIR": str(tmp_path / "cache"),
            "WORKER_DEAD_SECONDS": "1",
            "STALL_SECONDS": "6",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "producer.cli", "sync", str(tree)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 4, proc.stderr
        assert proc.stderr.count(said) == 1, proc.stderr
        assert "celery -A workers worker" in proc.stderr and "Traceback" not in proc.stderr
        if worker_queues:
            assert "no worker is running" not in proc.stderr and "-Q studio" in proc.stderr
    finally:
        if worker is not None:
            embedded.stop(worker)
        embedded.stop(redis_proc)
