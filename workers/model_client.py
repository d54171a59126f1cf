"""The model client AutoGen gets on a worker: the process's real one (workers/model_pool.py) behind
a gate that every request passes through, the task's model limit, retry policy and usage
(workers/task_models.py).

The worker swaps each model spec for one of `GatedChatCompletionClient` naming a slot of the
task's `TaskModels` (GATED_PROVIDER names this module), which `_from_config` finds through
LOADING, set while the task's component loads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TypedDict, TypeVar, Unpack

from autogen_core import CancellationToken, Component
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from shared.core.exceptions import MalformedAnswer

# ModelClients, StartOrder, LEAVE_AFTER and Usage only pass through: workers/workflow_exec.py,
# workers/tasks.py and the benchmarks import them from here
from workers.model_pool import ModelClients
from workers.start_order import LEAVE_AFTER, StartOrder
from workers.task_models import GATED_PROVIDER, LOADING, ModelError, TaskModels, Usage, failure_text

__all__ = (
    "GATED_PROVIDER",
    "LEAVE_AFTER",
    "LOADING",
    "GatedChatCompletionClient",
    "GatedClientConfig",
    "ModelClients",
    "ModelError",
    "StartOrder",
    "TaskModels",
    "Usage",
)

T = TypeVar("T")
Chunk = str | CreateResult


class CreateArgs(TypedDict, total=False):
    """ChatCompletionClient.create's (and create_stream's) keyword arguments."""

    tools: Sequence[Tool | ToolSchema]
    json_output: bool | type[BaseModel] | None
    extra_create_args: Mapping[str, object]
    cancellation_token: CancellationToken | None


def _in_full(args: CreateArgs) -> CreateArgs:
    """`args` with ChatCompletionClient's defaults for what the caller left out: the real client
    gets every argument, as when this client's signature spelled them out."""
    return {"tools": [], "json_output": None, "extra_create_args": {}, "cancellation_token": None, **args}


class GatedClientConfig(BaseModel):
    slot: int
    limit_key: str
    max_concurrency: int


class GatedChatCompletionClient(ChatCompletionClient, Component[GatedClientConfig]):
    component_type = "model"
    component_config_schema = GatedClientConfig
    component_provider_override = GATED_PROVIDER

    def __init__(self, inner: ChatCompletionClient, task: TaskModels, config: GatedClientConfig) -> None:
        self._inner = inner
        self._task = task
        self._config = config
        self._model = task.names[config.slot]
        self._semaphore = task.limit(config.limit_key, config.max_concurrency)

    @classmethod
    def _from_config(cls, config: GatedClientConfig) -> GatedChatCompletionClient:
        task = LOADING.get()
        return cls(task.clients.get(task.specs[config.slot], task.fresh), task, config)

    def _to_config(self) -> GatedClientConfig:
        return self._config

    def _named(self, exc: ModelError) -> ModelError:
        """A final failure, said with the model and where it is."""
        return ModelError(f"{self._task.failure_prefix(self._config.slot)} {exc}")

    async def create(self, messages: Sequence[LLMMessage], **args: Unpack[CreateArgs]) -> CreateResult:
        try:
            result = await self._task.call(
                self._config.slot, self._semaphore, lambda: self._inner.create(messages, **_in_full(args))
            )
        except ModelError as exc:
            raise self._named(exc) from exc.__cause__
        self._task.count(self._model, result.usage)
        return result

    async def create_stream(
        self, messages: Sequence[LLMMessage], **args: Unpack[CreateArgs]
    ) -> AsyncGenerator[Chunk, None]:
        # A stream is one request under the limit, retried as any request until its first chunk
        # arrives; once chunks have been handed on, a failure ends it.
        async with await self._task.in_line(self._semaphore):
            await self._task.holding_slot()
            started = time.perf_counter()
            try:
                stream, first = await self._task.retried(
                    self._config.slot,
                    lambda: _started(self._inner.create_stream(messages, **_in_full(args))),
                    observe_success=False,
                )
            except ModelError as exc:
                raise self._named(exc) from exc.__cause__
            try:
                async for chunk in stream if first is None else _prepend(first, stream):
                    if isinstance(chunk, CreateResult):
                        self._streamed(chunk.usage, started)
                    yield chunk
            except Exception as exc:  # the stream broke after chunks were handed on: not retried
                raise ModelError(f"{self._task.failure_prefix(self._config.slot)} {failure_text(exc)}") from exc
            finally:
                await stream.aclose()

    def _streamed(self, usage: RequestUsage, started: float) -> None:
        """A stream's last chunk: one call, its tokens, its latency."""
        self._task.usage.calls += 1
        self._task.count(self._model, usage)
        self._task.observe(self._model, "200", started)

    async def close(self) -> None:
        """The real client belongs to the worker process and outlives the task."""

    def actual_usage(self) -> RequestUsage:
        return self._inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self._inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self._inner.count_tokens(messages, tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self._inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:
        return self._inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self._inner.model_info


async def _started(stream: AsyncGenerator[Chunk, None]) -> tuple[AsyncGenerator[Chunk, None], Chunk | None]:
    """`stream` with its first chunk read (None when it has none), or the request's failure."""
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        return stream, None
    except BaseException:
        await stream.aclose()
        raise
    if isinstance(first, CreateResult) and first.finish_reason == "unknown" and not first.content:
        # AutoGen makes an empty result (with a warning) of a stream that held no chunk: a 200
        # that is no answer (a proxy's page), not the model's silence; retried as one is
        await stream.aclose()
        raise MalformedAnswer("streamed no answer: no chunk came with a finish reason")
    return stream, first


async def _prepend(first: T, rest: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    yield first
    async for item in rest:
        yield item
