"""The table of component types (shared/core/components.py) drives every consumer: the spec, the
plan's gallery members, the gallery entry's sections, pull's folders and sections, which types a
workflow task may name, what is a model. A new type is one entry in the table: with a "memory"
entry added at run time it is accepted, planned, synced into Studio and pulled back."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from producer import embedded
from producer import pull as pull_module
from producer.planner import gallery_members, make_plan
from shared.core import components
from shared.core.components import ComponentKind
from shared.core.endpoints import agents_of, model_specs
from shared.core.facts import file_facts
from shared.core.pull_layout import plan_pull
from shared.core.specs import ComponentSpec, validate_spec
from shared.core.tree import build_tree
from shared.core.workflow import Workflow, agent_problems, check_workflow
from shared.settings import Settings
from tests.conftest import ROOT, WORKER_ENV, Cli

# Studio 0.4.2.2's gallery format (autogenstudio/datamodel/types.py GalleryComponents)
STUDIO_SECTIONS = {"agents", "models", "tools", "terminations", "teams"}
MEMORY_PROVIDER = "autogen_core.memory.ListMemory"
MEMORY = ComponentKind("memory", folder="memories", gallery_section="memories")


def comp(label: str, ctype: str, provider: str | None = None, **config: Any) -> dict[str, Any]:
    return {"provider": provider or f"pkg.{ctype}", "component_type": ctype, "label": label, "config": config}


def memory(label: str = "notes") -> dict[str, Any]:
    return comp(label, "memory", MEMORY_PROVIDER, name=label, memory_contents=[])


@pytest.fixture
def with_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table with a "memory" entry, as a new type is added: one entry."""
    monkeypatch.setattr(components, "COMPONENTS", MappingProxyType({**components.COMPONENTS, "memory": MEMORY}))


# --- the table itself -------------------------------------------------------------------------------


def test_the_table_is_immutable_and_keyed_by_name() -> None:
    assert all(name == kind.name for name, kind in components.COMPONENTS.items())
    with pytest.raises(TypeError):
        components.COMPONENTS["x"] = MEMORY  # type: ignore[index]
    with pytest.raises(AttributeError):
        components.COMPONENTS["team"].folder = "x"  # type: ignore[misc]


def test_refs_and_members_name_types_the_table_knows() -> None:
    for kind in components.COMPONENTS.values():
        for field_name, types in kind.refs.items():
            assert types and set(types) <= set(components.COMPONENTS), (kind.name, field_name)
        if kind.members is not None:
            assert kind.members in kind.refs and kind.member_type in components.COMPONENTS


def test_folders_and_sections_are_each_a_types_own() -> None:
    folders = [k.folder for k in components.COMPONENTS.values()]
    assert len(set(folders)) == len(folders)
    sections = [k.gallery_section for k in components.COMPONENTS.values() if k.gallery_section]
    assert len(set(sections)) == len(sections)


# --- each consumer reads it --------------------------------------------------------------------------


def test_specs_accept_exactly_the_tables_types() -> None:
    for ctype in components.COMPONENTS:
        assert isinstance(validate_spec("a.yaml", comp("a", ctype)), ComponentSpec)
    errors = validate_spec("a.yaml", comp("a", "memory"))
    assert isinstance(errors, list) and len(errors) == 1
    assert errors[0].field == "component_type"
    assert errors[0].message == (f"unknown component type 'memory'; expected one of {', '.join(components.COMPONENTS)}")
    for bad in (5, None, ["team"]):
        (err,) = validate_spec("a.yaml", comp("a", "team") | {"component_type": bad})  # type: ignore[misc]
        assert err.message.startswith(f"unknown component type {bad!r}")


def test_gallery_entry_carries_studios_sections_and_members_go_to_their_types() -> None:
    assert set(components.gallery_sections()) == STUDIO_SECTIONS
    by_type = {t: components.gallery_section(t) for t in components.COMPONENTS}
    assert by_type == {
        "model": "models",
        "agent": "agents",
        "team": None,  # rows of its own
        "tool": "tools",
        "termination": "terminations",
        "workbench": None,  # no list in Studio's gallery: validated, used by $ref
        "chat_completion_context": None,
    }
    assert set(components.member_sections()) == STUDIO_SECTIONS - {"teams"}


