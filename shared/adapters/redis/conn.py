"""Redis clients that ride out an outage: every client of the project is made here.

A lost connection or a timeout is not a failure of the work that was talking to Redis: the
command is sent again, with capped exponential backoff, until `outage` seconds have passed since
its first try (REDIS_OUTAGE_SECONDS). A partition of a worker host, or Redis restarted with its
append-only file, then costs time, not tasks. Past the bound the error goes to the caller, which
names Redis and its URL. Idle connections are probed by TCP keepalive and redis-py's health
check, so a dead peer is noticed in seconds rather than after the kernel's 2 hours.

Every command we send is safe to send twice: the scripts are idempotent (end_task.lua ends a task
once; acquire.lua grants again the slots a call sent before granted), a claim, a turn or a create
lock holds its caller's token (Store.claim, ClusterState.take_turn, CreateLock) and is released
only while it holds it (release.lua; CreateLock by redis-py's own script), a run's waves are
written anew rather than added to (Store.create_run), and a counter bumped twice by a lost reply
only moves a progress figure or a metric.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry as async_retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.adapters.redis.packing import HiredisPacker

T = TypeVar("T")
# the asyncio client's type, named here so that its holders (workers/task_base.py) import no redis
AsyncRedis: TypeAlias = aioredis.Redis

# what an outage looks like to redis-py (a lost socket, a refused connection, a read that timed out)
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, socket.timeout, OSError)
# Replies as text; a file name need not be UTF-8, so a path is sent and read back as the bytes it
# stands for (surrogateescape), as Python's os module does
TEXT: dict[str, Any] = {"decode_responses": True, "encoding_errors": "surrogateescape"}
BACKOFF_CAP = 2.0  # seconds between tries at most: Redis back is seen within 2 s
SOCKET_TIMEOUT = 10.0  # a reply not read within this is a lost connection (a blocking read asks for less)
KEEPALIVE = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3}
CONNECT_TIMEOUT = 5.0  # seconds for a connection to be made
HEALTH_CHECK_SECONDS = 15  # a connection idle this long is pinged before it is used


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(cap=BACKOFF_CAP, base=0.05)


class _Outage:
    """One command's outage, however its client waits: counts the failed tries, reports each to
    redis-py's `fail` (which drops the broken connection) and says how long to wait before the next."""

    def __init__(
        self,
        retry: OutageRetry | AsyncOutageRetry,
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> None:
        self.backoff, self.deadline, self.failures = retry._backoff, time.monotonic() + retry.outage, 0
        self.fail, self.is_retryable, self.with_failure_count = fail, is_retryable, with_failure_count

    def failed(self, error: Exception) -> Any:
        """What `fail` returns for this try (the asyncio client's is a coroutine, to be awaited)."""
        self.failures += 1
        return self.fail(error, self.failures) if self.with_failure_count else self.fail(error)

    def pause(self, error: Exception) -> float:
        """How long to wait before the next try; the error is raised again once the outage outlasts
        its bound or the caller says it is not to be retried."""
        if time.monotonic() >= self.deadline or (self.is_retryable is not None and not self.is_retryable(error)):
            raise error
        return min(self.backoff.compute(self.failures), max(0.0, self.deadline - time.monotonic()))


class _Heard:
    back_at = 0.0  # when (wall clock) a command last got through after Redis was out of reach


class OutageRetry(Retry):
    """redis-py's Retry, bounded by time rather than by a count of tries (redis-py counts tries;
    an outage is measured in seconds)."""

    def __init__(self, outage: float, heard: _Heard | None = None) -> None:
        super().__init__(_backoff(), -1, OUTAGE_ERRORS)
        self.outage = outage
        self.heard = heard or _Heard()

    def __deepcopy__(self, memo: dict[int, Any]) -> OutageRetry:
        """redis-py gives each connection a deep copy: the copies share what they heard."""
        return OutageRetry(self.outage, self.heard)

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *how: Any, **how_named: Any) -> T:
        outage = _Outage(self, fail, *how, **how_named)  # how: redis-py's is_retryable, with_failure_count
        while True:
            try:
                answer = do()
            except OUTAGE_ERRORS as error:
                outage.failed(error)
                time.sleep(outage.pause(error))
            else:
                if outage.failures:
                    self.heard.back_at = time.time()
                return answer


def heard_again(client: redis.Redis) -> float:
    """When `client` last reached Redis again after an outage (0: never out of reach)."""
    retry = client.get_retry()
    return retry.heard.back_at if isinstance(retry, OutageRetry) else 0.0


class AsyncOutageRetry(async_retry.Retry):
    """The same for the asyncio client."""

    def __init__(self, outage: float) -> None:
        super().__init__(_backoff(), -1, OUTAGE_ERRORS)
        self.outage = outage

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[..., Any], *how: Any, **how_named: Any
    ) -> T:
        outage = _Outage(self, fail, *how, **how_named)
        while True:
            try:
                return await do()
            except OUTAGE_ERRORS as error:
                if asyncio.iscoroutine(reported := outage.failed(error)):
                    await reported
                await asyncio.sleep(outage.pause(error))


def _options() -> dict[str, Any]:
    return {
        **TEXT,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "socket_keepalive_options": KEEPALIVE,
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }


def sync_client(url: str, outage: float) -> redis.Redis:
    """A client whose commands ride out `outage` seconds without Redis."""
    packer = HiredisPacker("utf-8", TEXT["encoding_errors"])
    return redis.Redis.from_url(url, retry=OutageRetry(outage), command_packer=packer, **_options())


def async_client(url: str, outage: float, max_connections: int = 16) -> AsyncRedis:
    """An asyncio client on one bounded pool (a new connection costs ~2 ms of CPU to set up)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, retry=AsyncOutageRetry(outage), **_options()
    )
    return aioredis.Redis(connection_pool=pool)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says Redis could not be reached (as opposed to an answer it gave)."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))
