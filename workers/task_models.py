"""What one task's model requests share: the cluster-wide limit of each model, granted to the
highest-ranked waiting task; one retry policy (shared/retry.py): 429 after Retry-After, 5xx,
timeouts and connection errors with backoff and jitter; the requests' latency and tokens into the
metrics and into the task's usage.

AutoGen builds model clients from specs inside the agents and teams it loads; `TaskModels.swap`
turns each model spec into one of the gated client (workers/model_client.py) naming a slot here,
which the gated client finds through LOADING, set while the task's component loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from autogen_core.models import ChatCompletionClient, RequestUsage

from shared.core.endpoints import is_model, limit_key, max_concurrency, provider_path
from shared.core.exceptions import MalformedAnswer, RunCancelled, TaskFailed
from shared.core.refs import shown
from shared.core.secrets import shown_url
from shared.metrics import Metrics
from shared.ports import ModelLimit
from shared.retry import classify, not_http, pause, retrying, unreached
from workers.model_pool import OPENAI_CLIENT, ModelClients, config_of
from workers.start_order import StartOrder

T = TypeVar("T")
GATED_PROVIDER = "workers.model_client.GatedChatCompletionClient"
LOADING: ContextVar[TaskModels] = ContextVar("agentq_task_models")
DURATION = "agentq_model_request_duration_seconds"


class ModelError(TaskFailed):
    """A model request that failed for good, said in one line: which model, where, what it answered."""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    attempts: int = 0


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
    specs: list[Mapping[str, object]] = field(default_factory=list)
    # each slot's model as its file writes it, its `${VAR}`s resolved unless one is a secret (refs.shown):
    # what metrics and messages name it by
    names: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cancelled: Callable[[], Awaitable[bool]] | None = None  # `producer cancel` ended the task's run
    # `retries` was the task's own: it rules over a model's `max_retries`
    task_retries: bool = False
    slot_retries: list[int] = field(default_factory=list)  # each slot's retries
    fresh: list[ChatCompletionClient] = field(default_factory=list)  # made for this task alone (model_pool)
    retrying: str | None = None  # what the model last answered, while a request of this task waits to retry

    async def close(self) -> None:
        """Close the clients made for this task alone."""
        for client in self.fresh:
            await client.close()
        self.fresh.clear()

    async def holding_slot(self) -> None:
        """Called with a model slot in hand, before the request: a cancelled run sends no more."""
        if self.cancelled is not None and await self.cancelled():
            raise RunCancelled()

    async def in_line(self, semaphore: ModelLimit) -> AbstractAsyncContextManager[None]:
        """A slot of `semaphore` for this task, asked for once the higher-ranked tasks of its
        message are in line (StartOrder): `async with await models.in_line(s):`."""
        if self.order is None:
            return semaphore.slot(self.rank)
        await self.order.turn(self.task_id)
        return semaphore.slot(self.rank, on_queued=lambda: self.order.queued(self.task_id) if self.order else None)

    def swap(self, spec: object, resolved: Mapping[str, object], at: str | None = None) -> dict[str, object]:
        """`spec` (with `${VAR}` names, for limit keys) walked beside `resolved` (values): every model
        spec (`at`: the field holding it) becomes a gated one naming its slot here."""
        if is_model(resolved, at) and isinstance(resolved.get("provider"), str):
            return self._gated(spec, resolved)
        return {k: self._swapped(_field(spec, k), v, k) for k, v in resolved.items()}

    def _swapped(self, spec: object, value: object, at: str | None = None) -> object:
        if isinstance(value, Mapping):
            return self.swap(spec, value, at)
        if isinstance(value, list):
            return [self._swapped(_item(spec, i), v) for i, v in enumerate(value)]
        return value

    def _gated(self, spec: object, resolved: Mapping[str, object]) -> dict[str, object]:
        self.specs.append(resolved)
        own = _field(resolved.get("config"), "max_retries")
        takes_own = isinstance(own, int) and not isinstance(own, bool) and own >= 0 and not self.task_retries
        self.slot_retries.append(own if takes_own else self.retries)  # type: ignore[arg-type]  # an int, checked
        written = _field(_field(spec, "config"), "model")
        model = shown(written, _field(resolved.get("config"), "model")) if written else resolved.get("label")
        self.names.append(str(model or "?"))
        return {
            "provider": GATED_PROVIDER,
            "component_type": "model",
            "label": resolved.get("label"),
            "config": {
                "slot": len(self.specs) - 1,
                "limit_key": limit_key(spec if isinstance(spec, Mapping) else resolved),
                "max_concurrency": max_concurrency(resolved, self.default_concurrency),
            },
        }

    async def call(self, slot: int, semaphore: ModelLimit, request: Callable[[], Awaitable[T]]) -> T:
        async with await self.in_line(semaphore):
            await self.holding_slot()
            result = await self.retried(slot, request)
        self.usage.calls += 1
        return result

    async def retried(self, slot: int, request: Callable[[], Awaitable[T]], observe_success: bool = True) -> T:
        """`request` to the model of `slot` under the retry policy: the task's `retries`, else the
        model's own `max_retries` (the SDK's, switched off there), else MODEL_RETRIES. The caller
        holds the model's slot."""
        model, retries = self.names[slot], self.slot_retries[slot]

        async def on_retry(cause: str) -> None:
            self.metrics.inc("agentq_retries_total", ["model", cause])
            await self.on_retry(cause)

        async def attempt(number: int) -> T:
            if number > 1:
                await self.holding_slot()  # a cancelled run sends no retry either
            self.retrying = None  # a request in flight: not waiting to retry
            self.usage.attempts += 1
            started = time.perf_counter()
            try:
                result = await request()
            except Exception as exc:
                self.observe(model, _status(exc), started)
                if classify(exc) is None or number > retries:
                    raise ModelError(failure_text(exc)) from exc
                self.retrying = failure_text(exc)
                raise
            if observe_success:
                self.observe(model, "200", started)
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
            async for again in retrying(retries + 1, self.backoff, on_retry, done=1):
                with again:
                    result = await attempt(again.retry_state.attempt_number + 1)
        return result

    def observe(self, model: str, status: str, started: float) -> None:
        """A request's latency (since `started`, perf_counter) into the metrics."""
        self.metrics.observe(DURATION, [model, status], time.perf_counter() - started)

    def failure_prefix(self, slot: int) -> str:
        return f"model {self.names[slot]!r} at {_where(self.specs[slot])}"

    def count(self, model: str, usage: RequestUsage) -> None:
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        for kind, value in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)):
            if value:
                self.metrics.inc("agentq_model_tokens_total", [model, kind], value)


