"""A tree brought up to date after an edit (shared/core/tree_update.py) is the tree a full build
gives, whatever the edit; only an edit of content alone takes the short way."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.core.errors import ConfigError
from shared.core.facts import FileFacts, file_facts
from shared.core.tree import Tree, TreeLimits, build_tree
from shared.core.tree_update import LastTree, tree_of

Docs = dict[str, "dict[str, Any] | ConfigError"]
ENV = {"KEY": "set"}


def _comp(provider: str, ctype: str, label: str, **config: object) -> dict[str, Any]:
    return {"provider": provider, "component_type": ctype, "label": label, "config": config}


def _docs() -> Docs:
    """A model, tools, a termination, agents, teams, a workflow and a broken file."""
    docs: Docs = {
        "models/m.json": _comp(
            "autogen_ext.models.openai.OpenAIChatCompletionClient", "model", "m", model="gpt-4o-mini", api_key="${KEY}"
        ),
        "terminations/t.json": _comp(
            "autogen_agentchat.conditions.MaxMessageTermination", "termination", "t", max_messages=5
        ),
        "workflows/w.yaml": {"kind": "workflow", "name": "w", "tasks": []},
        "broken.json": ConfigError(path="broken.json", message="not JSON"),
    }
    for i in range(4):
        source = f"def f{i}(a: int) -> int:\n    return a\n"
        docs[f"tools/f{i}.json"] = _comp(
            "autogen_core.tools.FunctionTool", "tool", f"f{i}", name=f"f{i}", description="adds", source_code=source
        )
        docs[f"agents/a{i}.json"] = _comp(
            "autogen_agentchat.agents.AssistantAgent",
            "agent",
            f"a{i}",
            name=f"a{i}",
            description=f"agent {i}",
            model_client={"$ref": "m"},
            tools=[{"$ref": f"f{i}"}],
        )
    for i in range(3):
        members = [{"$ref": f"a{i}"}, {"$ref": f"a{i + 1}"}]
        docs[f"teams/t{i}.json"] = _comp(
            "autogen_agentchat.teams.RoundRobinGroupChat",
            "team",
            f"team{i}",
            participants=members,
            termination_condition={"$ref": "t"},
        )
    return docs


def _facts(docs: Docs, earlier: dict[str, FileFacts] | None = None) -> dict[str, FileFacts]:
    """Each good file's facts; an unchanged file's are the earlier object, as the scanner hands out."""
    facts = {}
    for path, doc in docs.items():
        if isinstance(doc, ConfigError):
            continue
        ff = file_facts(path, doc)
        old = (earlier or {}).get(path)
        facts[path] = old if old is not None and old.content_hash == ff.content_hash else ff
    return facts


def _seen(tree: Tree) -> dict[str, Any]:
    """Everything of a tree a sync uses."""
    return {
        "nodes": {
            lbl: (n.path, n.component_type, n.deps, n.key, n.content_hash, n.size, n.resolved_size, n.spec)
            for lbl, n in tree.nodes.items()
        },
        "errors": [e.model_dump() for e in tree.errors],
        "invalid": tree.invalid,
        "skipped": tree.skipped,
        "broken": tree.broken_files,
        "workflows": tree.workflow_files,
        "valid": tree.valid,
    }


def _after(docs: Docs, edit: Any, limits: TreeLimits | None = None, env: dict[str, str] = ENV) -> tuple[Tree, bool]:
    """The tree after `edit(docs)`, from the last tree of `docs`; and whether it took the short way.
    Checked against a full build of the edited files."""
    limits = limits or TreeLimits()
    facts = _facts(docs)
    _, last = tree_of(docs, ENV, facts, limits)
    edited = copy.deepcopy(docs)
    edit(edited)
    new_facts = _facts(edited, facts)
    tree, kept = tree_of(edited, env, new_facts, limits, last)
    assert _seen(tree) == _seen(build_tree(edited, env, new_facts, limits))
    assert isinstance(kept, LastTree) and kept.tree is tree
    return tree, kept.dependents is last.dependents


def _set(path: str, *keys: str, value: object) -> Any:
    def edit(docs: Docs) -> None:
        target: Any = docs[path]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def test_an_edited_agent_gets_a_new_key_and_so_do_the_teams_that_embed_it_only() -> None:
    before = build_tree(_docs(), ENV, _facts(_docs()))
    tree, short = _after(_docs(), _set("agents/a1.json", "config", "description", value="edited"))
    assert short
    changed = {lbl for lbl in tree.nodes if tree.nodes[lbl].key != before.nodes[lbl].key}
    assert changed == {"a1", "team0", "team1"}


def test_an_edited_model_reaches_every_node_above_it() -> None:
    before = build_tree(_docs(), ENV, _facts(_docs()))
    tree, short = _after(_docs(), _set("models/m.json", "config", "model", value="gpt-4o"))
    assert short
    changed = {lbl for lbl in tree.nodes if tree.nodes[lbl].key != before.nodes[lbl].key}
    assert changed == {"m", "a0", "a1", "a2", "a3", "team0", "team1", "team2"}


def test_an_edited_workflow_changes_no_node() -> None:
    before = build_tree(_docs(), ENV, _facts(_docs()))
    tree, short = _after(_docs(), _set("workflows/w.yaml", "goal", value="another"))
    assert short and {lbl: n.key for lbl, n in tree.nodes.items()} == {lbl: n.key for lbl, n in before.nodes.items()}


def _drop(path: str) -> Any:
    return lambda docs: docs.pop(path)


def _add(path: str, doc: dict[str, Any]) -> Any:
    return lambda docs: docs.__setitem__(path, doc)


@pytest.mark.parametrize(
    "edit",
    [
        _set("agents/a1.json", "config", "tools", value=[{"$ref": "f1"}, {"$ref": "f2"}]),  # a reference more
        _set("agents/a1.json", "label", value="renamed"),
        _set("agents/a1.json", "config", "model_client", value={"$ref": "nobody"}),  # unknown reference
        _set("agents/a1.json", "config", "description", value="${UNSET}"),  # a variable not set
        _set("agents/a1.json", "provider", value=7),  # an error of its own
        _set("tools/f0.json", "label", value="f1"),  # a duplicate label
        _drop("agents/a3.json"),
        _add("agents/a9.json", {"provider": "x.Y", "component_type": "agent", "label": "a9", "config": {}}),
        lambda docs: docs.__setitem__("broken.json", ConfigError(path="broken.json", message="other")),
        lambda docs: docs.__setitem__("agents/a0.json", ConfigError(path="agents/a0.json", message="bad YAML")),
    ],
    ids=[
        "ref-added",
        "relabelled",
        "unknown-ref",
        "unset-variable",
        "own-error",
        "duplicate",
        "removed",
        "added",
        "broken-changed",
        "broke",
    ],
)
def test_any_other_edit_builds_the_tree_anew(edit: Any) -> None:
    _, short = _after(_docs(), edit)
    assert not short


def test_an_invalid_node_edited_or_below_an_edit_builds_anew() -> None:
    def both(docs: Docs) -> None:
        _set("agents/a1.json", "config", "description", value="${UNSET}")(docs)

    docs = _docs()
    both(docs)  # a1 invalid, team0 and team1 skipped
    _, short = _after(docs, _set("agents/a1.json", "config", "name", value="other"))
    assert not short  # a1 itself
    _, short = _after(docs, _set("tools/f1.json", "config", "description", value="other"))
    assert not short  # f1 is valid; a1 above it is not


def test_an_edit_over_the_size_limit_builds_anew_and_names_it() -> None:
    docs = _docs()
    limits = TreeLimits(max_request_bytes=4000)
    assert not build_tree(docs, ENV, limits=limits).invalid  # all fit before
    tree, short = _after(docs, _set("tools/f0.json", "config", "source_code", value="x" * 3000), limits)
    assert not short and "team0" in tree.invalid and "MAX_REQUEST_BYTES" in tree.invalid["team0"]


def test_facts_read_back_from_the_cache_compare_as_the_parsed_ones() -> None:
    """The scanner's cache holds pairs as JSON lists: the same references all the same."""
    docs = _docs()
    facts = {p: FileFacts.from_json(ff.to_json()) for p, ff in _facts(docs).items()}
    _, last = tree_of(docs, ENV, facts, TreeLimits())
    edited = copy.deepcopy(docs)
    _set("agents/a2.json", "config", "description", value="edited")(edited)
    new_facts = {**facts, "agents/a2.json": file_facts("agents/a2.json", edited["agents/a2.json"])}  # type: ignore[arg-type]
    tree, kept = tree_of(edited, ENV, new_facts, TreeLimits(), last)
    assert kept.dependents is last.dependents
    assert _seen(tree) == _seen(build_tree(edited, ENV, new_facts))


def test_another_environment_builds_anew() -> None:
    _, short = _after(_docs(), _set("agents/a1.json", "config", "description", value="x"), env=ENV | {"OTHER": "set"})
    assert not short
