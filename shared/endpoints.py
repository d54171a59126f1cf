"""Which OpenAI-compatible endpoint a model component stands for, and why one cannot be called.

Pure: the producer checks every agent's model client before a run is enqueued, and the worker
builds the endpoint from the same component once `${VAR}` is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OLLAMA_HOST = "http://localhost:11434"
# AutoGen model clients whose endpoint speaks OpenAI's /chat/completions (Ollama serves it under /v1)
OPENAI_COMPATIBLE = ("OpenAIChatCompletionClient", "OllamaChatCompletionClient")
# what AutoGen's OpenAI client config passes on to chat completions
REQUEST_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "frequency_penalty",
                  "presence_penalty", "seed", "stop", "n", "user", "response_format", "logit_bias")
OLLAMA_OPTIONS = ("temperature", "top_p", "seed", "stop")


@dataclass(frozen=True)
class ModelEndpoint:
    base_url: str
    model: str
    api_key: str | None
    max_concurrency: int
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def limit_key(self) -> str:
        """Endpoints sharing a base URL and model share one concurrency limit."""
        return f"{self.base_url.rstrip('/')}|{self.model}"


def _provider_class(model: Mapping[str, Any]) -> str:
    return str(model.get("provider") or "").rsplit(".", 1)[-1]


def endpoint_problem(model: Any) -> str | None:
    """Why this model component cannot be called over the OpenAI-compatible API, or None."""
    if not isinstance(model, Mapping):
        return "has no model_client"
    label = model.get("label") or "(inline)"
    config = model.get("config") or {}
    provider = _provider_class(model)
    if provider and provider not in OPENAI_COMPATIBLE and not config.get("base_url"):
        return (f"model client {label!r} is a {model.get('provider')}, which does not speak the OpenAI-compatible "
                f"chat completions API (use OpenAIChatCompletionClient with a base_url)")
    if not isinstance(config.get("model"), str) or not config["model"]:
        return f"model client {label!r} has no config.model"
    return None


def endpoint_from_component(model: Mapping[str, Any], env: Mapping[str, str], default_concurrency: int) -> ModelEndpoint:
    """A model component (with `${VAR}` already resolved) -> where and how to call it."""
    problem = endpoint_problem(model)
    if problem:
        raise ValueError(problem)
    config = model.get("config") or {}
    params = {k: config[k] for k in REQUEST_PARAMS if config.get(k) is not None}
    if _provider_class(model) == "OllamaChatCompletionClient":
        host = str(config.get("host") or OLLAMA_HOST).rstrip("/")
        base_url = str(config.get("base_url") or (host if "://" in host else f"http://{host}") + "/v1")
        options = config.get("options") or {}
        params.update({k: options[k] for k in OLLAMA_OPTIONS if isinstance(options, Mapping) and options.get(k) is not None})
        key = config.get("api_key")
    else:
        base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
        key = config.get("api_key") or env.get("OPENAI_API_KEY")  # as the OpenAI client itself does
    headers = {str(k): str(v) for k, v in (config.get("default_headers") or {}).items()}
    if config.get("organization"):
        headers["OpenAI-Organization"] = str(config["organization"])
    limit = model.get("max_concurrency", config.get("max_concurrency", default_concurrency))
    return ModelEndpoint(base_url, config["model"], key, int(limit), params, headers)


def agents_of(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The agents that answer for an agent or team spec: itself, or the team's participants."""
    if spec.get("component_type") != "team":
        return [spec]
    participants = (spec.get("config") or {}).get("participants") or []
    return [p for p in participants if isinstance(p, Mapping)]
