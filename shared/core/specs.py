"""AutoGen's component spec, exactly as AutoGen Studio exports it, validated with pydantic."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.core.errors import ConfigError

ComponentType = Literal["model", "agent", "team", "tool", "termination", "workbench", "chat_completion_context"]
COMPONENT_TYPES: tuple[str, ...] = ComponentType.__args__  # type: ignore[attr-defined]


# Where each standalone kind lives in a Studio gallery entry; teams get rows of their own.
def gallery_slug(name: str) -> str:
    """The id of a tree's gallery entry in Studio (the entry's `config.id`)."""
    return "agentq-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tree")


GALLERY_SECTIONS: dict[str, str] = {
    "model": "models",
    "tool": "tools",
    "agent": "agents",
    "termination": "terminations",
}


class ComponentSpec(BaseModel):
    # Studio round-trips extra keys byte for byte, so keep them.
    model_config = ConfigDict(extra="allow", strict=True)

    provider: str = Field(min_length=1)
    component_type: ComponentType
    label: str = Field(min_length=1)
    description: str | None = None
    version: int | None = None
    component_version: int | None = None
    config: dict[str, Any]


def validate_spec(path: str, doc: dict[str, Any]) -> ComponentSpec | list[ConfigError]:
    try:
        return ComponentSpec.model_validate(doc)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or None
            if err["type"] == "literal_error" and field == "component_type":
                message = f"unknown component type {err['input']!r}; expected one of {', '.join(COMPONENT_TYPES)}"
            elif err["type"] == "missing":
                message = "required field is missing"
            else:
                message = err["msg"]
            errors.append(ConfigError(path=path, field=field, message=message))
        return errors
