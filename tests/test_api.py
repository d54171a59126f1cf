"""The Python API: `from producer import plan, sync, run_workflow`, returning typed results."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from producer import plan, run_workflow, sync
from producer.api import PlanResult, RunResult
from shared.core.exceptions import InvalidInput
from shared.settings import Settings
from tests.conftest import TEST_SECRET, Cli
from tests.test_studio_outage import _write_tree
from tests.test_workflow_run import write_tree, write_workflow

pytestmark = pytest.mark.integration


def test_plan_then_sync_then_plan_again(cli: Cli, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree, teams=3)
    (tree / "broken.yaml").write_text("label: [unclosed\n")
    settings = Settings(
        REDIS_URL=cli.redis_url,
        STUDIO_URL=cli.studio_url,
        STUDIO_USER_ID=cli.user_id,
        AGENTQ_CACHE_DIR=str(tmp_path / "cache"),
    )
    before = plan(tree, settings)
    assert isinstance(before, PlanResult) and len(before.changes["new"]) == 5
    assert any("broken.yaml" in e for e in before.errors)
    result = sync(tree, settings)
    assert isinstance(result, RunResult) and result.counts["created"] == 5
    assert not result.succeeded and "broken.yaml" in result.failed  # the broken file is reported, the rest synced
    assert cli.studio().teams_by_label().keys() >= {"team-000", "team-001", "team-002"}
    assert len(plan(tree, settings).changes["unchanged"]) == 5


def test_run_workflow_returns_every_task(wf_cli: Cli, standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = standin
    monkeypatch.setenv("AGENTQ_TEST_SECRET", TEST_SECRET)  # the model's key, as the CLI's environment has it
    write_tree(tmp_path, url)
    settings = Settings(REDIS_URL=wf_cli.redis_url, AGENTQ_CACHE_DIR=str(tmp_path / "cache"))
    file = write_workflow(
        tmp_path,
        [{"id": "a", "description": "first"}, {"id": "b", "description": "then", "dependencies": ["a"]}],
        f"api-{uuid.uuid4().hex[:6]}",
    )
    result = run_workflow(file, settings=settings)
    assert result.succeeded and result.counts["done"] == 2 and set(result.report["tasks"]) == {"a", "b"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: workflow\nname: w\ntasks: []\n")
    with pytest.raises(InvalidInput):
        run_workflow(bad, tree=tmp_path, settings=settings)


def test_wrong_arguments_are_said_before_anything_starts(tmp_path: Path) -> None:
    """A missing folder planned as an empty tree; settings given as a dict ended in an AttributeError."""
    for directory in (tmp_path / "nope", tmp_path / "file.yaml"):
        (tmp_path / "file.yaml").write_text("label: x\n")
        with pytest.raises(InvalidInput, match=f"{directory} is not a directory"):
            plan(directory)
        with pytest.raises(InvalidInput, match="is not a directory"):
            sync(directory)
    with pytest.raises(InvalidInput, match=r"settings: expected shared.settings.Settings\(...\), not dict"):
        sync(tmp_path, settings={"redis_url": "redis://127.0.0.1:1/0"})  # type: ignore[arg-type]


def test_arguments_of_the_wrong_kind_are_refused_before_a_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They ran the sync, or the whole workflow, and then failed in a TypeError from deep inside; a
    path that is no path failed inside pathlib; force="no" forced. A Redis that cannot be reached
    shows nothing was started: the argument is named first."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text("kind: workflow\nname: w\ntasks: []\n")
    for directory in (None, 42, b"/tmp", ""):
        with pytest.raises(InvalidInput, match="directory: expected a path"):
            plan(directory)  # type: ignore[arg-type]
    for timeout in ("abc", -1, 0, float("nan"), True):
        with pytest.raises(InvalidInput, match="timeout: expected seconds"):
            sync(tmp_path, timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="timeout: expected seconds"):
            run_workflow(workflow, timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="force: expected True or False, not 'no'"):
        sync(tmp_path, force="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no_cache: expected True or False, not 1"):
        run_workflow(workflow, no_cache=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="tree: expected a path"):
        run_workflow(workflow, tree=3)  # type: ignore[arg-type]


SYNC_INTERRUPTED = """
import sys
from producer import sync
from shared.core.exceptions import RunInterrupted
try:
    sync(sys.argv[1])
except RunInterrupted as exc:
    print("interrupted", exc.run_id)
"""


def test_ctrl_c_while_sync_waits_is_run_interrupted_naming_the_run(studio_url: str, tmp_path: Path) -> None:
    """`run_workflow` raised RunInterrupted naming the run that goes on; `sync` a bare KeyboardInterrupt."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from producer import embedded
    from tests.conftest import wait_for

    tree = tmp_path / "tree"
    _write_tree(tree, teams=2)
    url, redis_proc = embedded.start_redis(tmp_path / "redis")  # no worker: the run waits
    env = {**os.environ, "REDIS_URL": url, "STUDIO_URL": studio_url, "AGENTQ_CACHE_DIR": str(tmp_path / "cache")}
    env["STUDIO_USER_ID"] = f"api-{uuid.uuid4().hex[:6]}"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", SYNC_INTERRUPTED, str(tree)], env=env, stdout=subprocess.PIPE, text=True
        )
        runs = [sys.executable, "-m", "producer.cli", "runs", "--json"]
        listed = wait_for(
            lambda: json.loads(subprocess.run(runs, env=env, capture_output=True, text=True).stdout)["runs"],
            60,
            "the sync's run written",
            interval=0.2,
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert out.split() == ["interrupted", listed[0]["run_id"]], out
    finally:
        embedded.stop(redis_proc)
