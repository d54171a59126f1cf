"""Drift and prune against a real Studio: rows edited in Studio are reported and left alone unless
forced; `--prune` deletes exactly the rows this tree created whose files are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli
from tests.studio_proxy import StudioProxy

pytestmark = pytest.mark.integration


def _edit_row(cli: Cli, row: dict[str, Any], message: str) -> None:
    """What a colleague does in Studio's UI: the team saved again with one agent's prompt changed
    (the row keeps its `version` field, as the UI does)."""
    component = json.loads(json.dumps(row["component"]))
    component["config"]["participants"][0]["config"]["system_message"] = message
    body = {"id": row["id"], "user_id": cli.user_id, "component": component, "version": row["version"]}
    httpx.post(f"{cli.view_url}/api/teams/", json=body, timeout=30).raise_for_status()


def _plan(cli: Cli, directory: Path) -> dict[str, Any]:
    proc = cli.run("plan", str(directory), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_a_row_edited_in_studio_is_drifted_left_alone_and_overwritten_only_when_forced(
    cli: Cli, examples: Path
) -> None:
    assert cli.sync(examples)[0] == 0
    row = cli.studio().teams_by_label()["research-team"][0]
    _edit_row(cli, row, "Edited in the UI.")

    plan = _plan(cli, examples)
    assert plan["changes"]["drifted"] == ["research-team"]
    assert "edited in Studio" in plan["drifted"]["research-team"]

    # the tree did not change: the no-change answer must not hide the drift
    rc, report, _ = cli.sync(examples)
    assert rc == 1
    assert report["counts"]["drifted"] == 1
    assert report["nodes"]["research-team"]["status"] == "skipped" and report["nodes"]["research-team"]["drifted"]
    left = cli.studio().teams_by_label()["research-team"]
    assert len(left) == 1 and left[0]["id"] == row["id"]
    assert left[0]["component"]["config"]["participants"][0]["config"]["system_message"] == "Edited in the UI."
    assert left[0]["updated_at"] != row["updated_at"]  # the colleague's write, and no other since
    edited_at = left[0]["updated_at"]
    assert cli.studio().teams_by_label()["research-team"][0]["updated_at"] == edited_at

    rc, report, err = cli.sync(examples, "--force")
    assert rc == 0, err
    assert report["nodes"]["research-team"]["outcome"] == "updated"
    back = cli.studio().teams_by_label()["research-team"]
    assert len(back) == 1 and back[0]["id"] == row["id"]
    assert back[0]["component"] == row["component"]

    # overwritten, it is ours again: no drift, and a plain sync is clean
    assert _plan(cli, examples)["changes"]["drifted"] == []
    assert cli.sync(examples)[0] == 0


def test_prune_deletes_exactly_the_rows_this_tree_created_and_nothing_else(
    cli: Cli, examples: Path, proxy: StudioProxy
) -> None:
    # a row another client made before the first sync, under a label the tree uses: the sync adopts
    # (updates) it but did not create it; and one the sync never touches at all
    adopted = json.loads((examples / "teams" / "solo-team.json").read_text())
    foreign = {**adopted, "label": "made-by-hand"}
    for component in (adopted, foreign):
        body = {"user_id": cli.user_id, "component": component}
        httpx.post(f"{cli.view_url}/api/teams/", json=body, timeout=30).raise_for_status()
    assert cli.sync(examples)[0] == 0
    before = {label: rows[0] for label, rows in cli.studio().teams_by_label().items()}
    assert {"research-team", "review-team", "solo-researcher", "made-by-hand"} <= set(before)

    (examples / "teams" / "review-team.yaml").unlink()
    (examples / "teams" / "solo-team.json").unlink()

    plan = _plan(cli, examples)
    assert [p["label"] for p in plan["prune"]] == ["review-team"]  # solo-researcher was adopted, not created

    proxy.reset()
    rc, report, err = cli.sync(examples)  # without --prune: nothing is deleted
    assert rc == 0, err
    assert not [w for w in proxy.writes() if w[0] == "DELETE"]
    assert "--prune" in err
    assert set(cli.studio().teams_by_label()) == set(before)

    rc, report, err = cli.sync(examples, "--prune")
    assert rc == 0, err
    assert report["nodes"]["review-team"]["outcome"] == "deleted"
    assert report["counts"]["deleted"] == 1
    row_id = before["review-team"]["id"]  # the prune's own requests are in the report too
    assert report["studio_requests"].get(f"DELETE /teams/{row_id}") == 1, report["studio_requests"]
    after = {label: rows[0] for label, rows in cli.studio().teams_by_label().items()}
    assert set(after) == set(before) - {"review-team"}
    for label in after:  # the rest untouched: the foreign row, the adopted row and the tree's own
        assert after[label]["updated_at"] == before[label]["updated_at"], label
    assert [w[0] for w in proxy.writes()] == ["DELETE"]

    assert _plan(cli, examples)["prune"] == []  # nothing left to prune, and a second prune deletes nothing
    proxy.reset()
    assert cli.sync(examples, "--prune")[0] == 0
    assert proxy.writes() == []


def test_rows_whose_folder_became_a_link_that_leads_nowhere_are_not_pruned(cli: Cli, examples: Path) -> None:
    """A submodule not checked out, an unmounted path: the folder's files cannot be read, which
    is not their being gone. The link is reported; a prune deletes nothing."""
    assert cli.sync(examples)[0] == 0
    before = cli.studio().teams_by_label()
    shutil.rmtree(examples / "teams")
    (examples / "teams").symlink_to("nonexistent-dir", target_is_directory=True)

    plan = json.loads(cli.run("plan", str(examples), "--json").stdout)
    assert plan["prune"] == []
    assert any(e["path"] == "teams" and "cannot follow" in e["message"] for e in plan["errors"]), plan["errors"]
    rc, report, err = cli.sync(examples, "--prune")
    assert rc != 0 and "Traceback" not in err
    assert report["nodes"]["teams"]["status"] == "failed"
    assert "cannot follow" in report["nodes"]["teams"]["error"]
    assert report["counts"]["deleted"] == 0
    assert {label: [r["id"] for r in rows] for label, rows in cli.studio().teams_by_label().items()} == {
        label: [r["id"] for r in rows] for label, rows in before.items()
    }


def test_a_drifted_row_is_not_pruned_unless_forced(cli: Cli, examples: Path) -> None:
    assert cli.sync(examples)[0] == 0
    row = cli.studio().teams_by_label()["review-team"][0]
    _edit_row(cli, row, "Someone cares about this one.")
    (examples / "teams" / "review-team.yaml").unlink()

    plan = _plan(cli, examples)
    assert plan["prune"] == [] and "review-team" in plan["drifted"]
    cli.sync(examples, "--prune")
    assert "review-team" in cli.studio().teams_by_label()

    rc, _, err = cli.sync(examples, "--prune", "--force")
    assert rc == 0, err
    assert "review-team" not in cli.studio().teams_by_label()


def test_a_row_deleted_in_studio_is_written_again(cli: Cli, examples: Path) -> None:
    assert cli.sync(examples)[0] == 0
    row = cli.studio().teams_by_label()["solo-researcher"][0]
    httpx.delete(f"{cli.view_url}/api/teams/{row['id']}", params={"user_id": cli.user_id}, timeout=30)

    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert report["nodes"]["solo-researcher"]["outcome"] == "created"
    rows = cli.studio().teams_by_label()["solo-researcher"]
    assert len(rows) == 1 and rows[0]["component"] == row["component"]


def test_each_written_row_is_recorded_as_studio_holds_it_and_without_secrets(cli: Cli, examples: Path) -> None:
    import redis

    from shared.core.drift import WrittenRow
    from shared.core.hashing import namespace
    from shared.core.secrets import content_hash
    from tests.conftest import TEST_SECRET

    # the critic's model key (review-team) resolves to a secret on the workers
    model = examples / "models" / "gpt-4o-mini.json"
    model.write_text(model.read_text().replace("${OPENAI_API_KEY:-sk-set-OPENAI_API_KEY}", "${AGENTQ_TEST_SECRET}"))
    assert cli.sync(examples)[0] == 0
    r = redis.Redis.from_url(cli.redis_url, decode_responses=True)
    records = {
        label: WrittenRow.from_json(raw)
        for label, raw in r.hgetall(f"agentq:{namespace(cli.studio_url, cli.user_id)}:written").items()
    }
    rows = cli.studio().teams_by_label()
    assert TEST_SECRET in json.dumps(rows["review-team"][0]["component"])  # Studio holds the key itself
    assert set(records) == {"research-team", "review-team", "solo-researcher"}
    for label, record in records.items():
        row = rows[label][0]
        assert record.row_id == row["id"] and record.created and record.tree == str(examples.resolve())
        assert record.hash == content_hash(row["component"])
        # the timestamp as Studio serves it, so a no-change sync can skip hashing unedited rows
        assert record.updated_at == row["updated_at"]
    assert all(TEST_SECRET not in raw for raw in r.hgetall(f"agentq:{namespace(cli.studio_url, cli.user_id)}:written"))


def test_content_synced_before_then_changed_and_back_is_written_again(cli: Cli, examples: Path) -> None:
    """The result cache is keyed by content: content A synced, then B, then A again was 'unchanged'
    while Studio kept B (a team row, a gallery member); a row pruned and its file restored was
    'unchanged' with no row in Studio."""
    team, model = examples / "teams" / "research-team.yaml", examples / "models" / "gpt-4o-mini.json"
    team_text, model_text = team.read_text(), model.read_text()
    assert cli.sync(examples)[0] == 0
    team.write_text(team_text.replace("description: Researcher and writer take turns", "description: B"))
    model.write_text(model_text.replace('"description": "OpenAI gpt-4o-mini;', '"description": "B;'))
    assert cli.sync(examples)[0] == 0
    team.write_text(team_text)
    model.write_text(model_text)

    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert report["nodes"]["research-team"]["outcome"] == "updated", report["nodes"]["research-team"]
    rows = cli.studio().teams_by_label()["research-team"]
    assert len(rows) == 1 and rows[0]["component"]["description"] == "Researcher and writer take turns"
    (entry,) = [g for g in cli.studio().galleries() if g["config"]["name"] == "examples"]
    (held,) = [m for m in entry["config"]["components"]["models"] if m["label"] == "gpt-4o-mini"]
    assert held["description"].startswith("OpenAI gpt-4o-mini;"), held

    # pruned, then the file put back: the team is written again
    review = examples / "teams" / "review-team.yaml"
    review_text = review.read_text()
    review.unlink()
    assert cli.sync(examples, "--prune")[1]["counts"]["deleted"] == 1
    assert "review-team" not in cli.studio().teams_by_label()
    review.write_text(review_text)
    rc, report, err = cli.sync(examples)
    assert rc == 0 and report["nodes"]["review-team"]["outcome"] == "created", (err, report["nodes"]["review-team"])
    assert len(cli.studio().teams_by_label()["review-team"]) == 1


@pytest.mark.parametrize("damage", ["broken", "duplicate"])
def test_the_gallery_entry_is_not_pruned_while_a_file_for_it_is_broken(
    cli: Cli, examples: Path, tmp_path: Path, damage: str
) -> None:
    """A broken file, or a second file with the same label, is no component gone from the tree."""
    tree = tmp_path / "solo-tools"
    (tree / "tools").mkdir(parents=True)
    shutil.copy(examples / "tools" / "add.yaml", tree / "tools" / "add.yaml")
    assert cli.sync(tree)[0] == 0

    def entries() -> list[int]:
        return [g["id"] for g in cli.studio().galleries() if g["config"].get("name") == "solo-tools"]

    (entry,) = entries()
    if damage == "broken":
        with (tree / "tools" / "add.yaml").open("a") as f:
            f.write("  bad: [\n")
    else:
        shutil.copy(tree / "tools" / "add.yaml", tree / "tools" / "add-copy.yaml")
    plan = cli.run("plan", str(tree), "--json")
    assert plan.returncode == 1 and json.loads(plan.stdout)["prune_gallery"] is None, plan.stdout
    rc, report, err = cli.sync(tree, "--prune")
    assert rc != 0 and "Traceback" not in err
    assert report["counts"]["deleted"] == 0
    assert entries() == [entry]


def test_a_tree_named_as_another_trees_gallery_entry_is_refused_until_given_its_own(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    """Two trees whose folders share a name would take each other's components out of one entry."""
    first, second = tmp_path / "a" / "configs", tmp_path / "b" / "configs"
    for tree, part in ((first, "tools/add.yaml"), (second, "terminations/max-12.yaml")):
        (tree / part).parent.mkdir(parents=True)
        shutil.copy(examples / part, tree / part)
    assert cli.sync(first)[0] == 0
    (entry,) = [g for g in cli.studio().galleries() if g["config"].get("name") == "configs"]

    rc, _, err = cli.sync(second)
    assert rc == 2 and "Traceback" not in err, err
    assert f"the gallery entry 'configs' is the tree {first}'s" in err and "--gallery" in err
    (still,) = [g for g in cli.studio().galleries() if g["config"].get("name") == "configs"]
    assert still["config"] == entry["config"]

    assert cli.sync(second, "--gallery", "configs-b")[0] == 0
    names = {g["config"].get("name") for g in cli.studio().galleries()}
    assert {"configs", "configs-b"} <= names
    shutil.rmtree(first)  # the tree that made it is gone (moved, say): the entry is this one's to take
    assert cli.sync(second)[0] == 0


