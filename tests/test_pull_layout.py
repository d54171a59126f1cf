"""The pure layout of `producer pull` (shared/core/pull_layout.py), without servers."""

from __future__ import annotations

import copy
from typing import Any

from shared.core.pull_layout import Existing, plan_pull, variable_name


def _model(label: str = "gpt", key: str = "sk-secret-1") -> dict[str, Any]:
    return {
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "component_type": "model",
        "label": label,
        "config": {"model": "gpt-4o-mini", "api_key": key},
    }


def _agent(name: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "label": name,
        "config": {"name": name, "model_client": copy.deepcopy(model), "system_message": f"I am {name}."},
    }


def _team(label: str, *agents: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "label": label,
        "config": {"participants": [copy.deepcopy(a) for a in agents]},
    }


def test_parts_in_two_teams_get_files_and_refs_and_secrets_become_variables() -> None:
    writer = _agent("writer", _model())
    solo = _agent("solo", _model())
    layout = plan_pull([_team("t1", writer), _team("t2", writer, solo)], [], {}, {})
    files = {f.path: f for f in layout.files}
    assert set(files) == {"teams/t1.yaml", "teams/t2.yaml", "agents/writer.yaml", "models/gpt.yaml"}
    assert files["teams/t1.yaml"].document["config"]["participants"] == [{"$ref": "writer"}]
    # used once: stays inline, its model a reference
    inline = files["teams/t2.yaml"].document["config"]["participants"][1]
    assert inline["label"] == "solo" and inline["config"]["model_client"] == {"$ref": "gpt"}
    assert files["models/gpt.yaml"].document["config"]["api_key"] == "${GPT_API_KEY}"
    assert "sk-secret" not in repr([f.document for f in layout.files])
    assert list(layout.variables) == ["GPT_API_KEY"]


def test_one_label_with_two_contents_stays_inline_where_it_differs() -> None:
    a1 = _agent("helper", _model())
    a2 = copy.deepcopy(a1)
    a2["config"]["system_message"] = "Another helper."
    layout = plan_pull([_team("t1", a1), _team("t2", a1), _team("t3", a2)], [], {}, {})
    files = {f.path: f.document for f in layout.files}
    assert files["teams/t1.yaml"]["config"]["participants"] == [{"$ref": "helper"}]
    assert files["teams/t3.yaml"]["config"]["participants"][0]["config"]["system_message"] == "Another helper."


def test_a_file_that_says_the_same_is_untouched_and_its_variables_kept() -> None:
    team = _team("t1", _agent("writer", _model(key="sk-live")))
    written = {
        "provider": team["provider"],
        "component_type": "team",
        "label": "t1",
        "config": {"participants": [{"$ref": "writer"}]},
    }
    existing = {"t1": Existing("t1", "teams/t1.json", "team", written, team)}
    layout = plan_pull([team], [], existing, {})
    assert [(f.path, f.action) for f in layout.files] == [("teams/t1.json", "unchanged")]

    # edited in Studio: the file is updated in place (JSON stays JSON), its ${VAR}s kept
    edited = copy.deepcopy(team)
    edited["config"]["participants"][0]["config"]["system_message"] = "Edited."
    old_agent = _agent("writer", _model(key="${MY_KEY}"))
    old_agent["config"]["model_client"]["config"]["model"] = "${MODEL:-gpt-4o-mini}"
    sent_agent = _agent("writer", _model(key="sk-live"))
    existing = {
        "t1": Existing("t1", "teams/t1.json", "team", written, team),
        "writer": Existing("writer", "agents/writer.yaml", "agent", old_agent, sent_agent),
    }
    layout = plan_pull([edited], [], existing, {})
    files = {f.path: f for f in layout.files}
    assert files["teams/t1.json"].action == "unchanged"  # still a $ref to the agent's file
    assert files["teams/t1.json"].format == "json"
    agent = files["agents/writer.yaml"]
    assert agent.action == "update"
    assert agent.document["config"]["system_message"] == "Edited."
    assert agent.document["config"]["model_client"]["config"]["api_key"] == "${MY_KEY}"
    assert agent.document["config"]["model_client"]["config"]["model"] == "${MODEL:-gpt-4o-mini}"
    assert "MY_KEY" in layout.variables


