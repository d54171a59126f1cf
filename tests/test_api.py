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
    with pytest.raises(TypeError, match=r"settings: expected shared.settings.Settings\(...\), not dict"):
        sync(tmp_path, settings={"redis_url": "redis://127.0.0.1:1/0"})  # type: ignore[arg-type]
