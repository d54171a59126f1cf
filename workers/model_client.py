"""The model client AutoGen gets on a worker: the real one (OpenAI, Anthropic, Ollama ... loaded by
AutoGen once per worker process per resolved configuration) behind a gate that every request
passes through:

- the cluster-wide limit of that model, granted to the highest-ranked waiting task;
- one retry policy (shared/retry.py): 429 after Retry-After, 5xx, timeouts and connection errors
  with backoff and jitter; the SDK's own retries are switched off so they do not multiply ours;
- the request's latency and tokens into the metrics, and into the task's usage.

AutoGen builds model clients from specs inside the agents and teams it loads; the worker swaps
each model spec for one of `GatedChatCompletionClient` naming a slot of the task's `TaskModels`,
which `_from_config` finds through a context variable set while the task's component loads.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from pydantic import BaseModel, SecretStr

from shared.core.endpoints import is_model, limit_key, max_concurrency, provider_path
from shared.core.exceptions import MalformedAnswer, RunCancelled, TaskFailed
from shared.core.hashing import canonical_json, sha256_hex
from shared.metrics import Metrics
from shared.ports import ModelLimit
from shared.retry import classify, pause, retrying
from workers.sdk_wire import send_as_built

T = TypeVar("T")
GATED_PROVIDER = "workers.model_client.GatedChatCompletionClient"
OPENAI_CLIENT = "autogen_ext.models.openai.OpenAIChatCompletionClient"
LOADING: ContextVar[TaskModels] = ContextVar("agentq_task_models")


class ModelError(TaskFailed):
    """A model request that failed for good, said in one line: which model, where, what it answered."""


def _where(spec: Mapping[str, Any]) -> str:
    config = spec.get("config") or {}
    return str(
        config.get("base_url")
        or config.get("azure_endpoint")
        or config.get("host")
        or provider_path(str(spec.get("provider")))
    )


class ModelClients:
    """Loaded model clients of one worker process, by resolved configuration (secrets included,
    so the key is a digest and lives only in memory)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._clients: dict[str, ChatCompletionClient] = {}
        self._http: Any = None

    def get(self, spec: Mapping[str, Any]) -> ChatCompletionClient:
        key = sha256_hex(canonical_json(spec))
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._load(spec)
        return client

    def _load(self, spec: Mapping[str, Any]) -> ChatCompletionClient:
        client = self._build(spec)
        send_as_built(client)
        return client

    def _build(self, spec: Mapping[str, Any]) -> ChatCompletionClient:
        provider = provider_path(str(spec.get("provider")))
        module, _, name = provider.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        spec = self._without_sdk_retries(spec, getattr(cls, "component_config_schema", None))
        if provider != OPENAI_CLIENT or cls is None:
            return ChatCompletionClient.load_component(spec)
        # OpenAI's own aiohttp transport, one per process for every OpenAI client: httpx's pool
        # scans all its connections for each request (~2 ms of CPU at 100 in flight). Otherwise
        # what OpenAIChatCompletionClient._from_config does.
        config = cls.component_config_schema.model_validate(spec["config"])
        kwargs = config.model_dump(exclude_none=True)
        if isinstance(config.api_key, SecretStr):
            kwargs["api_key"] = config.api_key.get_secret_value()
        if self._http is None:
            from openai import DefaultAioHttpClient

            self._http = DefaultAioHttpClient(timeout=self.timeout)
        client: ChatCompletionClient = cls(**kwargs, http_client=self._http)
        return client

    def _without_sdk_retries(self, spec: Mapping[str, Any], schema: Any) -> dict[str, Any]:
        fields = getattr(schema, "model_fields", {})
        config = dict(spec.get("config") or {})
        if "max_retries" in fields:
            config["max_retries"] = 0
        if "timeout" in fields and config.get("timeout") is None:
            config["timeout"] = self.timeout
        return {**spec, "config": config}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    attempts: int = 0


LEAVE_AFTER = 0.05  # seconds a task may hold its admission before its place in line (StartOrder)


