"""`producer pull` against a real Studio: Studio's own default gallery teams (built by
autogenstudio's gallery builder, posted as team rows) pulled into an empty folder, the examples'
round trips, and no secret in any file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer import embedded
from tests.conftest import ROOT, Cli
from tests.studio_proxy import StudioProxy

BUILD = """
import json
from autogenstudio.gallery.builder import create_default_gallery
print(json.dumps(create_default_gallery().model_dump(mode="json")["components"]["teams"]))
"""
SECRET = "sk-pull-test-0123456789abcdef"


@pytest.fixture(scope="session")
def default_teams() -> list[dict[str, Any]]:
    """Studio's default gallery teams, with an API key set on every model (as a user would have)."""
    python = Path(embedded.studio_binary()).parent / "python"
    out = subprocess.run([str(python), "-c", BUILD], capture_output=True, text=True, check=True, timeout=300)
    teams = json.loads(out.stdout)

    def set_keys(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("component_type") == "model":
                value["config"]["api_key"] = SECRET
            for child in value.values():
                set_keys(child)
        elif isinstance(value, list):
            for child in value:
                set_keys(child)

    set_keys(teams)
    return teams  # type: ignore[no-any-return]


def _post_rows(cli: Cli, teams: list[dict[str, Any]]) -> None:
    for team in teams:
        body = {"user_id": cli.user_id, "component": team, "version": "1.0.0"}
        httpx.post(f"{cli.view_url}/api/teams/", json=body, timeout=60).raise_for_status()


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _pull(cli: Cli, root: Path, *args: str, **env: str) -> dict[str, Any]:
    proc = cli.run("pull", str(root), "--json", *args, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_default_gallery_teams_pulled_into_an_empty_folder(
    cli: Cli, proxy: StudioProxy, default_teams: list[dict[str, Any]], tmp_path: Path
) -> None:
    _post_rows(cli, default_teams)
    root = tmp_path / "pulled"
    result = _pull(cli, root)

    files = _files(root)
    teams = {f["label"]: f["path"] for f in result["files"] if f["path"].startswith("teams/")}
    assert set(teams) == {t["label"] for t in default_teams}
    assert all(f["action"] == "create" for f in result["files"])
    shared = [path for path in files if not path.startswith("teams/")]
    assert shared, "parts that several teams share should have files of their own"
    assert any("$ref" in files[path] for path in teams.values())
    assert not any(SECRET in text for text in files.values()), "a secret value was written to a file"
    assert result["variables"], "the secrets' variables should be listed"

    env = {var: "any-value" for var in result["variables"]}
    plan = cli.run("plan", str(root), "--json", **env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert not data["errors"], data["errors"]
    assert set(teams) <= set(data["changes"]["unchanged"]) | set(data["changes"]["new"])

    # pull, then sync: not one team row written (the rows are adopted as they are). On the
    # embedded default, so that the worker sees the secrets' variables too
    proxy.reset()
    own = {k: v for k, v in cli.env(**env, AGENTQ_CACHE_DIR=str(tmp_path / "own-cache")).items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "sync", str(root), "--json"],
        env=own,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    team_writes = [w for w in proxy.writes() if "/api/teams" in w[1]]
    assert team_writes == [], team_writes
    for label in teams:
        assert report["nodes"][label].get("outcome") == "unchanged", (report["nodes"][label], proc.stderr)
    # and pulling again changes no file
    again = _pull(cli, root)
    assert all(f["action"] == "unchanged" for f in again["files"]), again
    assert _files(root) == files


def test_sync_then_pull_changes_no_file(cli: Cli, examples: Path) -> None:
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    before = _files(examples)
    result = _pull(cli, examples)
    assert [f for f in result["files"] if f["action"] != "unchanged"] == []
    assert _files(examples) == before


def test_a_tree_without_teams_takes_no_row_it_did_not_ask_for(cli: Cli, examples: Path) -> None:
    """Studio's default team (made on the user's first listing) is not the tree's: a tree of agents
    and models only takes no team row unless `--all` or `--team` asks; an empty folder takes all."""
    shutil.rmtree(examples / "teams")
    shutil.rmtree(examples / "workflows")
    assert cli.sync(examples)[0] == 0
    assert "RoundRobin Team" in cli.studio().teams_by_label()  # the listing made it
    before = _files(examples)
    result = _pull(cli, examples)
    assert [f for f in result["files"] if f["action"] != "unchanged"] == [], result["files"]
    assert "RoundRobin Team" in result["not_pulled"]
    assert _files(examples) == before


def test_a_synced_tree_pulled_into_an_empty_folder_gets_its_placeholders_back(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    """No file to read them from: the placeholders come from what the sync recorded, `${VAR:-default}`s
    as written; pull lists no variable to set (each has its default), and plan needs none."""
    placeholders = set(re.findall(r"\$\{[^}]+\}", "".join(_files(examples / "models").values())))
    assert len(placeholders) == 4, placeholders  # the examples' models: keys, URL and model, with defaults
    rc, _, err = cli.sync(examples)
    assert rc == 0, err
    root = tmp_path / "pulled"
    result = _pull(cli, root, "--all")

    pulled = "".join(_files(root).values())
    assert all(p in pulled for p in placeholders), pulled
    used = {re.match(r"\$\{(\w+)", p).group(1) for p in placeholders}  # type: ignore[union-attr]
    assert not result["variables"]  # each has its default: none to set (listed, they read as needed)
    env = {var: "" for var in used}  # none set: their defaults hold, in the original and the pulled tree
    for tree in (examples, root):
        plan = cli.run("plan", str(tree), "--json", **env)
        planned = json.loads(plan.stdout)
        assert not planned["errors"], (tree, plan.stdout)
        # the pulled tree's teams are rows the original's sync wrote, which is still there: refused
        refused = set(planned["refused"])
        assert refused == (set() if tree == examples else {"research-team", "review-team", "solo-researcher"})
        assert plan.returncode == (1 if refused else 0), plan.stderr


def test_a_team_edited_in_studio_is_pulled_into_its_file_in_place(cli: Cli, examples: Path) -> None:
    assert cli.sync(examples)[0] == 0
    row = cli.studio().teams_by_label()["review-team"][0]
    component = json.loads(json.dumps(row["component"]))
    component["description"] = "Edited in the UI."
    body = {"id": row["id"], "user_id": cli.user_id, "component": component, "version": row["version"]}
    httpx.post(f"{cli.view_url}/api/teams/", json=body, timeout=30).raise_for_status()

    before = _files(examples)
    result = _pull(cli, examples, "--team", "review-team")
    changed = {f["path"]: f["action"] for f in result["files"] if f["action"] != "unchanged"}
    assert changed == {"teams/review-team.yaml": "update"}, result
    after = _files(examples)
    assert {p for p in after if after[p] != before.get(p)} == {"teams/review-team.yaml"}
    text = after["teams/review-team.yaml"]
    assert "Edited in the UI." in text and "$ref: writer" in text  # the shared agent stays a reference

    # the colleague's change is in the files now: sync writes nothing (the row is adopted as it is)
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert report["nodes"]["review-team"]["outcome"] == "unchanged", report["nodes"]["review-team"]


def test_a_file_that_cannot_be_written_is_named_and_the_others_are_written(tmp_path: Path) -> None:
    from producer.pull import write_files
    from shared.core.pull_layout import FileWrite, Layout

    (tmp_path / "teams" / "blocked.yaml").mkdir(parents=True)  # a folder where the file should go
    doc = {"provider": "p", "component_type": "team", "label": "x", "config": {}}
    layout = Layout(
        files=[FileWrite("teams/blocked.yaml", "b", doc, "create"), FileWrite("teams/ok.yaml", "o", doc, "create")]
    )
    failed = write_files(tmp_path, layout)
    assert list(failed) == ["teams/blocked.yaml"] and failed["teams/blocked.yaml"]
    assert (tmp_path / "teams" / "ok.yaml").is_file()
    assert not list((tmp_path / "teams").glob(".pull-*")), "a temporary file was left behind"


def test_files_are_written_with_the_modes_any_file_gets_and_never_through_a_link_leaving_the_tree(
    tmp_path: Path,
) -> None:
    """mkstemp's 0600 made pulled files unreadable to the group; a folder linked outside the tree
    was written through."""
    import os

    from producer.pull import write_files
    from shared.core.pull_layout import FileWrite, Layout

    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "teams").mkdir(parents=True)
    outside.mkdir()
    (tree / "agents").symlink_to(outside, target_is_directory=True)
    (tree / "teams" / "old.yaml").write_text("label: old\n")
    (tree / "teams" / "old.yaml").chmod(0o640)
    (tree / "tools").write_text("a file where a folder should be\n")
    doc = {"provider": "p", "component_type": "team", "label": "x", "config": {}}
    layout = Layout(
        files=[
            FileWrite("teams/new.yaml", "n", doc, "create"),
            FileWrite("teams/old.yaml", "old", doc, "update"),
            FileWrite("agents/a.yaml", "a", doc, "create"),
            FileWrite("tools/t.yaml", "t", doc, "create"),
        ]
    )
    umask = os.umask(0o022)
    try:
        failed = write_files(tree, layout)
    finally:
        os.umask(umask)
    assert sorted(failed) == ["agents/a.yaml", "tools/t.yaml"] and "outside the tree" in failed["agents/a.yaml"]
    assert failed["tools/t.yaml"] == "tools is a file, not a folder"
    assert list(outside.iterdir()) == []
    assert (tree / "teams" / "new.yaml").stat().st_mode & 0o777 == 0o644
    assert (tree / "teams" / "old.yaml").stat().st_mode & 0o777 == 0o640


def test_a_row_whose_label_is_no_string_is_left_out_of_a_pull_by_label(cli: Cli, examples: Path) -> None:
    """Any client can store a label that is a list: `pull --team` and a tree's pull crashed on it."""
    assert cli.sync(examples)[0] == 0
    odd = {"provider": "autogen_agentchat.teams.RoundRobinGroupChat", "component_type": "team", "label": ["x"]}
    _post_rows(cli, [{**odd, "config": {}}])
    for args in ((), ("--team", "review-team")):
        proc = cli.run("pull", str(examples), "--json", *args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert json.loads(proc.stdout)["files"]
    proc = cli.run("pull", str(examples), "--json", "--team", "nope")
    assert proc.returncode == 2 and "nope" in json.loads(proc.stdout)["error"]
