"""The one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.core.exceptions import InvalidInput
from shared.core.secrets import shown_url

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from shared.core.loader import Limits
    from shared.core.tree import TreeLimits


BROKER_SCHEMES = ("amqp", "amqps", "redis", "rediss")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True, frozen=True)

    # No REDIS_URL means "embedded default": the producer starts a local Redis and worker.
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # Celery's broker when it is not that Redis: RabbitMQ (amqp://user:pass@host:port/vhost), or
    # another Redis. Run state, results, the cache and the model limits stay in REDIS_URL.
    broker_url: str | None = Field(default=None, alias="BROKER_URL")
    studio_url: str = Field(default="http://127.0.0.1:8081", alias="STUDIO_URL")
    # Studio's own user when auth is off, so synced teams show up in its UI.
    studio_user_id: str = Field(default="guestuser@gmail.com", alias="STUDIO_USER_ID")
    studio_token: SecretStr | None = Field(default=None, alias="STUDIO_TOKEN")

    studio_timeout_seconds: float = Field(default=15.0, gt=0, alias="STUDIO_TIMEOUT_SECONDS")
    studio_retries: int = Field(default=4, ge=0, alias="STUDIO_RETRIES")
    studio_backoff_seconds: float = Field(default=0.5, ge=0, alias="STUDIO_BACKOFF_SECONDS")
    studio_concurrency: int = Field(default=16, ge=1, alias="STUDIO_CONCURRENCY")
    # validate components on the workers with Studio's own AutoGen (a tool's code then runs there, as
    # it does in Studio); false: every component goes to Studio's /api/validate/
    local_validation: bool = Field(default=True, alias="LOCAL_VALIDATION")

    model_max_concurrency: int = Field(default=8, ge=1, alias="MODEL_MAX_CONCURRENCY")
    model_retries: int = Field(default=4, ge=0, alias="MODEL_RETRIES")
    model_backoff_seconds: float = Field(default=0.5, ge=0, alias="MODEL_BACKOFF_SECONDS")
    model_timeout_seconds: float = Field(default=60.0, gt=0, alias="MODEL_TIMEOUT_SECONDS")
    task_timeout_seconds: float = Field(default=300.0, gt=0, alias="TASK_TIMEOUT_SECONDS")
    standin_llm_port: int = Field(default=11435, ge=1, le=65535, alias="STANDIN_LLM_PORT")

    # A worker stops taking tasks while its host is above either threshold. CPU is off (100) by
    # default: busy workers drive their own host to 100%, which is no reason to stop.
    throttle_memory_percent: float = Field(default=90.0, gt=0, alias="THROTTLE_MEMORY_PERCENT")
    throttle_cpu_percent: float = Field(default=100.0, gt=0, alias="THROTTLE_CPU_PERCENT")
    resource_interval_seconds: float = Field(default=5.0, gt=0, alias="RESOURCE_INTERVAL_SECONDS")  # also the heartbeat
    # a worker silent this long is gone: the producer requeues the messages it held
    worker_dead_seconds: float = Field(default=20.0, gt=0, alias="WORKER_DEAD_SECONDS")
    # the producer says which nodes are stuck on which worker when nothing ends for this long
    stuck_seconds: float = Field(default=120.0, gt=0, alias="STUCK_SECONDS")
    # the producer gives up (exit 4) when nothing has ended for this long: longer than one task
    # may take (TASK_TIMEOUT_SECONDS) plus the time to find and requeue a dead worker's work
    stall_seconds: float = Field(default=400.0, gt=0, alias="STALL_SECONDS")
    # a message unacknowledged this long goes back on its queue (kombu). Dead workers' messages are
    # requeued by the producer within WORKER_DEAD_SECONDS; this is the backstop when no producer
    # waits. Keep it above the longest message: a sync batch or TASK_TIMEOUT_SECONDS.
    visibility_timeout_seconds: int = Field(default=900, ge=60, alias="VISIBILITY_TIMEOUT_SECONDS")

    # Redis unreachable (a partition, a restart) is waited out this long, with backoff, by every
    # client: workers and the producer alike; only then is it an error naming Redis
    redis_outage_seconds: float = Field(default=60.0, ge=0, alias="REDIS_OUTAGE_SECONDS")
    # a task released (or started on a worker now gone) and seen in no queue, in no worker's hands,
    # for this long is published again (producer/recovery.py)
    dispatch_grace_seconds: float = Field(default=5.0, gt=0, alias="DISPATCH_GRACE_SECONDS")

    exporter_port: int = Field(default=9808, ge=1, le=65535, alias="EXPORTER_PORT")
    # the embedded default's Flower (`--flower`): on loopback, behind FLOWER_BASIC_AUTH (user:password)
    # or, unset, a password made for the command and kept in the cache dir (flower.auth, mode 0600)
    flower: bool = Field(default=False, alias="AGENTQ_FLOWER")
    flower_port: int = Field(default=5555, ge=1, le=65535, alias="FLOWER_PORT")
    flower_basic_auth: SecretStr | None = Field(default=None, alias="FLOWER_BASIC_AUTH")
    # read by `producer monitor`; unset: the exporter of this machine's EXPORTER_PORT (the embedded default's)
    exporter_url: str = Field(default="http://127.0.0.1:9808", alias="EXPORTER_URL")
    exporter_queues: str = Field(default="studio,models", alias="EXPORTER_QUEUES")  # comma-separated
    studio_probe_interval_seconds: float = Field(default=5.0, gt=0, alias="STUDIO_PROBE_INTERVAL_SECONDS")

    # input limits: a file over one is an error naming it; the rest of the tree goes on
    max_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1, alias="MAX_FILE_BYTES")
    max_expanded_values: int = Field(default=200_000, ge=1, alias="MAX_EXPANDED_VALUES")
    max_nesting_depth: int = Field(default=64, ge=1, alias="MAX_NESTING_DEPTH")
    max_references: int = Field(
        default=200, ge=1, alias="MAX_REFERENCES"
    )  # $refs in one component (team participants ...)
    max_participants: int = Field(default=100, ge=1, alias="MAX_PARTICIPANTS")
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1, alias="MAX_REQUEST_BYTES"
    )  # a component with its refs inlined

    batch_size: int = Field(default=25, ge=1, alias="SYNC_BATCH_SIZE")
    # messages a worker process works on at once (threads pool; their work shares one event loop)
    worker_concurrency: int = Field(default=32, ge=1, alias="WORKER_CONCURRENCY")
    cache_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0, alias="CACHE_TTL_SECONDS")
    # scan cache, and the embedded Redis and Studio data
    cache_dir: Path = Field(default=Path.home() / ".cache" / "agentq", alias="AGENTQ_CACHE_DIR")
    autogenstudio_bin: str | None = Field(default=None, alias="AUTOGENSTUDIO_BIN")
    # A fixed port keeps the cache namespace (Studio URL + user) the same from one run to the next.
    local_studio_port: int = Field(default=8081, ge=1, le=65535, alias="LOCAL_STUDIO_PORT")
    run_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0, alias="RUN_TTL_SECONDS")

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if value == "":
            return None  # REDIS_URL= set but empty: the embedded default, as when unset
        if isinstance(value, str):
            _check_redis_url(value)
        return value

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker_url(cls, value: object) -> object:
        if value == "":
            return None  # BROKER_URL= set but empty: the broker is REDIS_URL, as when unset
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme not in BROKER_SCHEMES or not parts.hostname:
                raise ValueError("expected amqp://user:password@host:port/vhost (or amqps://, redis://, rediss://)")
            _ = parts.port  # ValueError when it is no port
        return value

    @model_validator(mode="before")
    @classmethod
    def _exporter_url(cls, data: object) -> object:
        """EXPORTER_URL unset or empty: this machine's exporter, on EXPORTER_PORT."""
        if not isinstance(data, dict) or data.get("EXPORTER_URL") or data.get("exporter_url"):
            return data
        port = str(data.get("EXPORTER_PORT", data.get("exporter_port", 9808)))
        return {**data, "EXPORTER_URL": f"http://127.0.0.1:{port}"} if port.isdigit() else data

    @field_validator("studio_url", "exporter_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http://host:port (or https://)")
        _ = parts.port  # ValueError when it is no port
        return value


