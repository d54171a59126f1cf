"""Load a task's agent or team with AutoGen itself and run it on the task's prompt: tools and
workbenches execute here on the worker, teams (RoundRobin, Selector, Swarm ...) and termination
conditions behave as AutoGen defines them, exactly as in AutoGen Studio."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from autogen_agentchat.base import ChatAgent, Response, TaskResult, Team
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    ModelClientStreamingChunkEvent,
    StopMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken, ComponentLoader, SingleThreadedAgentRuntime
from autogen_core._component_config import WELL_KNOWN_PROVIDERS  # not exported by the package
from pydantic import BaseModel, ValidationError

from shared.core.endpoints import PROVIDER_PACKAGES, components, placed_components, provider_path
from shared.core.exceptions import RunCancelled, TaskFailed
from workers.task_models import LOADING, TaskModels

STOP_GRACE_SECONDS = 5.0  # for a stopped run to unwind; it sends nothing more meanwhile


class AgentError(TaskFailed):
    """The agent or team could not be loaded or run; the message says why (no traceback). `at`: the
    field path, in the spec loaded, of the component AutoGen refused ("" for the spec itself)."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.at = at


class TaskTimedOut(AgentError):
    """The task's timeout ended its run."""


class ToolCall(TypedDict):
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolResult(TypedDict):
    call_id: str
    name: str
    content: str
    is_error: bool


class Entry(TypedDict):
    """One message of a transcript."""

    source: str
    kind: str
    type: str
    content: str
    calls: NotRequired[list[ToolCall]]
    results: NotRequired[list[ToolResult]]


@dataclass
class Outcome:
    output: str
    transcript: list[Entry]
    stop_reason: str | None


# the first class a message is an instance of says its kind (tool calls and handoffs are events
# or chat messages too)
KINDS: tuple[tuple[type[BaseAgentEvent | BaseChatMessage], str], ...] = (
    (ToolCallRequestEvent, "tool_call"),
    (ToolCallExecutionEvent, "tool_result"),
    (HandoffMessage, "handoff"),
    (StopMessage, "stop"),
    (BaseChatMessage, "text"),
)


def message_kind(message: BaseAgentEvent | BaseChatMessage) -> str:
    kind = next((kind for cls, kind in KINDS if isinstance(message, cls)), None)
    return kind or type(message).__name__.removesuffix("Event").lower()


def transcript_of(result: TaskResult) -> list[Entry]:
    """Each message as AutoGen says it (`content` is its to_text(), as Studio shows it), and for
    tool calls and their results the parts a reader needs: `calls` (id, name, arguments as JSON
    text) and `results` (call id, name, content, is_error)."""
    return [_entry(m) for m in result.messages]


