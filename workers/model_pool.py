"""The real model clients of one worker process (OpenAI, Anthropic, Ollama ...), loaded by AutoGen
once per resolved configuration and shared by every task of the process, with the SDK's own
retries switched off so they do not multiply ours (workers/task_models.py retries). Only clients
of HTTP APIs are shared: they keep nothing but connections between requests. Any other (a replay
client's script, a local model) is made for each agent that names it, as AutoGen and Studio make it."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from autogen_core.models import ChatCompletionClient
from pydantic import SecretStr

from shared.core.endpoints import provider_path
from shared.core.hashing import canonical_json, sha256_hex
from workers.sdk_wire import send_as_built

if TYPE_CHECKING:
    from openai import DefaultAioHttpClient

OPENAI_CLIENT = provider_path("OpenAIChatCompletionClient")
SHARED_PROVIDERS = (
    "autogen_ext.models.openai.",
    "autogen_ext.models.anthropic.",
    "autogen_ext.models.ollama.",
    "autogen_ext.models.azure.",
)


class ModelClients:
    """Loaded model clients of one worker process, by resolved configuration (secrets included,
    so the key is a digest and lives only in memory)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._clients: dict[str, ChatCompletionClient] = {}
        self._http: DefaultAioHttpClient | None = None

    def get(self, spec: Mapping[str, object], fresh: list[ChatCompletionClient]) -> ChatCompletionClient:
        """The process's client for `spec`; or, for a provider whose clients keep state between
        requests, one made for this caller alone (added to `fresh`: the caller closes it)."""
        if not provider_path(str(spec.get("provider"))).startswith(SHARED_PROVIDERS):
            fresh.append(self._load(spec))
            return fresh[-1]
        key = sha256_hex(canonical_json(spec))
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._load(spec)
        return client

    def _load(self, spec: Mapping[str, object]) -> ChatCompletionClient:
        client = self._build(spec)
        send_as_built(client)
        return client

    def _build(self, spec: Mapping[str, object]) -> ChatCompletionClient:
        provider = provider_path(str(spec.get("provider")))
        module, _, name = provider.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        spec = self._without_sdk_retries(spec, getattr(cls, "component_config_schema", None))
        # a base URL with a user and password: httpx (AutoGen's own client) sends them as Basic auth,
        # where aiohttp refuses credentials in the URL beside the SDK's Authorization header
        if provider != OPENAI_CLIENT or cls is None or _has_credentials(config_of(spec).get("base_url")):
            return ChatCompletionClient.load_component(spec)
        # OpenAI's own aiohttp transport, one per process for every OpenAI client: httpx's pool
        # scans all its connections for each request (~2 ms of CPU at 100 in flight). Otherwise
        # what OpenAIChatCompletionClient._from_config does.
        config = cls.component_config_schema.model_validate(spec["config"])
        kwargs = config.model_dump(exclude_none=True)
        if isinstance(config.api_key, SecretStr):
            kwargs["api_key"] = config.api_key.get_secret_value()
        client: ChatCompletionClient = cls(**kwargs, http_client=self._http_client())
        return client

    def _http_client(self) -> DefaultAioHttpClient:
        if self._http is None:
            from openai import DefaultAioHttpClient

            self._http = DefaultAioHttpClient(timeout=self.timeout)
        return self._http

    def _without_sdk_retries(self, spec: Mapping[str, object], schema: object) -> dict[str, object]:
        fields = getattr(schema, "model_fields", {})
        config = dict(config_of(spec))
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


def _has_credentials(url: object) -> bool:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        return False  # the client's own load says what is wrong with it
    return parts is not None and bool(parts.username or parts.password)


def config_of(spec: Mapping[str, object]) -> Mapping[str, object]:
    """A component's `config` ({} when it has none); one that is no mapping fails its load."""
    config = spec.get("config") or {}
    if not isinstance(config, Mapping):
        raise TypeError(f"a component's config is a mapping, not {type(config).__name__}")
    return config
