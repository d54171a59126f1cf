"""Studio's `/api/validate/`, run on the worker with the same AutoGen.

AutoGen Studio 0.4.2.2 validates a component in four steps (autogenstudio/validation/
validation_service.py): the provider imports and is a component class, `component_type` is set,
`config` holds against the class's schema, and (only when all that passed) the component
instantiates. The workers run the AutoGen version that Studio runs on, so the same steps give the
same verdict here, in parallel across workers, without a request to a server that answers one
request at a time. Studio is asked only where the worker cannot decide: a provider that does not
import here (Studio may have the package), or a Studio release whose AutoGen is not ours
(tests/test_validation_parity.py holds the verdicts equal on a corpus, Studio's gallery among it).
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.metadata
from typing import Any

from shared.core.components import is_model
from shared.core.exceptions import AgentqError

# Studio release -> the autogen-core it runs on (its own pinned dependencies)
STUDIO_AUTOGEN = {"0.4.2.2": "0.5.7", "0.4.2.1": "0.5.7", "0.4.2": "0.5.6"}
# Studio's shorthand providers (validate_provider)
ALIASES = {
    "azure_openai_chat_completion_client": "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
    "AzureOpenAIChatCompletionClient": "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
    "openai_chat_completion_client": "autogen_ext.models.openai.OpenAIChatCompletionClient",
    "OpenAIChatCompletionClient": "autogen_ext.models.openai.OpenAIChatCompletionClient",
}


VALIDATING = contextvars.ContextVar("validating", default=False)


def _share_ssl_context_while_validating() -> None:
    """Building a model client makes an HTTP client, and that loads the CA bundle into a new SSL
    context: 30 ms of the 33 ms a team's validation costs. The clients built to validate never
    connect, so while validating they share one context; other clients are left as they are."""
    try:
        import httpcore2  # the SDK's default transport here (openai on httpx2)
    except ImportError:
        return
    original = getattr(httpcore2, "default_ssl_context", None)
    if original is None or getattr(original, "shared_while_validating", False):
        return
    shared = functools.cache(lambda trust_env: original(_trust_env=trust_env))

    def default_ssl_context(*, _trust_env: bool = True) -> Any:
        return shared(_trust_env) if VALIDATING.get() else original(_trust_env=_trust_env)

    default_ssl_context.shared_while_validating = True  # type: ignore[attr-defined]
    httpcore2.default_ssl_context = default_ssl_context


class Undecided(AgentqError):
    """Only Studio can tell (its packages or its AutoGen differ from the worker's)."""


def same_autogen(studio_version: str | None) -> bool:
    """Whether a Studio of this release validates with the AutoGen the worker runs."""
    wanted = STUDIO_AUTOGEN.get(studio_version or "")
    return wanted is not None and wanted == importlib.metadata.version("autogen-core")


def validate(component: dict[str, Any]) -> list[str]:
    """Studio's errors for `component` as `field: error` ([] when valid); raises Undecided."""
    from autogen_core import ComponentModel, is_component_class
    from pydantic import ValidationError

    try:
        model = ComponentModel.model_validate(component)
    except ValidationError as exc:  # Studio answers 422 before validating
        return [f"request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"]
    errors: list[str] = []
    provider = ALIASES.get(model.provider, model.provider)
    cls: Any = None
    try:
        module_path, class_name = provider.rsplit(".", maxsplit=1)
        try:
            module = importlib.import_module(module_path)
        except ImportError as exc:
            raise Undecided(f"provider {provider} does not import on this worker") from exc
        cls = getattr(module, class_name)
        if not is_component_class(cls):
            errors.append(f"provider: Class {provider} is not a valid component class")
    except Undecided:
        raise
    except Exception as exc:
        errors.append(f"provider: Error validating provider: {exc}")
    if not model.component_type:
        errors.append("component_type: Component type is missing")
    errors += _schema_errors(model.provider, model.config)
    if not errors:
        try:
            _share_ssl_context_while_validating()
            token = VALIDATING.set(True)
            try:
                cls.load_component(ComponentModel.model_validate(with_placeholder_keys(component)))
            finally:
                VALIDATING.reset(token)
        except Exception as exc:
            if _missing_package(exc):
                raise Undecided(f"building it needs a package this worker lacks: {exc}") from exc
            errors.append(f"instantiation: Failed to instantiate component: {exc}")
    return errors


def _missing_package(exc: BaseException) -> bool:
    """An import failed somewhere while building (a model's SDK, a tool's global_imports): Studio's
    packages may differ from the worker's, so only Studio can tell."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ImportError) or "Module not found" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _schema_errors(provider: str, config: dict[str, Any]) -> list[str]:
    # Studio imports the provider as written here (no aliases): a shorthand fails this step there too
    try:
        module_path, class_name = provider.rsplit(".", maxsplit=1)
        cls = getattr(importlib.import_module(module_path), class_name)
        if not hasattr(cls, "component_config_schema"):
            return ["config: Component class missing config schema"]
        try:
            cls.component_config_schema.model_validate(config)
        except Exception as exc:
            return [f"config: Config validation failed: {exc}"]
    except Exception as exc:
        return [f"config: Schema validation error: {exc}"]
    return []


def with_placeholder_keys(node: Any) -> Any:
    """A copy in which every model client without an `api_key` has Studio's placeholder: by the
    time Studio validates, listing teams has set its provider keys to "test" when unset. Put in the
    copy rather than the environment, so validation can run in a thread beside model calls."""
    if isinstance(node, list):
        return [with_placeholder_keys(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: with_placeholder_keys(v) for k, v in node.items()}
    config = out.get("config")
    model = is_model(out) or str(out.get("provider", "")).endswith("ChatCompletionClient")
    if model and isinstance(config, dict) and not config.get("api_key"):
        out["config"] = {**config, "api_key": "test"}
    return out
