"""OpenAI-compatible chat completions over httpx (OpenAI, Groq, Ollama, vLLM, LM Studio ...),
with the limits real endpoints impose: 429 + Retry-After, backoff on 5xx and timeouts."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.endpoints import ModelEndpoint
from shared.metrics import Metrics
from shared.retry import backoff_delay

MAX_RETRY_AFTER = 60.0


class EndpointError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ChatResult:
    content: str
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(MAX_RETRY_AFTER, when - time.time()))


async def chat(
    http: httpx.AsyncClient,
    endpoint: ModelEndpoint,
    messages: list[dict[str, str]],
    *,
    retries: int,
    backoff: float,
    on_retry: Callable[[str], None] | None = None,
    metrics: Metrics | None = None,
) -> ChatResult:
    """One completion; retried on 429 (after Retry-After), 5xx, timeouts and connection errors."""
    metrics = metrics or Metrics()
    url = endpoint.base_url.rstrip("/") + "/chat/completions"
    headers = {**endpoint.headers, **({"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {})}
    body = {**endpoint.params, "model": endpoint.model, "messages": messages}
    for attempt in range(retries + 1):
        last = attempt == retries
        started = time.perf_counter()
        try:
            response = await http.post(url, json=body, headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            metrics.observe("agentq_model_request_duration_seconds", [endpoint.model, "error"], time.perf_counter() - started)
            if last:
                raise EndpointError(f"{endpoint.base_url} unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
            cause, wait = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection", backoff_delay(attempt, backoff)
        else:
            status = response.status_code
            metrics.observe("agentq_model_request_duration_seconds", [endpoint.model, str(status)], time.perf_counter() - started)
            if status < 300:
                result = _parse(response, attempt + 1)
                for kind in ("prompt_tokens", "completion_tokens"):
                    if getattr(result, kind):
                        metrics.inc("agentq_model_tokens_total", [endpoint.model, kind.removesuffix("_tokens")], getattr(result, kind))
                return result
            detail = response.text[:300]
            if last or (status < 500 and status != 429):
                raise EndpointError(f"{endpoint.base_url} answered {status}: {detail}", status)
            cause = "rate_limited" if status == 429 else "server_error"
            wait = retry_after_seconds(response.headers.get("retry-after")) if status == 429 else None
            wait = backoff_delay(attempt, backoff) if wait is None else wait
        metrics.inc("agentq_retries_total", ["model", cause])
        if on_retry:
            on_retry(cause)
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def _parse(response: httpx.Response, attempts: int) -> ChatResult:
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"unexpected answer from the endpoint: {response.text[:200]}", response.status_code) from exc
    usage = data.get("usage") or {}
    return ChatResult(content, usage.get("prompt_tokens"), usage.get("completion_tokens"), attempts)
