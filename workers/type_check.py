"""Which of the tree's type mismatches (Tree.mistyped, shared/core/tree.py) AutoGen confirms by
loading: AutoGen judges a component by its class, the tree only by its `component_type` (a model
client filed as `component_type: tool` is a model all the same). Asked only once AutoGen has said
"Expected type does not match", which names neither the field nor the types."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from shared.core.components import kind_of

_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def confirmed(component: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> list[str]:
    """What each candidate says, for those whose component AutoGen loads as another class than
    the field holds; one that does not load on its own is left out (its own error says why)."""
    from autogen_core import ComponentLoader

    said = []
    for candidate in candidates:
        part = _at(component, str(candidate.get("at", "")))
        held = [cls for h in candidate.get("holds", ()) if (cls := _autogen_class(h))]
        if not isinstance(part, Mapping) or not held:
            continue
        try:
            loaded = ComponentLoader.load_component(dict(part))
        except Exception:  # noqa: BLE001, S112  # a load error of its own: not this mismatch
            continue
        if not isinstance(loaded, tuple(held)):
            said.append(str(candidate.get("said")))
    return said


def _at(spec: object, path: str) -> object:
    """The value at `path` (`config.participants[0].config.model_client`) in `spec`, or None."""
    for key, index in _STEP.findall(path):
        if index:
            spec = spec[int(index)] if isinstance(spec, list) and int(index) < len(spec) else None
        else:
            spec = spec.get(key) if isinstance(spec, Mapping) else None
    return spec


def _autogen_class(component_type: object) -> type | None:
    """The class AutoGen loads a field holding `component_type` as (shared/core/components.py)."""
    kind = kind_of(component_type)
    if kind is None or not kind.autogen_class:
        return None
    module, _, name = kind.autogen_class.partition(":")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type)
    return found