def test_plan_puts_in_the_gallery_exactly_the_types_with_a_section_and_no_rows() -> None:
    docs = {f"{t}/{t}.yaml": comp(f"x-{t}", t) for t in components.COMPONENTS}
    tree = build_tree(docs, {})
    assert sorted(tree.valid) == sorted(f"x-{t}" for t in components.COMPONENTS)
    expected = sorted(f"x-{t}" for t in components.COMPONENTS if components.gallery_section(t))
    assert gallery_members(tree) == expected


def test_pull_writes_each_type_into_its_folder() -> None:
    gallery = [comp(f"x-{t}", t) for t in components.COMPONENTS if not components.has_rows(t)]
    teams = [comp(f"x-{t}", t) for t in components.COMPONENTS if components.has_rows(t)]
    layout = plan_pull(teams, gallery, {}, {})
    assert {f.label: f.path.split("/")[0] for f in layout.files} == {
        f"x-{k.name}": k.folder for k in components.COMPONENTS.values()
    }
    assert layout.warnings == []


def test_a_type_the_table_does_not_know_is_not_pulled() -> None:
    layout = plan_pull([], [memory()], {}, {})
    assert layout.files == [] and layout.warnings == ["skipped a memory with no label or of an unknown type"]


def test_workflow_tasks_run_on_the_tables_runnable_types() -> None:
    assert components.runnable_types() == ("agent", "team")
    model = comp("m", "model", model="gpt")
    agent = comp("a", "agent", "autogen_agentchat.agents.AssistantAgent", model_client={"$ref": "m"})
    tree = build_tree({"m.yaml": model, "a.yaml": agent}, {})
    wf = Workflow.model_validate(
        {
            "name": "w",
            "tasks": [{"id": "1", "description": "d", "agent": "m"}, {"id": "2", "description": "d", "agent": "a"}],
        }
    )
    messages = [e.message for e in check_workflow("w.yaml", wf, tree)]
    assert messages == ["'m' (m.yaml) is a model, not an agent or team"]


def test_type_checks_before_a_task_come_from_the_table() -> None:
    inner = comp("inner", "team", participants=[comp("x", "agent")])
    team = comp("t", "team", "pkg.Team", participants=[comp("lonely", "agent", "x.AssistantAgent"), inner])
    team["config"]["model_client"] = comp("sel", "model", "autogen_ext.models.openai.OpenAIChatCompletionClient")
    assert agent_problems(team) == [
        "agent 'lonely' has no model_client",
        "participant 'inner' is a team; teams inside teams are not supported",
        "model client 'sel' has no config.model",
    ]
    assert agent_problems(comp("e", "team", participants=[])) == ["the team has no participants"]
    assert [a["label"] for a in agents_of(team)] == ["lonely", "inner"]
    assert agents_of(comp("a", "agent")) == [comp("a", "agent")]


def test_models_and_members_are_the_tables() -> None:
    spec = comp("t", "team", participants=[comp("a", "agent", model_client=comp("m", "model"))] * 3)
    assert [m["label"] for m in model_specs(spec)] == ["m", "m", "m"]
    assert file_facts("t.yaml", spec).participants == 3
    assert file_facts("a.yaml", comp("a", "agent", participants=[1, 2])).participants == 0
    assert [k.name for k in components.COMPONENTS.values() if k.is_model] == ["model"]


def test_teams_have_rows_and_nothing_else_does() -> None:
    assert [t for t in components.COMPONENTS if components.has_rows(t)] == ["team"]
    assert not components.has_rows("memory") and not components.has_rows(None)


# --- a new type: one entry --------------------------------------------------------------------------


@pytest.mark.usefixtures("with_memory")
def test_a_new_type_is_accepted_planned_and_laid_out_for_pull() -> None:
    spec = validate_spec("memories/notes.yaml", memory())
    assert isinstance(spec, ComponentSpec) and spec.component_type == "memory"

    agent = comp("a", "agent", "autogen_agentchat.agents.AssistantAgent", memory=[{"$ref": "notes"}])
    tree = build_tree({"memories/notes.yaml": memory(), "agents/a.yaml": agent}, {})
    assert tree.errors == [] and tree.valid == ["a", "notes"]
    assert tree.nodes["a"].deps == ["notes"]
    plan = make_plan(
        tree, tree_name="t", gallery_name="g", cached={}, gallery_cached=False, last_keys={}, batch_size=50
    )
    assert plan.changes == {"notes": "new", "a": "new"}
    assert [sorted(lbl for batch in wave for lbl in batch) for wave in plan.waves] == [["notes"], ["a"]]
    assert plan.gallery_members == ["a", "notes"] and plan.gallery_needed
    assert components.gallery_section("memory") == "memories"
    assert "memories" in components.gallery_sections() and "memories" in components.member_sections()

    layout = plan_pull([], [memory()], {}, {})
    assert [(f.path, f.action) for f in layout.files] == [("memories/notes.yaml", "create")]
    assert layout.files[0].document == memory()


