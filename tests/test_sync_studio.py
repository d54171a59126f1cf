"""`producer sync` end to end: real Redis, real celery workers, a real AutoGen Studio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from shared.core.hashing import namespace
from tests.conftest import ROOT, Cli
from tests.studio_proxy import StudioProxy

pytestmark = pytest.mark.integration

EXAMPLE_TEAMS = {"research-team", "review-team", "solo-researcher"}
EXAMPLE_GALLERY = {
    "models": {"local-llm", "gpt-4o-mini"},
    "tools": {"add", "multiply"},
    "agents": {"researcher", "writer", "critic"},
    "terminations": {"approve-mentioned", "max-12-messages", "approve-or-max"},
}


def _gallery_labels(cli: Cli, name: str) -> dict[str, set[str]]:
    entries = [g for g in cli.studio().galleries() if g["config"]["name"] == name]
    assert len(entries) == 1, f"expected one gallery entry named {name!r}, found {len(entries)}"
    comps = entries[0]["config"]["components"]
    return {section: {c["label"] for c in comps[section]} for section in EXAMPLE_GALLERY}


def test_sync_examples_creates_team_rows_and_gallery(cli: Cli, examples: Path) -> None:
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert report["counts"]["failed"] == 0 and report["counts"]["skipped"] == 0
    rows = cli.studio().teams_by_label()
    for label in EXAMPLE_TEAMS:
        assert len(rows.get(label, [])) == 1, f"{label}: {len(rows.get(label, []))} rows"
        row = rows[label][0]
        state = report["nodes"][label]
        assert state["outcome"] == "created" and state["team_id"] == row["id"]
        # the participants were inlined from their own files
        assert row["component"]["config"]["participants"][0]["provider"] == "autogen_agentchat.agents.AssistantAgent"
        assert len(row["version"]) == 64  # the content hash
    assert _gallery_labels(cli, examples.name) == EXAMPLE_GALLERY
    assert "Started" not in err  # REDIS_URL was given: no embedded services


def test_second_sync_writes_nothing_and_enqueues_nothing(
    cli: Cli, examples: Path, proxy: StudioProxy, redis_url: str
) -> None:
    assert cli.sync(examples)[0] == 0
    proxy.reset()
    r = redis.Redis.from_url(redis_url)
    task_results_before = sum(1 for _ in r.scan_iter("celery-task-meta-*", count=1000))
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    # reads only, to see that no row was edited in Studio since (drift) and that the gallery entry
    # is still as written; no write, nothing enqueued
    gallery = _gallery_id(cli, examples.name)
    assert sorted((m, p) for m, p, _ in proxy.requests) == [("GET", f"/api/gallery/{gallery}"), ("GET", "/api/teams/")]
    assert report["studio_requests"] == {}
    assert set(report["counts"]) >= {"unchanged"} and report["counts"]["unchanged"] == 15
    assert sum(1 for _ in r.scan_iter("celery-task-meta-*", count=1000)) == task_results_before
    assert r.llen("studio") == 0 and r.llen("models") == 0


def test_editing_one_agent_updates_exactly_its_teams_in_place(cli: Cli, examples: Path, proxy: StudioProxy) -> None:
    assert cli.sync(examples)[0] == 0
    before = {lbl: rows[0] for lbl, rows in cli.studio().teams_by_label().items() if lbl in EXAMPLE_TEAMS}
    critic = examples / "agents" / "critic.yaml"
    critic.write_text(
        critic.read_text().replace(
            "Reply APPROVE when it is good enough.", "Be strict; reply APPROVE only when it is good."
        )
    )
    proxy.reset()

    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    after = {lbl: rows for lbl, rows in cli.studio().teams_by_label().items() if lbl in EXAMPLE_TEAMS}
    assert all(len(rows) == 1 for rows in after.values())
    # review-team uses the critic: updated in place, same row id
    assert after["review-team"][0]["id"] == before["review-team"]["id"]
    assert after["review-team"][0]["updated_at"] != before["review-team"]["updated_at"]
    assert "Be strict" in after["review-team"][0]["component"]["config"]["participants"][1]["config"]["system_message"]
    # the other teams were not written at all
    for label in ("research-team", "solo-researcher"):
        assert after[label][0]["updated_at"] == before[label]["updated_at"]
        assert report["nodes"][label]["status"] == "cached"
    assert report["nodes"]["review-team"]["outcome"] == "updated"
    assert report["nodes"]["critic"]["outcome"] == "updated"
    writes = proxy.writes()
    assert sorted(w[:2] for w in writes) == [
        ("POST", "/api/teams/"),
        ("PUT", f"/api/gallery/{_gallery_id(cli, examples.name)}"),
    ]


def _gallery_id(cli: Cli, name: str) -> int:
    return next(g["id"] for g in cli.studio().galleries() if g["config"]["name"] == name)


def _gallery(cli: Cli, name: str) -> dict[str, Any]:
    return next(g for g in cli.studio().galleries() if g["config"]["name"] == name)


def _agent(config: dict[str, Any], label: str) -> dict[str, Any]:
    return next(a for a in config["components"]["agents"] if a["label"] == label)


def _edit_critic(examples: Path, text: str) -> None:
    critic = examples / "agents" / "critic.yaml"
    critic.write_text(critic.read_text().replace("Reply APPROVE when", f"{text} Reply APPROVE when"))


def test_an_edit_writes_the_gallery_entry_a_full_rewrite_writes(cli: Cli, examples: Path, redis_url: str) -> None:
    """An edit's run carries only what it syncs: the entry's other members come from the entry in
    Studio when it holds what the last sync wrote, else from the specs kept in Redis. Either way
    the entry is the one `--force` writes, and an edit made in Studio is written over, as before."""
    import httpx

    assert cli.sync(examples)[0] == 0
    entry = _gallery(cli, examples.name)
    _agent(entry["config"], "writer")["description"] = "edited in Studio"
    params = {"user_id": cli.user_id}
    body = {"user_id": cli.user_id, "config": entry["config"]}
    httpx.put(f"{cli.studio().url}/api/gallery/{entry['id']}", params=params, json=body).raise_for_status()
    r = redis.Redis.from_url(redis_url)
    kept = list(r.scan_iter(f"agentq:{namespace(cli.studio_url, cli.user_id)}:spec:*", count=1000))
    assert len(kept) == sum(len(labels) for labels in EXAMPLE_GALLERY.values())  # every member's, by its key
    r.delete(*kept)  # expired: the producer keeps them again

    _edit_critic(examples, "Be strict.")
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    config = _gallery(cli, examples.name)["config"]
    assert _agent(config, "writer")["description"] != "edited in Studio"
    assert "Be strict." in _agent(config, "critic")["config"]["system_message"]
    assert report["nodes"]["writer"]["status"] == "cached" and report["nodes"]["critic"]["outcome"] == "updated"

    _edit_critic(examples, "Be brief.")  # the entry holds what the last sync wrote: the others are taken from it
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    patched = _gallery(cli, examples.name)["config"]
    assert "Be brief." in _agent(patched, "critic")["config"]["system_message"]
    assert report["counts"]["updated"] == 2 and report["counts"]["unchanged"] == 13  # critic, review-team
    rc, _, err = cli.sync(examples, "--force")
    assert rc == 0, err
    assert _gallery(cli, examples.name)["config"] == patched


BROKEN = {
    "broken/malformed.yaml": b"provider: x\nconfig: [unclosed\n",
    "broken/latin1.yaml": "label: caf\xe9\n".encode("latin-1"),
    "broken/unknown-type.yaml": b"provider: x.Y\ncomponent_type: robot\nlabel: robot\nconfig: {}\n",
    "broken/no-config.json": b'{"provider": "x.Y", "component_type": "tool", "label": "no-config"}',
    "broken/dup-writer.yaml": b"provider: x.Y\ncomponent_type: agent\nlabel: writer\nconfig: {}\n",
    "broken/bad-ref-team.yaml": (
        b"provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\nlabel: ghost-team\n"
        b"config:\n  participants:\n    - $ref: researcher\n    - $ref: ghost\n"
    ),
    "broken/needs-secret.yaml": (
        b"provider: autogen_ext.models.openai.OpenAIChatCompletionClient\ncomponent_type: model\nlabel: secret-model\n"
        b"config:\n  model: gpt-4o\n  api_key: ${AGENTQ_TEST_UNSET_KEY}\n"
    ),
    # passes our schema, but Studio cannot import the provider: Studio's own error, dependents skipped
    "broken/studio-invalid.yaml": (
        b"provider: autogen_agentchat.agents.NoSuchAgent\ncomponent_type: agent\nlabel: phantom\nconfig: {name: phantom}\n"
    ),
    "broken/phantom-team.yaml": (
        b"provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\nlabel: phantom-team\n"
        b"config:\n  participants:\n    - $ref: phantom\n  termination_condition: {$ref: max-12-messages}\n"
    ),
}


def test_a_gallery_entry_deleted_in_studio_is_written_again(cli: Cli, examples: Path) -> None:
    """A cached result counts only while Studio holds it: neither the no-change answer nor the
    plan may trust an entry that was deleted."""
    assert cli.sync(examples)[0] == 0
    rc, report, err = cli.sync(examples)
    assert rc == 0 and report.get("no_change") is True, err
    entry = _gallery(cli, examples.name)
    httpx.delete(f"{cli.view_url}/api/gallery/{entry['id']}", params={"user_id": cli.user_id}, timeout=30)

    plan = json.loads(cli.run("plan", str(examples), "--json").stdout)
    assert plan["gallery_write"] is True and plan["gallery_entry"] == "gone"
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    assert not report.get("no_change")
    assert {report["nodes"][m]["outcome"] for s in EXAMPLE_GALLERY.values() for m in s} == {"created"}
    assert _gallery_labels(cli, examples.name) == EXAMPLE_GALLERY
    assert _gallery(cli, examples.name)["config"]["components"] == entry["config"]["components"]
    rc, report, err = cli.sync(examples)
    assert rc == 0 and report.get("no_change") is True, err


def test_an_entry_another_tree_wrote_into_is_written_back(cli: Cli, examples: Path, tmp_path: Path) -> None:
    """`sync other --gallery NAME` replaces what tree NAME keeps there; the next sync of that tree,
    unchanged on disk, puts its own members back."""
    assert cli.sync(examples)[0] == 0
    assert cli.sync(examples)[1].get("no_change") is True
    other = tmp_path / "other"
    (other / "tools").mkdir(parents=True)
    (other / "tools" / "add.yaml").write_text((examples / "tools" / "add.yaml").read_text())
    rc, _, err = cli.sync(other, "--gallery", examples.name)
    assert rc == 0, err
    assert _gallery(cli, examples.name)["config"]["components"]["agents"] == []

    assert cli.run("plan", str(examples), "--json").stdout.count('"gallery_write": true') == 1
    rc, report, err = cli.sync(examples)
    assert rc == 0 and not report.get("no_change"), err
    assert _gallery_labels(cli, examples.name) == EXAMPLE_GALLERY


def test_broken_files_are_reported_and_the_rest_is_synced(cli: Cli, examples: Path) -> None:
    for rel, data in BROKEN.items():
        (examples / rel).parent.mkdir(exist_ok=True)
        (examples / rel).write_bytes(data)
    rc, report, err = cli.sync(examples)
    assert rc != 0
    nodes = report["nodes"]
    errors = {k: v.get("error", "") for k, v in nodes.items() if v["status"] == "failed"}
    # files without a usable label are reported by path, the others by label with their path
    for rel in ("broken/malformed.yaml", "broken/latin1.yaml"):
        assert rel in errors and errors[rel], f"{rel} not reported: {errors}"
    assert "malformed YAML at line 3" in errors["broken/malformed.yaml"]
    assert "UTF-8" in errors["broken/latin1.yaml"]
    assert "broken/unknown-type.yaml: component_type: unknown component type 'robot'" in errors["robot"]
    assert "broken/no-config.json: config: required field is missing" in errors["no-config"]
    assert "duplicate label 'writer'" in errors["writer"] and "broken/dup-writer.yaml" in errors["writer"]
    assert "duplicate label 'writer'" in errors["broken/dup-writer.yaml"], errors  # both files, each its line
    assert "broken/bad-ref-team.yaml" in errors["ghost-team"] and "participants[1]" in errors["ghost-team"]
    assert "AGENTQ_TEST_UNSET_KEY" in errors["secret-model"] and "config.api_key" in errors["secret-model"]
    assert "Studio validation failed" in errors["phantom"]
    assert nodes["phantom-team"]["status"] == "skipped" and "phantom" in nodes["phantom-team"]["reason"]
    # everything that depends on the duplicated 'writer' label is skipped; the rest is synced
    assert nodes["research-team"]["status"] == "skipped" and nodes["review-team"]["status"] == "skipped"
    rows = cli.studio().teams_by_label()
    assert len(rows.get("solo-researcher", [])) == 1
    assert not {"ghost-team", "phantom-team", "research-team", "review-team"} & set(rows)
    gallery = _gallery_labels(cli, examples.name)
    assert (
        gallery["tools"] == {"add", "multiply"} and "critic" in gallery["agents"] and "phantom" not in gallery["agents"]
    )


def test_a_reference_to_a_component_of_the_wrong_type_names_the_file_field_and_types(cli: Cli, examples: Path) -> None:
    """AutoGen's "Expected type does not match" named neither the field nor what it held: a user
    had to guess which `$ref` of which file was wrong."""
    writer = examples / "agents" / "writer.yaml"
    writer.write_text(writer.read_text().replace("model_client: {$ref: local-llm}", "model_client: {$ref: add}"))
    rc, report, _ = cli.sync(examples)
    assert rc == 1
    said = "agents/writer.yaml: config.model_client refers to 'add' (tools/add.yaml), a tool; it holds a model"
    writer_error = report["nodes"]["writer"].get("error", "")
    assert "Expected type does not match" in writer_error and said in writer_error, writer_error
    assert report["counts"]["created"] > 0  # the rest is synced

    # one written inline in a team, beside an agent whose model is filed as a tool: AutoGen loads
    # a model client by its class, so only the inline one is named
    writer.write_text(writer.read_text().replace("model_client: {$ref: add}", "model_client: {$ref: local-llm}"))
    model = (examples / "models" / "local-llm.yaml").read_text()
    (examples / "models" / "filed-as-tool.yaml").write_text(
        model.replace("component_type: model", "component_type: tool").replace(
            "label: local-llm", "label: filed-as-tool"
        )
    )
    agent = yaml.safe_load(writer.read_text())
    ok = {
        **agent,
        "label": "agent-ok",
        "config": {**agent["config"], "name": "ok", "model_client": {"$ref": "filed-as-tool"}},
    }
    inline = {k: v for k, v in agent.items() if k != "label"}
    inline["config"] = {**agent["config"], "name": "inline", "model_client": {"$ref": "add"}}
    team = {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "label": "mixed",
        "config": {
            "participants": [{"$ref": "agent-ok"}, inline],
            "termination_condition": {"$ref": "max-12-messages"},
        },
    }
    (examples / "agents" / "agent-ok.yaml").write_text(yaml.safe_dump(ok))
    (examples / "teams" / "mixed.yaml").write_text(yaml.safe_dump(team))
    rc, report, _ = cli.sync(examples)
    error = report["nodes"]["mixed"].get("error", "")
    inline_said = (
        "teams/mixed.yaml: config.participants[1].config.model_client refers to 'add' (tools/add.yaml), a tool"
    )
    assert rc == 1 and inline_said in error and "filed-as-tool" not in error, error
    assert report["nodes"]["agent-ok"]["status"] != "failed", report["nodes"]["agent-ok"]


def test_two_syncs_of_one_tree_at_once_write_each_row_once(cli: Cli, examples: Path, proxy: StudioProxy) -> None:
    """Two CI jobs syncing one repository into one Studio user at the same time: neither finds a
    row, both would create it. One does; the other finds what it created."""
    proxy.delay = 0.05  # the two runs overlap for the length of the sync
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "sync", str(examples), "--json"],
            env=cli.env(AGENTQ_CACHE_DIR=str(examples.parent / f"cache-{i}")),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert json.loads(out)["counts"]["failed"] == 0
    teams = cli.studio().teams_by_label()
    assert {label: len(rows) for label, rows in teams.items() if label in EXAMPLE_TEAMS} == dict.fromkeys(
        EXAMPLE_TEAMS, 1
    )
    assert _gallery_labels(cli, examples.name) == EXAMPLE_GALLERY  # one entry, with every member
