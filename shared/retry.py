"""When to retry a call to Studio or a model endpoint and how long to wait. Judged by status and
exception type, never by message text; pure, no I/O.

One policy: 429 and 503 wait for Retry-After (capped) or else back off; other 5xx, timeouts and
connection errors back off exponentially with full jitter; any other 4xx is final.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Retry:
    cause: str  # rate_limited, server_error, timeout, connection
    after: float | None  # what the server asked for, in seconds


def retry_after_seconds(value: str | None, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Retry-After as seconds or an HTTP date, capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, min(cap, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, when - time.time()))


def _status_and_headers(exc: BaseException) -> tuple[int | None, Mapping[str, str]]:
    # httpx raises HTTPStatusError; the openai, anthropic and ollama SDKs carry status_code (and
    # most a response) on their own exception classes
    response: Any = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if status is None and isinstance(response, httpx.Response):
        status = response.status_code
    headers = getattr(response, "headers", None) or {}
    return (int(status) if isinstance(status, int) else None), headers


def classify(exc: BaseException) -> Retry | None:
    """How to retry after `exc`, or None when it is final."""
    status, headers = _status_and_headers(exc)
    if status is not None:
        if status in (429, 503):
            return Retry(
                "rate_limited" if status == 429 else "server_error", retry_after_seconds(headers.get("retry-after"))
            )
        return Retry("server_error", None) if status >= 500 else None
    name = type(exc).__name__
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)) or "Timeout" in name:
        return Retry("timeout", None)
    if isinstance(exc, (httpx.TransportError, ConnectionError)) or name == "APIConnectionError":
        return Retry("connection", None)
    return None


def is_retryable(exc: BaseException) -> bool:
    return classify(exc) is not None


def backoff_delay(attempt: int, base: float, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter (attempt counts from 0)."""
    return random.uniform(0, min(cap, base * 2**attempt))


def wait_seconds(retry: Retry, attempt: int, base: float) -> float:
    return retry.after if retry.after is not None else backoff_delay(attempt, base)
