"""When to retry a call to Studio or a model endpoint and how long to wait. Judged by status and
exception type, never by message text; no I/O of its own.

One policy: 429 and 503 wait for Retry-After (capped) or else back off; other 5xx, a 200 whose
body is no answer, timeouts and connection errors back off exponentially with full jitter; any
other 4xx is final. One loop that applies it, tenacity's (`retrying`), for Studio's client,
Studio creates and model requests.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from shared.core.exceptions import MalformedAnswer

MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Retry:
    cause: str  # rate_limited, server_error, timeout, connection
    after: float | None  # what the server asked for, in seconds


def retry_after_seconds(value: str | None, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Retry-After as seconds or an HTTP date, capped; None when absent, unreadable, or not in the
    future (`-5`, `0`, a past date ask for no wait: backing off keeps a server that says so
    from having every retry at once)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(cap, seconds) if seconds > 0 else None  # NaN is not > 0


def _status_and_headers(exc: BaseException) -> tuple[int | None, Mapping[str, str]]:
    # Studio's client (AnswerStatus), the openai, anthropic and ollama SDKs carry status_code (and
    # most a response) on their exception classes; httpx's HTTPStatusError only a response
    response: Any = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(response, "status_code", None)
    headers = getattr(exc, "headers", None) or getattr(response, "headers", None) or {}
    return (int(status) if isinstance(status, int) else None), headers


def _is_a(exc: BaseException, name: str) -> bool:
    """Whether one of `exc`'s classes is named `name` (httpx's and httpx2's alike, without importing them)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def classify(exc: BaseException) -> Retry | None:
    """How to retry after `exc`, or None when it is final."""
    status, headers = _status_and_headers(exc)
    if status is not None:
        if status in (429, 503):
            return Retry(
                "rate_limited" if status == 429 else "server_error", retry_after_seconds(headers.get("retry-after"))
            )
        return Retry("server_error", None) if status >= 500 else None
    if isinstance(exc, MalformedAnswer) or not_http(exc) is not None:
        return Retry("malformed_answer", None)
    name = type(exc).__name__
    if unreached(exc) is not None:
        return Retry("connection", None)
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in name:
        return Retry("timeout", None)
    # a lost connection, or an answer cut off before its end
    lost = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
    if isinstance(exc, lost) or _is_a(exc, "TransportError") or name == "APIConnectionError":
        return Retry("connection", None)
    return None


def unreached(exc: BaseException) -> str | None:
    """A refused or lost connection under `exc`, in words; None when there is none. The OpenAI
    SDK's aiohttp client (httpx-aiohttp) raises both as timeouts, which they are not."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionRefusedError):
            return f"could not connect: {os.strerror(cause.errno) if cause.errno else 'Connection refused'}"
        if isinstance(cause, aiohttp.ServerDisconnectedError | ConnectionResetError):
            return "connection lost: the server closed it before answering"
        seen.add(id(cause))
        cause = cause.__cause__ or getattr(cause, "os_error", None)  # aiohttp keeps its OSError there
    return None


def not_http(exc: BaseException) -> str | None:
    """An answer that is no HTTP (aiohttp could not read its status line or headers), in words;
    None for anything else. aiohttp raises it as a response error of status 400, which the server
    never sent."""
    if type(exc) is aiohttp.ClientResponseError and isinstance(
        exc.__cause__, aiohttp.http_exceptions.HttpProcessingError
    ):
        return f"answered with something that is not HTTP: {' '.join(str(exc.message).split())[:200]}"
    return None


def is_retryable(exc: BaseException) -> bool:
    return classify(exc) is not None


def backoff_delay(attempt: int, base: float, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter (attempt counts from 0)."""
    return random.uniform(0, min(cap, base * 2**attempt))


def wait_seconds(retry: Retry, attempt: int, base: float) -> float:
    return retry.after if retry.after is not None else backoff_delay(attempt, base)


def cause_of(exc: BaseException | None) -> str:
    found = classify(exc) if exc is not None else None
    return found.cause if found else "error"


def delay_after(exc: BaseException | None, n: int, base: float) -> float:
    """Seconds to wait after failed attempt `n` (from 0); an error `classify` cannot read, such as
    one already wrapped, backs off."""
    found = classify(exc) if exc is not None else None
    return wait_seconds(found, n, base) if found else backoff_delay(n, base)


async def pause(exc: BaseException, base: float, on_retry: Callable[[str], Awaitable[None] | None]) -> None:
    """What the loop of `retrying` does after a first attempt that failed, for a caller that made
    that attempt outside the loop (then `retrying(..., done=1)`)."""
    pending = on_retry(cause_of(exc))
    if inspect.isawaitable(pending):
        await pending
    await asyncio.sleep(delay_after(exc, 0, base))


def retrying(
    attempts: int,
    base: float,
    on_retry: Callable[[str], Awaitable[None] | None] | None = None,
    *,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    give_up: Callable[[BaseException], bool] | None = None,
    done: int = 0,
) -> AsyncRetrying:
    """At most `attempts` tries of the body of `async for attempt in retrying(...): with attempt:`,
    retrying what `retry_on` accepts and waiting as the policy says (`delay_after`).
    `on_retry(cause)` runs before each wait; `give_up(exc)` stops early; `done` tries were made
    before the loop (see `pause`). The last error is raised as it is."""

    def error(state: RetryCallState) -> BaseException | None:
        return state.outcome.exception() if state.outcome else None

    def wait(state: RetryCallState) -> float:
        return delay_after(error(state), state.attempt_number - 1 + done, base)

    async def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            pending = on_retry(cause_of(error(state)))
            if inspect.isawaitable(pending):
                await pending

    def stop(state: RetryCallState) -> bool:
        exc = error(state)
        # give_up first, on every failure: it may count what it sees
        early = give_up is not None and exc is not None and give_up(exc)
        return early or state.attempt_number + done >= attempts

    return AsyncRetrying(
        stop=stop,
        retry=retry_if_exception(retry_on),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
