"""Every component type the project knows, in one table. Pure, no I/O.

What each consumer needs to know about a type is read here: which types a spec may have
(shared/core/specs.py), where Studio keeps it (a team row of its own, or a section of the tree's
gallery entry: producer/planner.py, workers/gallery.py, workers/registration.py, producer/pull.py),
the folder `producer pull` writes it to (shared/core/pull_layout.py), what it is made of
(shared/core/facts.py, shared/core/endpoints.py), whether a workflow task can run on it and what
keeps it from doing so (shared/core/workflow.py), and whether it is a model client (limits,
endpoints, validation). A new type is one entry in COMPONENTS.

Consumers call the functions below, which read COMPONENTS when called, so a table replaced at
run time (a test's monkeypatch) is the table everyone sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# AutoGen's words for a component of another class than its field holds (Tree.mistyped explains them)
TYPE_MISMATCH = "Expected type does not match"
# Why a component of some type could not answer a workflow task, known before AutoGen loads it
Problems = Callable[[Mapping[str, Any]], list[str]]
# What keeps AutoGen from loading a spec of some type at all: (field, why) pairs
FieldProblems = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


@dataclass(frozen=True)
class ComponentKind:
    name: str  # `component_type`, as AutoGen spells it
    folder: str  # where `producer pull` writes components of this type
    # The list of a Studio gallery entry (`config.components.<section>`) that holds this type;
    # None: Studio's gallery has no place for it (it is validated, and used by `$ref`).
    gallery_section: str | None = None
    # Studio keeps each one as a row of its own (teams, `/api/teams/`); the others that have a
    # gallery section live in the tree's gallery entry (the section is written, empty, either way)
    own_rows: bool = False
    # config fields that hold other components, inline or by `$ref` -> the types they hold (as
    # AutoGen's configs have them; what a field holds is Studio's validation to judge: AutoGen
    # checks the class, not `component_type`, so these only explain its "Expected type does not match")
    refs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # the config field listing what it is made of (a team's participants): counted against
    # MAX_PARTICIPANTS, and they are the agents that answer its tasks
    members: str | None = None
    member_type: str | None = None  # what its members are checked as (a team's: agents)
    runs_tasks: bool = False  # a workflow task's `agent` may name it
    is_model: bool = False  # a model client: called under a cluster-wide limit, names an endpoint
    # the class AutoGen loads a field's component as when the field holds this type ("module:Class";
    # workers/type_check.py confirms a mismatch by it)
    autogen_class: str = ""
    task_problems: Problems | None = None  # type-specific checks before a task runs on it
    spec_problems: FieldProblems | None = None  # type-specific checks of a spec, before anything loads it


def display_name(component: Mapping[str, Any]) -> object:
    """How a problem names a component: its label, its config's name, or "(inline)"."""
    config = component.get("config") or {}
    return component.get("label") or config.get("name") or "(inline)"


def _team_problems(team: Mapping[str, Any]) -> list[str]:
    return [] if members_of(team) else ["the team has no participants"]


def is_user_proxy(component: Mapping[str, Any]) -> bool:
    """An agent whose answers a person types (at Studio's page, or a terminal's input()): a worker has none."""
    return str(component.get("provider")).endswith("UserProxyAgent")


def _agent_problems(agent: Mapping[str, Any]) -> list[str]:
    config = agent.get("config") or {}
    if is_user_proxy(agent):
        name = config.get("name") or display_name(agent)  # Studio labels every one "UserProxyAgent"
        return [f"agent {name!r} is a UserProxyAgent: a person types its answers, and no one can on a worker"]
    if str(agent.get("provider") or "AssistantAgent").endswith("AssistantAgent") and not isinstance(
        config.get("model_client"), dict
    ):
        return [f"agent {display_name(agent)!r} has no model_client"]
    return []


# clients whose config requires `model` (a replay client, or another provider's, may have none)
_NEEDS_MODEL = (
    "OpenAIChatCompletionClient",
    "AnthropicChatCompletionClient",
    "OllamaChatCompletionClient",
    "openai_chat_completion_client",
)


def _model_problems(model: Mapping[str, Any]) -> list[str]:
    if not str(model.get("provider")).endswith(_NEEDS_MODEL):
        return []
    config = model.get("config") or {}
    if not isinstance(config.get("model"), str) or not config["model"]:
        return [f"model client {model.get('label') or '(inline)'!r} has no config.model"]
    return []


