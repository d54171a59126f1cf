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

import asyncio
import contextvars
import functools
import importlib
import importlib.metadata
import ssl
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from shared.core.components import is_model
from shared.core.endpoints import provider_path
from shared.core.exceptions import AgentqError

if TYPE_CHECKING:
    from autogen_core import ComponentLoader

# Studio release -> the autogen-core it runs on (its own pinned dependencies)
STUDIO_AUTOGEN = {"0.4.2.2": "0.5.7", "0.4.2.1": "0.5.7", "0.4.2": "0.5.6"}


VALIDATING = contextvars.ContextVar("validating", default=False)


def _share_ssl_context_while_validating() -> None:
    """Building a model client makes an HTTP client, and that loads the CA bundle into a new SSL
    context: 30 ms of the 33 ms a team's validation costs. The clients built to validate never
    connect, so while validating they share one context; other clients are left as they are."""
    try:
        import httpcore2  # the SDK's default transport here (openai on httpx2)
    except ImportError:
        return
    original: Callable[..., ssl.SSLContext] | None = getattr(httpcore2, "default_ssl_context", None)
    if original is None or getattr(original, "shared_while_validating", False):
        return

    @functools.cache
    def shared(trust_env: bool) -> ssl.SSLContext:
        return original(_trust_env=trust_env)

    def default_ssl_context(*, _trust_env: bool = True) -> ssl.SSLContext:
        return shared(_trust_env) if VALIDATING.get() else original(_trust_env=_trust_env)

    default_ssl_context.shared_while_validating = True  # type: ignore[attr-defined]
    httpcore2.default_ssl_context = default_ssl_context


class Undecided(AgentqError):
    """Only Studio can tell (its packages or its AutoGen differ from the worker's)."""


@functools.cache  # asked once per node: the package metadata lookup scans sys.path (a tenth of a sync's worker CPU)
def same_autogen(studio_version: str | None) -> bool:
    """Whether a Studio of this release validates with the AutoGen the worker runs."""
    wanted = STUDIO_AUTOGEN.get(studio_version or "")
    return wanted is not None and wanted == importlib.metadata.version("autogen-core")


def validate(component: Mapping[str, object]) -> list[str]:
    """Studio's errors for `component` as `field: error` ([] when valid); raises Undecided."""
    from autogen_core import ComponentModel
    from pydantic import ValidationError

    try:
        model = ComponentModel.model_validate(component)
    except ValidationError as exc:  # Studio answers 422 before validating
        return [f"request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"]
    cls, errors = _provider_class(provider_path(model.provider))
    if not model.component_type:
        errors.append("component_type: Component type is missing")
    errors += _schema_errors(model.provider, model.config)
    if cls is not None and not errors:
        errors += _instantiation_errors(cls, component)
    return errors


def _provider_class(provider: str) -> tuple[type[ComponentLoader] | None, list[str]]:
    """The provider's component class, or why it is none; Undecided when it does not import here."""
    from autogen_core import is_component_class

    try:
        module, class_name = _provider_module(provider)
        cls = getattr(module, class_name)
        if not is_component_class(cls):
            return None, [f"provider: Class {provider} is not a valid component class"]
    except Undecided:
        raise
    except Exception as exc:
        return None, [f"provider: Error validating provider: {exc}"]
    return cls, []


def _provider_module(provider: str) -> tuple[ModuleType, str]:
    """The provider's module and its class's name; Undecided when the module does not import here."""
    module_path, class_name = provider.rsplit(".", maxsplit=1)
    try:
        return importlib.import_module(module_path), class_name
    except ImportError as exc:
        raise Undecided(f"provider {provider} does not import on this worker") from exc


def _instantiation_errors(cls: type[ComponentLoader], component: Mapping[str, object]) -> list[str]:
    """Studio's last step: the component instantiates (with placeholder keys, never connecting)."""
    from autogen_core import ComponentModel

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
        return [f"instantiation: Failed to instantiate component: {exc}"]
    except BaseException as exc:  # a tool's code raising SystemExit, GeneratorExit ...: not the worker's
        if isinstance(exc, asyncio.CancelledError):
            raise
        return [f"instantiation: Failed to instantiate component: its code raised {type(exc).__name__}"]
    return []


def _missing_package(exc: BaseException) -> bool:
    """An import failed somewhere while building (a model's SDK, a tool's global_imports): Studio's
    packages may differ from the worker's, so only Studio can tell."""
    return any(isinstance(seen, ImportError) or "Module not found" in str(seen) for seen in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from or while handling, back to the first."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _schema_errors(provider: str, config: Mapping[str, object]) -> list[str]:
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


def with_placeholder_keys(node: object) -> object:
    """A copy in which every model client without an `api_key` has Studio's placeholder: by the
    time Studio validates, listing teams has set its provider keys to "test" when unset. Put in the
    copy rather than the environment, so validation can run in a thread beside model calls."""
    if isinstance(node, list):
        return [with_placeholder_keys(v) for v in node]
    if not isinstance(node, dict):
        return node
    return _with_placeholder_key({k: with_placeholder_keys(v) for k, v in node.items()})


def _with_placeholder_key(component: dict[str, object]) -> dict[str, object]:
    config = component.get("config")
    if _is_model_client(component) and isinstance(config, dict) and not config.get("api_key"):
        component["config"] = {**config, "api_key": "test"}
    return component


def _is_model_client(component: Mapping[str, object]) -> bool:
    return is_model(component) or str(component.get("provider", "")).endswith("ChatCompletionClient")
