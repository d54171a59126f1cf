"""When to retry an HTTP call and how long to wait: judged by status and exception type, never by text."""

from __future__ import annotations

import random

import httpx


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, (httpx.TimeoutException, httpx.TransportError))


def backoff_delay(attempt: int, base: float, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter (attempt counts from 0)."""
    return random.uniform(0, min(cap, base * 2**attempt))
