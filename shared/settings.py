"""The one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.core.exceptions import InvalidInput
from shared.core.secrets import shown_url
from shared.defaults import CACHE_DIR

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from shared.core.loader import Limits
    from shared.core.tree import TreeLimits


BROKER_SCHEMES = ("amqp", "amqps", "redis", "rediss")


# the bounds a setting may have, each named once (with pydantic's PositiveFloat, NonNegativeInt ...);
# a count is at least 1 (ge=1, not PositiveInt's gt=0, whose message for a 0 reads 'greater than 0')
AtLeastOne = Annotated[int, Field(ge=1)]
# a key's time to live: at most ten years (Redis refuses an expiry past its clock's range)
TimeToLive = Annotated[int, Field(ge=1, le=10 * 365 * 24 * 3600)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    # each setting is read from its name in capitals (REDIS_URL), unless its alias says otherwise
    # numbers are finite: `inf` seconds broke Celery's settings made from them (and NaN compares false)
    model_config = SettingsConfigDict(
        env_prefix="",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        alias_generator=str.upper,
        allow_inf_nan=False,
    )

    # No REDIS_URL means "embedded default": the producer starts a local Redis and worker.
    redis_url: str | None = None
    # Celery's broker when it is not that Redis: RabbitMQ (amqp://user:pass@host:port/vhost), or
    # another Redis. Run state, results, the cache and the model limits stay in REDIS_URL.
    broker_url: str | None = None
    studio_url: str = "http://127.0.0.1:8081"
    # Studio's own user when auth is off, so synced teams show up in its UI.
    studio_user_id: str = "guestuser@gmail.com"
    studio_token: SecretStr | None = None

    studio_timeout_seconds: PositiveFloat = 15.0
    studio_retries: NonNegativeInt = 4
    studio_backoff_seconds: NonNegativeFloat = 0.5
    studio_concurrency: AtLeastOne = 16
    # validate components on the workers with Studio's own AutoGen (a tool's code then runs there, as
    # it does in Studio); false: every component goes to Studio's /api/validate/
    local_validation: bool = True

    model_max_concurrency: AtLeastOne = 8
    model_retries: NonNegativeInt = 4
    model_backoff_seconds: NonNegativeFloat = 0.5
    model_timeout_seconds: PositiveFloat = 60.0
    task_timeout_seconds: PositiveFloat = 300.0
    standin_llm_port: Port = 11435

    # A worker stops taking tasks while its host is above either threshold. CPU is off (100) by
    # default: busy workers drive their own host to 100%, which is no reason to stop.
    throttle_memory_percent: PositiveFloat = 90.0
    throttle_cpu_percent: PositiveFloat = 100.0
    resource_interval_seconds: PositiveFloat = 5.0  # also the heartbeat
    # a worker silent this long is gone: the producer requeues the messages it held
    worker_dead_seconds: PositiveFloat = 20.0
    # the producer says which nodes are stuck on which worker when nothing ends for this long
    stuck_seconds: PositiveFloat = 120.0
    # the producer gives up (exit 4) when nothing has ended for this long: longer than one task
    # may take (TASK_TIMEOUT_SECONDS) plus the time to find and requeue a dead worker's work
    stall_seconds: PositiveFloat = 400.0
    # a message unacknowledged this long goes back on its queue (kombu). Dead workers' messages are
    # requeued by the producer within WORKER_DEAD_SECONDS; this is the backstop when no producer
    # waits. Keep it above the longest message: a sync batch or TASK_TIMEOUT_SECONDS.
    visibility_timeout_seconds: Annotated[int, Field(ge=60)] = 900

    # Redis unreachable (a partition, a restart) is waited out this long, with backoff, by every
    # client: workers and the producer alike; only then is it an error naming Redis
    redis_outage_seconds: NonNegativeFloat = 60.0
    # a task released (or started on a worker now gone) and seen in no queue, in no worker's hands,
    # for this long is published again (producer/recovery.py)
    dispatch_grace_seconds: PositiveFloat = 5.0

    exporter_port: Port = 9808
    # the embedded default's Flower (`--flower`): on loopback, behind FLOWER_BASIC_AUTH (user:password)
    # or, unset, a password made for the command and kept in the cache dir (flower.auth, mode 0600)
    flower: bool = Field(default=False, alias="AGENTQ_FLOWER")
    flower_port: Port = 5555
    flower_basic_auth: SecretStr | None = None
    # read by `producer monitor`; unset: the exporter of this machine's EXPORTER_PORT (the embedded default's)
    exporter_url: str = "http://127.0.0.1:9808"
    exporter_queues: str = "studio,models"  # comma-separated
    studio_probe_interval_seconds: PositiveFloat = 5.0

    # input limits: a file over one is an error naming it; the rest of the tree goes on
    max_file_bytes: AtLeastOne = 5 * 1024 * 1024
    max_expanded_values: AtLeastOne = 200_000
    max_nesting_depth: AtLeastOne = 64
    max_references: AtLeastOne = 200  # $refs in one component (team participants ...)
    max_participants: AtLeastOne = 100
    max_request_bytes: AtLeastOne = 1024 * 1024  # a component with its refs inlined

    batch_size: AtLeastOne = Field(default=25, alias="SYNC_BATCH_SIZE")
    # messages a worker process works on at once (threads pool; their work shares one event loop)
    worker_concurrency: AtLeastOne = 32
    cache_ttl_seconds: TimeToLive = 30 * 24 * 3600
    # scan cache, and the embedded Redis and Studio data
    cache_dir: Path = Field(default=CACHE_DIR, alias="AGENTQ_CACHE_DIR")
    autogenstudio_bin: str | None = None
    # A fixed port keeps the cache namespace (Studio URL + user) the same from one run to the next.
    local_studio_port: Port = 8081
    run_ttl_seconds: TimeToLive = 7 * 24 * 3600

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

    @field_validator("cache_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        """A folder, or one that can be made: a file there (or above it) would fail every command
        that writes its cache, far from the cause."""
        for at in (value, *value.parents):
            if at.exists():
                if not at.is_dir():
                    raise ValueError(f"{at} is not a folder" if at == value else f"{at}, above it, is not a folder")
                return value
        return value

    @field_validator("studio_user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not value.strip():  # rows written for a blank user are seen by nobody
            raise ValueError("blank: give the Studio user the rows are for")
        return value

    @field_validator("studio_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # a header cannot hold a line break: read from a file, a token often ends in one
        if value is not None and any(c in value.get_secret_value() for c in "\r\n"):
            raise ValueError("contains a line break (a token read from a file keeps its newline: strip it)")
        return value

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
    if parts.scheme == "unix":  # Celery's result backend and kombu name a socket otherwise, and keepalive has none
        raise ValueError("a Unix socket is not supported: give Redis's TCP address, redis://host:port/db")
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("expected redis://host:port/db (or rediss://)")
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