def test_labels_make_safe_paths_and_variable_names() -> None:
    team = _team("../../etc/passwd", _agent("a", _model(label="Azure GPT-4o")))
    layout = plan_pull([team], [], {}, {}, taken={"teams/etc-passwd.yaml"})  # a broken file has that path
    assert [f.path for f in layout.files] == ["teams/etc-passwd-2.yaml"]
    assert variable_name("Azure GPT-4o", "api_key") == "AZURE_GPT_4O_API_KEY"
    assert "AZURE_GPT_4O_API_KEY" in layout.variables


def test_a_long_label_gets_a_file_name_the_file_system_takes_and_stays_its_own() -> None:
    long_a, long_b = "L" * 5000 + "a", "L" * 5000 + "b"
    layout = plan_pull([_team(long_a, _agent("x", _model())), _team(long_b, _agent("x", _model()))], [], {}, {})
    names = [f.path.rsplit("/", 1)[-1] for f in layout.files if f.label in (long_a, long_b)]
    assert len(set(names)) == 2 and all(len(n.encode()) < 120 for n in names), names


def test_gallery_components_get_files_of_their_own() -> None:
    layout = plan_pull([], [_model(), _agent("writer", _model())], {}, {})
    files = {f.path: f.document for f in layout.files}
    assert set(files) == {"models/gpt.yaml", "agents/writer.yaml"}
    assert files["agents/writer.yaml"]["config"]["model_client"] == {"$ref": "gpt"}


def test_a_label_with_no_file_takes_its_placeholders_from_the_template_the_sync_recorded() -> None:
    """Into an empty tree: `${VAR:-default}`s come back as written, secrets keep their variable's
    name, and the variables to set are listed: those without a default (none invented; a pull of
    the examples listed LOCAL_LLM_MODEL and the rest, which their defaults cover)."""
    model = _model(key="not-needed")
    model["config"]["base_url"] = "http://127.0.0.1:11435/v1"
    template = copy.deepcopy(model)
    template["config"]["api_key"] = "${LOCAL_LLM_API_KEY:-not-needed}"
    template["config"]["base_url"] = "${LOCAL_LLM_BASE_URL:-http://127.0.0.1:11435/v1}"
    template["config"]["model"] = "$${LITERAL}"  # an escaped `${`: no variable
    model["config"]["model"] = "${LITERAL}"
    layout = plan_pull([], [model], {}, {}, templates={"gpt": template})

    (written,) = layout.files
    assert written.document["config"] == template["config"]
    assert not layout.variables  # each has its default
    # without the template: a secret gets a variable named for it, the rest is written as Studio holds it
    bare = plan_pull([], [model], {}, {})
    assert bare.files[0].document["config"]["api_key"] == "${GPT_API_KEY}"
    assert bare.files[0].document["config"]["base_url"] == "http://127.0.0.1:11435/v1"
    assert set(bare.variables) == {"GPT_API_KEY"}


def test_text_in_studio_that_reads_as_a_variable_is_pulled_as_that_text() -> None:
    """Studio's `${HOME}` is text: written `$${HOME}`, so the next sync sends that text, not the
    worker's $HOME; the old file's escaped `$${X}` stays escaped when the file changes otherwise."""
    from shared.core.refs import substitute_variables

    agent = _agent("writer", _model())
    agent["config"]["description"] = "Studio text: ${HOME} literally, $${X} too"
    layout = plan_pull([_team("t1", agent)], [], {}, {"HOME": "/root"})
    (team,) = [f.document for f in layout.files if f.path == "teams/t1.yaml"]
    doc = team["config"]["participants"][0]  # used once: inline
    assert doc["config"]["description"] == "Studio text: $${HOME} literally, $$${X} too"
    resolved = substitute_variables(doc, {"HOME": "/root", "GPT_API_KEY": "k"})
    assert resolved["config"]["description"] == agent["config"]["description"]
    assert "HOME" not in layout.variables

    old = _agent("writer", _model())
    old["config"]["system_message"] = "Say $${NOT_A_VAR}."
    sent = _agent("writer", _model())
    sent["config"]["system_message"] = "Say ${NOT_A_VAR}."
    edited = copy.deepcopy(sent)
    edited["config"]["description"] = "edited in Studio"
    existing = {"writer": Existing("writer", "agents/writer.yaml", "agent", old, sent)}
    layout = plan_pull([_team("t1", edited)], [], existing, {})
    (doc,) = [f.document for f in layout.files if f.path == "agents/writer.yaml"]
    assert doc["config"]["system_message"] == "Say $${NOT_A_VAR}."