class StartOrder:
    """Tasks that one message carries reach the model limits in rank order: a task waits until
    every higher-ranked task of its message is in line for a model (or has ended), so the limit
    sees them together and the higher goes first, whichever coroutine happens to be quicker.

    `admission`, the process's (ADMITTED in workers/task_base.py), bounds how many tasks are
    between their start on AutoGen and their place in line: that work is CPU with no await, and a
    thousand tasks started at once (40 messages of 25 in flight) held the event loop for half a
    second before the answers to the requests already sent were read. Tasks are admitted in rank
    order, and a task leaves admission once it is in line, has ended, or after LEAVE_AFTER (one
    that does something else first, a tool, holds nobody up)."""

    def __init__(self, task_ids: list[str], admission: asyncio.Semaphore | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._order = task_ids
        self._queued = {tid: loop.create_future() for tid in task_ids}
        self._admission = admission
        self._admitted: dict[str, asyncio.TimerHandle] = {}

    async def admit(self, task_id: str) -> None:
        """Wait for the process's admission (first come first served: tasks that ask out of rank
        order, after a cache look-up, wait at most LEAVE_AFTER for each other)."""
        if self._admission is not None:
            await self._admission.acquire()
            self._admitted[task_id] = asyncio.get_running_loop().call_later(LEAVE_AFTER, self._leave, task_id)

    def _leave(self, task_id: str) -> None:
        timer = self._admitted.pop(task_id, None)
        if timer is not None:
            timer.cancel()
            assert self._admission is not None
            self._admission.release()

    async def turn(self, task_id: str) -> None:
        for earlier in self._order[: self._order.index(task_id)]:
            await asyncio.shield(self._queued[earlier])

    def queued(self, task_id: str) -> None:
        self._leave(task_id)
        if not self._queued[task_id].done():
            self._queued[task_id].set_result(None)


@dataclass
class TaskModels:
    """What one task's model requests share: its rank in the limits' queues, its retry settings,
    its usage, and the process's clients and limits."""

    clients: ModelClients
    limit: Callable[[str, int], ModelLimit]  # (limit key, max concurrency) -> the process's semaphore
    rank: int
    retries: int
    backoff: float
    default_concurrency: int
    metrics: Metrics
    on_retry: Callable[[str], Awaitable[None]]
    order: StartOrder | None = None
    task_id: str = ""
    specs: list[Mapping[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cancelled: Callable[[], Awaitable[bool]] | None = None  # `producer cancel` ended the task's run

    async def holding_slot(self) -> None:
        """Called with a model slot in hand, before the request: a cancelled run sends no more."""
        if self.cancelled is not None and await self.cancelled():
            raise RunCancelled()

    async def in_line(self, semaphore: ModelLimit) -> Any:
        """A slot of `semaphore` for this task, asked for once the higher-ranked tasks of its
        message are in line (StartOrder): `async with await models.in_line(s):`."""
        if self.order is None:
            return semaphore.slot(self.rank)
        await self.order.turn(self.task_id)
        return semaphore.slot(self.rank, on_queued=lambda: self.order.queued(self.task_id) if self.order else None)

    def swap(self, spec: Any, resolved: Any) -> Any:
        """`spec` (with `${VAR}` names, for limit keys) walked beside `resolved` (values): every model
        spec becomes a gated one naming its slot here."""
        if isinstance(resolved, Mapping):
            if is_model(resolved) and isinstance(resolved.get("provider"), str):
                self.specs.append(resolved)
                slot = len(self.specs) - 1
                key = limit_key(spec if isinstance(spec, Mapping) else resolved)
                return {
                    "provider": GATED_PROVIDER,
                    "component_type": "model",
                    "label": resolved.get("label"),
                    "config": {
                        "slot": slot,
                        "limit_key": key,
                        "max_concurrency": max_concurrency(resolved, self.default_concurrency),
                    },
                }
            return {k: self.swap(spec.get(k) if isinstance(spec, Mapping) else None, v) for k, v in resolved.items()}
        if isinstance(resolved, list):
            return [
                self.swap(spec[i] if isinstance(spec, list) and i < len(spec) else None, v)
                for i, v in enumerate(resolved)
            ]
        return resolved

    async def call(self, model: str, semaphore: ModelLimit, request: Callable[[], Awaitable[T]]) -> T:
        async with await self.in_line(semaphore):
            await self.holding_slot()
            result = await self.retried(model, request)
        self.usage.calls += 1
        return result

    async def retried(self, model: str, request: Callable[[], Awaitable[T]], observe_success: bool = True) -> T:
        """`request` under the retry policy; the caller holds the model's slot."""

        async def on_retry(cause: str) -> None:
            self.metrics.inc("agentq_retries_total", ["model", cause])
            await self.on_retry(cause)

        async def attempt(number: int) -> T:
            self.usage.attempts += 1
            started = time.perf_counter()
            try:
                result = await request()
            except Exception as exc:
                status = getattr(exc, "status_code", None) or (
                    "timeout" if "Timeout" in type(exc).__name__ else "error"
                )
                self.metrics.observe(
                    "agentq_model_request_duration_seconds", [model, str(status)], time.perf_counter() - started
                )
                if classify(exc) is None or number > self.retries:
                    raise ModelError(_failure(exc)) from exc
                raise
            if observe_success:
                self.metrics.observe(
                    "agentq_model_request_duration_seconds", [model, "200"], time.perf_counter() - started
                )
            return result

        # the first try outside tenacity's loop: the loop leaves ~50 objects per call in
        # reference cycles, nearly all of a busy worker's garbage (its collections stall the loop)
        failed: Exception | None = None
        try:
            result = await attempt(1)
        except ModelError:
            raise
        except Exception as exc:  # retryable: `attempt` turns a final failure into ModelError
            failed = exc
        if failed is not None:
            await pause(failed, self.backoff, on_retry)
            async for again in retrying(self.retries + 1, self.backoff, on_retry, done=1):
                with again:
                    result = await attempt(again.retry_state.attempt_number + 1)
        return result

    def failure_prefix(self, slot: int) -> str:
        spec = self.specs[slot]
        return f"model {(spec.get('config') or {}).get('model')!r} at {_where(spec)}"

    def count(self, model: str, usage: RequestUsage) -> None:
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        for kind, value in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)):
            if value:
                self.metrics.inc("agentq_model_tokens_total", [model, kind], value)


async def _prepend(first: T, rest: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    yield first
    async for item in rest:
        yield item


def _failure(exc: BaseException) -> str:
    if isinstance(exc, MalformedAnswer):
        return str(exc)
    status = getattr(exc, "status_code", None)
    body: Any = getattr(exc, "body", None)
    detail = (body.get("message") if isinstance(body, dict) else None) or str(exc)
    if status is not None:
        return f"answered {status}: {str(detail)[:300]}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


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
        self._model = str((task.specs[config.slot].get("config") or {}).get("model"))
        self._semaphore = task.limit(config.limit_key, config.max_concurrency)

    @classmethod
    def _from_config(cls, config: GatedClientConfig) -> GatedChatCompletionClient:
        task = LOADING.get()
        return cls(task.clients.get(task.specs[config.slot]), task, config)

    def _to_config(self) -> GatedClientConfig:
        return self._config

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        try:
            result = await self._task.call(
                self._model,
                self._semaphore,
                lambda: self._inner.create(
                    messages,
                    tools=tools,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                ),
            )
        except ModelError as exc:
            raise ModelError(f"{self._task.failure_prefix(self._config.slot)} {exc}") from exc.__cause__
        self._task.count(self._model, result.usage)
        return result

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        # A stream is one request under the limit, retried as any request until its first chunk
        # arrives; once chunks have been handed on, a failure ends it.
        async def start() -> tuple[AsyncGenerator[str | CreateResult, None], str | CreateResult | None]:
            stream = self._inner.create_stream(
                messages,
                tools=tools,
                json_output=json_output,
                extra_create_args=extra_create_args,
                cancellation_token=cancellation_token,
            )
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

        prefix = self._task.failure_prefix(self._config.slot)
        async with await self._task.in_line(self._semaphore):
            await self._task.holding_slot()
            started = time.perf_counter()
            try:
                stream, first = await self._task.retried(self._model, start, observe_success=False)
            except ModelError as exc:
                raise ModelError(f"{prefix} {exc}") from exc.__cause__
            try:
                async for chunk in stream if first is None else _prepend(first, stream):
                    if isinstance(chunk, CreateResult):
                        self._task.usage.calls += 1
                        self._task.count(self._model, chunk.usage)
                        self._task.metrics.observe(
                            "agentq_model_request_duration_seconds",
                            [self._model, "200"],
                            time.perf_counter() - started,
                        )
                    yield chunk
            except Exception as exc:  # the stream broke after chunks were handed on: not retried
                raise ModelError(f"{prefix} {_failure(exc)}") from exc
            finally:
                await stream.aclose()

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