def _check_redis_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://host:port/db (or rediss://, unix://)")
    if parts.scheme == "unix":
        return
    _ = parts.port  # ValueError when it is no port
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} is not a number")


def _checked(build: Callable[[], Settings]) -> Settings:
    """Settings, or InvalidInput naming each setting that is wrong and why (a secret's value is never shown)."""
    try:
        return build()
    except ValidationError as exc:
        names = {name: f.alias or name for name, f in Settings.model_fields.items()}
        secret = {f.alias for f in Settings.model_fields.values() if "Secret" in str(f.annotation)}
        problems = [_problem(e, names, secret) for e in exc.errors()]
        raise InvalidInput("invalid setting: " + "; ".join(problems)) from None


def _problem(e: ErrorDetails, names: dict[str, str], secret: set[str | None]) -> str:
    """`NAME: what is wrong (got 'value')`: named as the environment names it, a secret's value not shown."""
    name = names.get(str(e["loc"][0]), str(e["loc"][0])) if e["loc"] else "settings"
    value = e.get("input")
    shown = shown_url(value) if isinstance(value, str) else value
    got = "" if name in secret else f" (got {shown!r})"
    return f"{name}: {e['msg'].removeprefix('Value error, ')}{got}"


def check_store(settings: Settings) -> None:
    """A BROKER_URL needs a REDIS_URL: the workers on that broker keep run state in their Redis,
    and the embedded one (no REDIS_URL) is not theirs: a local worker on that broker would take
    their messages and they would take its, neither finding the other's runs."""
    if settings.broker_url and not settings.redis_url:
        raise InvalidInput(
            f"BROKER_URL is set ({shown_url(settings.broker_url)}) but REDIS_URL is not: set REDIS_URL to the "
            "Redis the workers on that broker use (or unset BROKER_URL for the embedded Redis and worker)"
        )


def scan_limits(settings: Settings) -> Limits:
    """The input limits `producer.scanner.scan` takes."""
    from shared.core.loader import Limits

    return Limits(
        max_nodes=settings.max_expanded_values,
        max_depth=settings.max_nesting_depth,
        max_file_bytes=settings.max_file_bytes,
    )


def tree_limits(settings: Settings) -> TreeLimits:
    """The limits `shared.core.tree.build_tree` takes."""
    from shared.core.tree import TreeLimits

    return TreeLimits(settings.max_references, settings.max_participants, settings.max_request_bytes)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, read once per process, with CLI flags (non-None values)
    taking precedence."""
    return with_overrides(_checked(Settings), **overrides)


def with_overrides(settings: Settings, **overrides: object) -> Settings:
    """A validated copy with these values (None: left as it is); settings are never changed in place."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return _checked(lambda: Settings.model_validate(settings.model_dump() | clean)) if clean else settings


def environment() -> dict[str, str]:
    """The variables `${VAR}` placeholders are resolved from."""
    return dict(os.environ)