def _tool_problems(tool: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A FunctionTool's source that does not compile: AutoGen's load of it (and so every agent that
    uses it) fails, so the tool's own file is named. Compiled only, never run."""
    source = (tool.get("config") or {}).get("source_code")
    if not str(tool.get("provider")).endswith(".FunctionTool") or not isinstance(source, str):
        return []
    try:
        compile(source, "<source_code>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return [("config.source_code", f"does not compile: {exc.msg} (line {exc.lineno})")]
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes; nesting past the parser's limit
        return [("config.source_code", f"does not compile: {exc}")]
    return []


def _refs(**fields: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(fields)


def _table(*kinds: ComponentKind) -> Mapping[str, ComponentKind]:
    return MappingProxyType({k.name: k for k in kinds})


COMPONENTS: Mapping[str, ComponentKind] = _table(
    ComponentKind(
        "model",
        folder="models",
        gallery_section="models",
        is_model=True,
        autogen_class="autogen_core.models:ChatCompletionClient",
        task_problems=_model_problems,
    ),
    ComponentKind(
        "agent",
        folder="agents",
        gallery_section="agents",
        autogen_class="autogen_agentchat.agents:BaseChatAgent",
        refs=_refs(
            model_client=("model",),
            workbench=("workbench",),
            tools=("tool",),
            model_context=("chat_completion_context",),
        ),
        runs_tasks=True,
        task_problems=_agent_problems,
    ),
    ComponentKind(
        "team",
        folder="teams",
        gallery_section="teams",
        autogen_class="autogen_agentchat.base:Team",
        own_rows=True,
        refs=_refs(participants=("agent",), termination_condition=("termination",), model_client=("model",)),
        members="participants",
        member_type="agent",
        runs_tasks=True,
        task_problems=_team_problems,
    ),
    ComponentKind(
        "tool",
        folder="tools",
        gallery_section="tools",
        spec_problems=_tool_problems,
        autogen_class="autogen_core.tools:BaseTool",
    ),
    ComponentKind(
        "termination",
        folder="terminations",
        gallery_section="terminations",
        autogen_class="autogen_agentchat.base:TerminationCondition",
        refs=_refs(conditions=("termination",)),
    ),
    ComponentKind(
        "workbench", folder="workbenches", refs=_refs(tools=("tool",)), autogen_class="autogen_core.tools:Workbench"
    ),
    ComponentKind(
        "chat_completion_context", folder="contexts", autogen_class="autogen_core.model_context:ChatCompletionContext"
    ),
)


def kind_of(component_type: object) -> ComponentKind | None:
    """The table's entry for `component_type`; None for a type it does not know."""
    return COMPONENTS.get(component_type) if isinstance(component_type, str) else None


def component_types() -> tuple[str, ...]:
    return tuple(COMPONENTS)


def spec_problems(component: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What keeps AutoGen from loading this spec, known without loading it: (field, why) pairs."""
    kind = kind_of(component.get("component_type"))
    return kind.spec_problems(component) if kind is not None and kind.spec_problems else []


def has_rows(component_type: object) -> bool:
    """Whether Studio keeps components of this type as rows of their own (teams)."""
    kind = kind_of(component_type)
    return kind is not None and kind.own_rows


def gallery_section(component_type: object) -> str | None:
    """The section of the tree's gallery entry a standalone component of this type goes into;
    None: it is not a member of the gallery entry (a team row, or a type Studio has no list for)."""
    kind = kind_of(component_type)
    return kind.gallery_section if kind is not None and not kind.own_rows else None


def gallery_sections() -> tuple[str, ...]:
    """Every section a gallery entry the sync writes carries (Studio's format asks for each)."""
    return tuple(dict.fromkeys(k.gallery_section for k in COMPONENTS.values() if k.gallery_section))


def member_sections() -> tuple[str, ...]:
    """The sections that hold the tree's standalone components: what `producer pull` reads back."""
    return tuple(dict.fromkeys(s for t in COMPONENTS if (s := gallery_section(t))))


def folder(component_type: object) -> str | None:
    kind = kind_of(component_type)
    return kind.folder if kind is not None else None


def is_part(component_type: object) -> bool:
    """A component that may be nested in another and get a file of its own on pull (not a row's)."""
    kind = kind_of(component_type)
    return kind is not None and not kind.own_rows


def runnable_types() -> tuple[str, ...]:
    """The types a workflow task's `agent` may name."""
    return tuple(k.name for k in COMPONENTS.values() if k.runs_tasks)


def a_kind(name: str) -> str:
    """ "agent" -> "an agent", "model" -> "a model"."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def either(names: tuple[str, ...]) -> str:
    """("agent", "team") -> "agent or team"."""
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def is_model(component: Mapping[str, Any]) -> bool:
    return is_model_type(component.get("component_type"))


def is_model_type(component_type: object) -> bool:
    kind = kind_of(component_type)
    return kind is not None and kind.is_model


def is_group(component: Mapping[str, Any]) -> bool:
    """A component made of members (a team)."""
    kind = kind_of(component.get("component_type"))
    return kind is not None and kind.members is not None


def held_types(component_type: object, config_field: str) -> tuple[str, ...] | None:
    """The types a config field of a component of `component_type` holds (a team's participants:
    agents); None for a field the table does not know."""
    kind = kind_of(component_type)
    return kind.refs.get(config_field) if kind is not None else None


def members_field(component_type: object) -> str | None:
    kind = kind_of(component_type)
    return kind.members if kind is not None else None


def members_of(component: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The components a group is made of (a team's participants, inline ones); [] for any other."""
    field_name = members_field(component.get("component_type"))
    if field_name is None:
        return []
    members = (component.get("config") or {}).get(field_name) or []
    return [m for m in members if isinstance(m, Mapping)] if isinstance(members, list) else []


def task_problems(component: Mapping[str, Any], as_type: str | None = None) -> list[str]:
    """The type-specific problems of `component`, checked as its own type or as `as_type` (a
    team's members are checked as what the team takes them for)."""
    kind = kind_of(as_type or component.get("component_type"))
    return kind.task_problems(component) if kind is not None and kind.task_problems is not None else []
