"""What an agent or team needs from its environment: its model components, the cluster-wide limit
each model is called under, and the packages its providers import. Pure, no I/O.

The producer checks these before a run is enqueued; the worker uses the same functions once
`${VAR}` is resolved, then hands the spec to AutoGen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.core import components as kinds
from shared.core.hashing import canonical_json, sha256_hex

# Provider module -> (modules it imports that a plain install may lack, what to install). AutoGen
# ships every provider module; the SDK behind it comes with an extra (autogen-ext[anthropic] ...).
PROVIDER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "autogen_ext.models.openai": (("openai", "tiktoken"), "autogen-ext[openai]"),
    "autogen_ext.models.azure": (("azure.ai.inference",), "autogen-ext[azure]"),
    "autogen_ext.models.anthropic": (("anthropic",), "autogen-ext[anthropic]"),
    "autogen_ext.models.ollama": (("ollama",), "autogen-ext[ollama]"),
    "autogen_ext.models.semantic_kernel": (("semantic_kernel",), "autogen-ext[semantic-kernel-core]"),
    "autogen_ext.models.llama_cpp": (("llama_cpp",), "autogen-ext[llama-cpp]"),
    "autogen_ext.agents.web_surfer": (("playwright", "markitdown"), "autogen-ext[web-surfer]"),
    "autogen_ext.agents.file_surfer": (("markitdown",), "autogen-ext[file-surfer]"),
    "autogen_ext.agents.openai": (("openai",), "autogen-ext[openai]"),
    "autogen_ext.tools.mcp": (("mcp",), "autogen-ext[mcp]"),
    "autogen_ext.tools.http": (("httpx", "json_schema_to_pydantic"), "autogen-ext[http-tool]"),
    "autogen_ext.tools.langchain": (("langchain_core",), "autogen-ext[langchain]"),
    "autogen_ext.tools.graphrag": (("graphrag",), "autogen-ext[graphrag]"),
    "autogen_ext.tools.azure": (("azure.search.documents",), "autogen-ext[azure]"),
    "autogen_ext.code_executors.docker": (("docker",), "autogen-ext[docker]"),
    "autogen_ext.code_executors.jupyter": (("nbclient", "ipykernel"), "autogen-ext[jupyter-executor]"),
}
# Studio's short names for well-known model clients (autogen_core's WELL_KNOWN_PROVIDERS)
SHORT_PROVIDERS = {
    "azure_openai_chat_completion_client": "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
    "AzureOpenAIChatCompletionClient": "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
    "openai_chat_completion_client": "autogen_ext.models.openai.OpenAIChatCompletionClient",
    "OpenAIChatCompletionClient": "autogen_ext.models.openai.OpenAIChatCompletionClient",
}
MODEL_KEYS = ("model_client",)


def provider_path(provider: str) -> str:
    return SHORT_PROVIDERS.get(provider, provider)


def components(spec: object) -> Iterator[Mapping[str, Any]]:
    """Every component inside `spec` (itself included): mappings that name a provider."""
    return (component for _, component in placed_components(spec))


def placed_components(spec: object, at: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field path, written as a `$ref`'s is: `config.participants[1]`, component) for every
    component inside `spec`."""
    if isinstance(spec, Mapping):
        if isinstance(spec.get("provider"), str):
            yield at, spec
        for key, value in spec.items():
            yield from placed_components(value, f"{at}.{key}" if at else str(key))
    elif isinstance(spec, list):
        for i, value in enumerate(spec):
            yield from placed_components(value, f"{at}[{i}]")


def is_model(component: Mapping[str, Any], at: str | None = None) -> bool:
    """A model client: by its `component_type`, or, since AutoGen loads a spec without one, by the
    field `at` that holds it (`model_client`)."""
    if component.get("component_type") is None and at in MODEL_KEYS:
        return isinstance(component.get("provider"), str)
    return kinds.is_model(component)


def model_specs(spec: object) -> list[Mapping[str, Any]]:
    """The model clients an agent or team calls (its agents', a selector's, a context's)."""
    return [c for at, c in placed_components(spec) if is_model(c, at.rpartition(".")[2])]


def limit_key(model: Mapping[str, Any]) -> str:
    """Models that share provider, address and model name share one cluster-wide limit. Computed on
    the unresolved spec where the producer calls it: `${VAR}` names, never values."""
    config = model.get("config") or {}
    where = config.get("base_url") or config.get("azure_endpoint") or config.get("host") or ""
    return sha256_hex(canonical_json([provider_path(str(model.get("provider"))), where, config.get("model")]))[:16]


def max_concurrency(model: Mapping[str, Any], default: int) -> int:
    """Requests in flight to this model across the cluster: `max_concurrency` beside the spec (our
    addition, which AutoGen ignores) or inside its config."""
    value = model.get("max_concurrency", (model.get("config") or {}).get("max_concurrency"))
    try:
        return max(1, int(value)) if value is not None else default
    except (TypeError, ValueError):
        return default


def missing_packages(spec: object, installed: Callable[[str], bool]) -> list[str]:
    """One line per provider in `spec` whose module or SDK is not importable: what to install.
    `installed(module)` answers without importing (importlib.util.find_spec)."""
    problems = []
    seen: set[str] = set()
    for component in components(spec):
        provider = provider_path(str(component["provider"]))
        module = provider.rsplit(".", 1)[0]
        if module in seen or "." not in provider:
            continue
        seen.add(module)
        problem = _missing_line(provider, module, installed)
        if problem is not None:
            problems.append(problem)
    return problems


def _missing_line(provider: str, module: str, installed: Callable[[str], bool]) -> str | None:
    """What to install for `provider` (of `module`), or None when everything it needs is there."""
    needs, extra = PROVIDER_PACKAGES.get(module, ((), ""))
    missing = [m for m in (module.split(".")[0], *needs) if not installed(m)]
    if not missing:
        return None
    hint = f"pip install '{extra}'" if extra else f"install the package that provides {module.split('.')[0]!r}"
    return f"provider {provider} needs {', '.join(missing)}, which is not installed: {hint}"


def agents_of(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The agents that answer for an agent or team spec: itself, or the team's participants."""
    return kinds.members_of(spec) if kinds.is_group(spec) else [spec]