class _FakeStudio:
    def __init__(self, galleries: list[dict[str, Any]]) -> None:
        self.galleries = galleries

    async def list_teams(self) -> list[dict[str, Any]]:
        return []

    async def list_galleries(self) -> list[dict[str, Any]]:
        return self.galleries


@pytest.mark.usefixtures("with_memory")
def test_a_new_type_is_read_from_its_gallery_section_and_pulled_into_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings()
    sections: dict[str, list[dict[str, Any]]] = {s: [] for s in components.gallery_sections()}
    sections["memories"].append(memory())
    row = {"id": 1, "user_id": settings.studio_user_id, "config": {"id": "agentq-tree", "components": sections}}

    @contextlib.asynccontextmanager
    async def fake_client(_: Settings) -> AsyncIterator[_FakeStudio]:
        yield _FakeStudio([row])

    monkeypatch.setattr(pull_module, "client", fake_client)
    root = tmp_path / "tree"
    layout, _, failed = pull_module.pull(root, settings, {}, gallery_name="tree")
    assert failed == {} and [f.path for f in layout.files] == ["memories/notes.yaml"]
    assert yaml.safe_load((root / "memories" / "notes.yaml").read_text()) == memory()


# --- a new type synced through a real Studio --------------------------------------------------------

# Every process the test starts (the CLI, its worker) reads the same table: the entry is added
# there at start-up, as the test process adds it by monkeypatch.
SITECUSTOMIZE = """
import sys
from types import MappingProxyType

sys.path.insert(0, {root!r})  # this checkout's packages, as the process would find them from its cwd
from shared.core import components

components.COMPONENTS = MappingProxyType(
    {**components.COMPONENTS, "memory": components.ComponentKind("memory", folder="memories", gallery_section="memories")}
)
"""


@pytest.fixture
def memory_stack(tmp_path: Path, studio_url: str) -> Iterator[tuple[Cli, dict[str, str]]]:
    """A Redis and a worker of this test's own (the session's workers do not know the type)."""
    if importlib.util.find_spec("sitecustomize") is not None:
        pytest.skip("this Python has a sitecustomize of its own, which ours would hide")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.replace("{root!r}", repr(str(ROOT))))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path}
    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    worker = None
    try:
        worker = embedded.start_worker(
            url, concurrency=2, name="memory", env={**WORKER_ENV, **env}, log_path=tmp_path / "worker.log"
        )
        yield Cli(url, studio_url, f"test-{uuid.uuid4().hex[:8]}", tmp_path / "cache", studio_url), env
    finally:
        if worker is not None:
            embedded.stop(worker)
        embedded.stop(redis_proc)


def test_a_new_type_syncs_into_its_gallery_section_and_pulls_back(
    memory_stack: tuple[Cli, dict[str, str]], tmp_path: Path
) -> None:
    cli, env = memory_stack
    tree = tmp_path / "memtree"
    (tree / "memories").mkdir(parents=True)
    (tree / "memories" / "notes.yaml").write_text(yaml.safe_dump(memory()))

    rc, report, err = cli.sync(tree, **env)
    assert rc == 0, err
    assert report["nodes"]["notes"]["outcome"] == "created"
    (entry,) = [g for g in cli.studio().galleries() if g["config"]["name"] == tree.name]
    assert entry["config"]["components"]["memories"] == [memory()]  # Studio keeps a section it has no list for
    assert all(entry["config"]["components"][s] == [] for s in STUDIO_SECTIONS)

    rc, report, err = cli.sync(tree, **env)
    assert rc == 0, err
    assert report["nodes"]["notes"]["outcome"] == "unchanged"

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    proc = cli.run("pull", str(pulled), "--gallery", tree.name, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((pulled / "memories" / "notes.yaml").read_text()) == memory()