def _field(spec: object, key: object) -> object:
    return spec.get(key) if isinstance(spec, Mapping) else None


def _item(spec: object, index: int) -> object:
    return spec[index] if isinstance(spec, list) and index < len(spec) else None


def _where(spec: Mapping[str, object]) -> str:
    config = config_of(spec)
    provider = provider_path(str(spec.get("provider")))
    given = config.get("base_url") or config.get("azure_endpoint") or config.get("host")
    if not given and provider == OPENAI_CLIENT:  # the SDK's own default, as it reads it
        default = os.environ.get("OPENAI_BASE_URL")
        return f"{shown_url(default if default is not None else 'https://api.openai.com/v1')} (no base_url given)"
    return shown_url(str(given)) if given else provider


def _status(exc: BaseException) -> str:
    """A failed request's label in the latency metric: its HTTP status, else timeout or error (a
    refused or lost connection, which the SDK raises as a timeout, is an error)."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = "timeout" if "Timeout" in type(exc).__name__ and unreached(exc) is None else "error"
    return str(status)


def failure_text(exc: BaseException) -> str:
    """What the endpoint answered (or what went wrong), in one line."""
    if isinstance(exc, MalformedAnswer):
        return str(exc)
    status = getattr(exc, "status_code", None)
    body: object = getattr(exc, "body", None)
    detail = (body.get("message") if isinstance(body, dict) else None) or str(exc)
    if status is not None:
        return f"answered {status}: {str(detail)[:300]}"
    if (lost := unreached(exc) or not_http(exc)) is not None:
        return lost
    return f"{type(exc).__name__}: {str(exc)[:300]}"