def test_a_team_another_tree_wrote_is_refused_not_overwritten_and_its_prune_keeps_it(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    """Two trees with the same team label in one Studio user would rewrite each other's row at
    every sync: the second is refused for that team (naming the first), the rest of it syncs;
    `--force` takes the row over, and then the first tree is refused in turn."""
    second = tmp_path / "second"
    shutil.copytree(examples, second)
    solo = second / "teams" / "solo-team.json"
    solo.write_text(solo.read_text().replace("The researcher alone", "The second tree's researcher"))
    assert cli.sync(examples)[0] == 0
    rows = {label: [r["id"] for r in found] for label, found in cli.studio().teams_by_label().items()}

    # the plan says so first, naming each, and exits as the sync will
    planned = cli.run("plan", str(second), "--gallery", "second", "--json")
    assert planned.returncode == 1, planned.stderr
    said = json.loads(planned.stdout)["refused"]
    assert set(said) == {"research-team", "review-team", "solo-researcher"}, said
    assert all(f"its Studio row is the tree {examples}'s" in why for why in said.values()), said
    plain = cli.run("sync", str(second), "--gallery", "second", "--dry-run")
    assert plain.returncode == 1 and "refused solo-researcher: its Studio row is the tree" in plain.stdout, plain

    rc, report, err = cli.sync(second, "--gallery", "second")
    assert rc == 1 and "Traceback" not in err, err
    refused = {label: st for label, st in report["nodes"].items() if st["status"] == "failed"}
    assert set(refused) == {"research-team", "review-team", "solo-researcher"}, refused
    assert all(f"its Studio row is the tree {examples}'s" in st["error"] for st in refused.values()), refused
    assert report["counts"]["created"] > 0  # its gallery entry and members are synced all the same
    after = {label: [r["id"] for r in found] for label, found in cli.studio().teams_by_label().items()}
    assert after == rows  # no row written, none added
    assert cli.sync(examples)[1]["counts"]["unchanged"] >= 3  # the first tree: nothing to undo

    assert cli.sync(second, "--gallery", "second", "--force")[0] == 0
    (row,) = cli.studio().teams_by_label()["solo-researcher"]
    assert "The second tree's researcher" in json.dumps(row["component"])
    rc, report, _ = cli.sync(examples)
    assert rc == 1 and report["nodes"]["solo-researcher"]["status"] == "failed", report["nodes"]
    (examples / "teams" / "solo-team.json").unlink()
    assert cli.sync(examples, "--prune")[0] in (0, 1)
    assert len(cli.studio().teams_by_label()["solo-researcher"]) == 1  # the second tree's, kept


def test_rows_taken_over_with_force_void_the_other_trees_no_change_and_are_not_its_to_prune(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    """The second tree is a copy (the same content): `--force` takes the rows over without a write.
    The first tree's next sync is refused for them, not answered "no change" from its record; and the
    second tree adopted them, so its prune leaves the rows the first one created."""
    second = tmp_path / "second"
    shutil.copytree(examples, second)
    assert cli.sync(examples)[0] == 0
    assert cli.sync(examples)[1].get("no_change") is True
    assert cli.sync(second, "--gallery", "second", "--force")[0] == 0

    rc, report, _ = cli.sync(examples)
    assert rc == 1 and not report.get("no_change"), report.get("counts")
    assert report["nodes"]["research-team"]["status"] == "failed", report["nodes"]["research-team"]

    (second / "teams" / "research-team.yaml").unlink()
    assert cli.sync(second, "--gallery", "second", "--prune")[0] == 0
    assert len(cli.studio().teams_by_label().get("research-team", [])) == 1  # the first tree's row, kept


def test_two_trees_of_one_folder_name_synced_at_the_same_moment_one_is_refused(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    """Both would find no owner of the entry yet: the claim is atomic, so one syncs and the other
    is refused as it is when they come one after the other."""
    trees = [tmp_path / side / "configs" for side in ("a", "b")]
    for tree, part in zip(trees, ("tools/add.yaml", "terminations/max-12.yaml"), strict=True):
        (tree / part).parent.mkdir(parents=True)
        shutil.copy(examples / part, tree / part)
    procs = [cli.start("sync", str(tree), "--json") for tree in trees]
    ends = [(proc.wait(timeout=120), proc.communicate()[1]) for proc in procs]
    assert sorted(code for code, _ in ends) == [0, 2], ends
    refused = next(err for code, err in ends if code == 2)
    assert "the gallery entry 'configs' is the tree " in refused and "--gallery" in refused, refused
    assert len([g for g in cli.studio().galleries() if g["config"].get("name") == "configs"]) == 1


def test_a_broken_file_leaves_its_component_in_the_gallery_entry_until_the_tree_is_clean(
    cli: Cli, examples: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "two-parts"
    for part in ("tools/add.yaml", "terminations/max-12.yaml"):
        (tree / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(examples / part, tree / part)
    assert cli.sync(tree)[0] == 0

    def labels() -> dict[str, list[str]]:
        (entry,) = [g for g in cli.studio().galleries() if g["config"].get("name") == "two-parts"]
        sections = entry["config"]["components"].items()
        return {section: sorted(c["label"] for c in comps) for section, comps in sections if comps}

    synced = labels()
    assert synced == {"tools": ["add"], "terminations": ["max-12-messages"]}
    added = (tree / "tools" / "add.yaml").read_text()
    (tree / "tools" / "add.yaml").write_text(added + "  bad: [\n")
    (tree / "terminations" / "max-12.yaml").write_text(
        (tree / "terminations" / "max-12.yaml").read_text().replace("max_messages: 12", "max_messages: 13")
    )
    rc, report, err = cli.sync(tree)
    assert rc == 1 and report["nodes"]["max-12-messages"]["outcome"] == "updated", err
    assert labels() == synced  # the broken file's tool is still there, beside the edited termination
    assert cli.sync(tree)[0] == 1 and labels() == synced  # and stays, sync after sync

    (tree / "tools" / "add.yaml").unlink()  # gone from a clean tree: gone from the entry
    assert cli.sync(tree)[0] == 0
    assert labels() == {"terminations": ["max-12-messages"]}