def _entry(m: BaseAgentEvent | BaseChatMessage) -> Entry:
    entry: Entry = {
        "source": m.source,
        "kind": message_kind(m),
        "type": type(m).__name__,
        "content": m.to_text(),
    }
    if isinstance(m, ToolCallRequestEvent):
        entry["calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.content]
    elif isinstance(m, ToolCallExecutionEvent):
        entry["results"] = [
            {"call_id": r.call_id, "name": r.name, "content": r.content, "is_error": bool(r.is_error)}
            for r in m.content
        ]
    return entry


def output_of(result: TaskResult) -> str:
    """The last message a participant said (the task itself is the first message)."""
    said = [m for m in result.messages if isinstance(m, BaseChatMessage)]
    return said[-1].to_text() if len(said) > 1 or (said and said[-1].source != "user") else ""


def load(spec: Mapping[str, object], resolved: Mapping[str, object], models: TaskModels) -> ChatAgent | Team:
    component = load_component(spec, resolved, models)
    if not isinstance(component, ChatAgent | Team):
        raise AgentError(f"{resolved.get('provider')} is not an agent or a team")
    return component


def load_component(spec: Mapping[str, object], resolved: Mapping[str, object], models: TaskModels) -> object:
    """Any component, as AutoGen loads it (model clients gated); AgentError says why not."""
    gated = models.swap(spec, resolved)
    token = LOADING.set(models)
    try:
        component: object = ComponentLoader.load_component(gated)
    except ImportError as exc:
        raise AgentError(_missing_package(resolved, exc)) from exc
    except ValidationError as exc:
        at = refused_at(gated, exc)
        raise AgentError(f"AutoGen refused the configuration: {_refusal(exc)}", at) from exc
    except Exception as exc:  # whatever a provider's constructor raises: one line, no traceback
        raise AgentError(f"AutoGen could not load it: {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:  # a tool's code raising SystemExit, GeneratorExit ...: not the worker's
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise AgentError(f"AutoGen could not load it: its code raised {type(exc).__name__}") from None
    finally:
        LOADING.reset(token)
    return component


def contain_tool_exits() -> None:
    """A tool's code that raises what is no Exception (SystemExit, GeneratorExit, a bare
    BaseException) fails its call as any failing tool's does: AutoGen's workbench answers the model
    with the error. Left as it is, it passed the workbench by, ran out of the event loop and, in a
    team, left the team waiting for the task's timeout. Called once a worker process (BaseTool.run_json
    is where every tool call goes; wrapped here: AutoGen offers no hook for it)."""
    from autogen_core.tools import BaseTool

    run_json = BaseTool.run_json
    if getattr(run_json, "contains_exits", False):
        return

    async def contained(
        self: BaseTool[Any, Any], args: Mapping[str, Any], cancellation_token: CancellationToken
    ) -> Any:
        try:
            return await run_json(self, args, cancellation_token)
        except (Exception, asyncio.CancelledError):
            raise
        except BaseException as exc:
            raise RuntimeError(f"the tool's code raised {type(exc).__name__}") from None

    contained.contains_exits = True  # type: ignore[attr-defined]
    BaseTool.run_json = contained  # type: ignore[method-assign]


def refused_at(spec: Mapping[str, object], exc: ValidationError) -> str:
    """Where in `spec` the component is whose config `exc` refuses: AutoGen loads a team's
    participants and conditions inside the team's own load, and its error names only the config's
    schema. The first component of that schema whose config fails the same check; "" when none."""
    for at, component in placed_components(spec):
        schema = _config_schema(str(component.get("provider")))
        if schema is None or schema.__name__ != exc.title:
            continue
        try:
            schema.model_validate(component.get("config"))
        except ValidationError:
            return at
    return ""


def _config_schema(provider: str) -> type[BaseModel] | None:
    """The config schema of `provider`'s class, found as AutoGen's loader finds it (imported by now)."""
    module, _, name = WELL_KNOWN_PROVIDERS.get(provider, provider).rpartition(".")
    found = getattr(sys.modules.get(module), name, None)
    schema = getattr(found, "component_config_schema", None)
    return schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None


def _refusal(exc: ValidationError) -> str:
    """pydantic's first few errors, each as `config.field.path: message` (AutoGen validates a
    component's config against its provider's schema)."""
    return "; ".join(f"{'.'.join(['config', *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()[:5])


def _missing_package(spec: Mapping[str, object], exc: ImportError) -> str:
    if not isinstance(exc, ModuleNotFoundError) and not isinstance(exc.__cause__, ModuleNotFoundError):
        # the module is there, the name is not (`from json import dumpz`): AutoGen's own words
        return f"AutoGen could not load it: {type(exc).__name__}: {exc}"
    missing = _missing_module(exc)
    for component in components(spec):
        provider = provider_path(str(component.get("provider")))
        module = provider.rpartition(".")[0]
        needs, extra = PROVIDER_PACKAGES.get(module, ((), ""))
        if _top(missing) in {_top(module), *map(_top, needs)} or module.startswith(missing):
            hint = f"pip install '{extra}'" if extra else f"install the package that provides {missing!r}"
            return f"provider {provider} needs {missing}, which is not installed on this worker: {hint}"
    other = next((e for needs, e in PROVIDER_PACKAGES.values() if _top(missing) in {*map(_top, needs)}), None)
    hint = f": pip install '{other}'" if other else ""
    return f"a component needs a Python module that is not installed on this worker ({missing}){hint}"


def _missing_module(exc: ImportError) -> str:
    # a FunctionTool's global imports fail with only a message: "Failed to import import html2text: ..."
    # or "Failed to import from html2text import HTML2Text: ..."
    named = re.search(r"\bimport\s+(?:from\s+)?(?!import\b)([A-Za-z_][\w.]*)", str(exc))
    return exc.name or (named.group(1) if named else str(exc))


def _top(module: str) -> str:
    return module.split(".")[0]


async def run(component: ChatAgent | Team, prompt: str, timeout: float, said: list[Entry] | None = None) -> Outcome:
    """The run's outcome. `said`: where the messages of a team's run that fails go, as far as it
    got (its second speaker's model failed, a timeout): what a reader needs to see why."""
    cancel = CancellationToken()
    started = time.monotonic()
    seen: list[BaseAgentEvent | BaseChatMessage] = []
    if isinstance(component, Team):
        running = asyncio.ensure_future(_result(component.run_stream(task=prompt, cancellation_token=cancel), seen))
    else:  # an agent's run is not its stream read whole (a SocietyOfMindAgent's leaves its team's turns out)
        running = asyncio.ensure_future(component.run(task=prompt, cancellation_token=cancel))
    try:
        return await _ran(component, running, cancel, started, timeout)
    except BaseException:
        if said is not None:
            said.extend(_entry(m) for m in seen)
        raise


async def _result(
    stream: AsyncGenerator[BaseAgentEvent | BaseChatMessage | TaskResult | Response, None],
    seen: list[BaseAgentEvent | BaseChatMessage],
) -> TaskResult:
    """What a team's `run` returns, read from the stream AutoGen's own `run` reads, each message
    kept as it comes. Streamed chunks are not messages of the result, as in AutoGen's."""
    async for item in stream:
        if isinstance(item, TaskResult):
            return item
        if isinstance(item, BaseAgentEvent | BaseChatMessage) and not isinstance(item, ModelClientStreamingChunkEvent):
            seen.append(item)
    raise AgentError("AutoGen's run ended without its result")


async def _ran(
    component: ChatAgent | Team,
    running: asyncio.Future[TaskResult],
    cancel: CancellationToken,
    started: float,
    timeout: float,
) -> Outcome:
    try:
        result = await asyncio.wait_for(asyncio.shield(running), timeout)
    except TimeoutError as exc:
        late = _held(time.monotonic() - started, timeout)  # before the stop, which may wait for the message in hand
        await _stop(component, running, cancel)
        raise TaskTimedOut(f"timed out after {timeout:g} s{late}") from exc
    except asyncio.CancelledError:  # the task was cancelled, or its worker is shutting down
        await _stop(component, running, cancel)
        raise
    except RuntimeError as exc:
        # a team's participant failed: AutoGen sends "Type: message\nTraceback:\n<its traceback>"
        head, cut, _ = str(exc).partition("\nTraceback:\n")
        if not cut:
            raise
        if head.startswith(RunCancelled.__name__):  # a participant found the run cancelled
            raise RunCancelled() from exc
        raise AgentError(re.sub(r"^(ModelError|AgentError): ", "", head)) from exc
    except Exception:
        raise
    except BaseException as exc:  # code it ran raised SystemExit, GeneratorExit ... (task_base._serve)
        await _stop(component, running, cancel)
        raise AgentError(f"its code raised {type(exc).__name__}") from None
    return Outcome(output_of(result), transcript_of(result), result.stop_reason)


def _held(took: float, timeout: float) -> str:
    """Why a timeout came late: code that blocked the worker's event loop (a tool calling
    time.sleep, say) let no timer fire, every other task of the worker process held up with it."""
    if took < timeout + max(1.0, timeout / 2):
        return ""
    return (
        f", seen only after {took:.0f} s: something in it (a tool?) blocked the worker's event loop, "
        "holding up every task of that worker process"
    )


async def _stop(component: ChatAgent | Team, running: asyncio.Future[TaskResult], cancel: CancellationToken) -> None:
    """End a run that must not go on. Cancelling a team's run is not enough: AutoGen's run then
    waits for its runtime to fall idle, which a chat that has not met its termination never does,
    and the participants go on calling the model. So the team's own runtime is stopped (the message
    in hand is finished, the rest dropped): no team API does that, hence the private attribute."""
    cancel.cancel()
    runtime = getattr(component, "_runtime", None)
    if isinstance(runtime, SingleThreadedAgentRuntime) and getattr(component, "_embedded_runtime", False):
        with contextlib.suppress(RuntimeError):  # not started, or already stopped
            await runtime.stop()
    running.cancel()
    await asyncio.wait({running}, timeout=STOP_GRACE_SECONDS)
