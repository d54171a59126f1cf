"""AutoGen's component spec, exactly as AutoGen Studio exports it, validated with pydantic."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from shared.core import components
from shared.core.errors import ConfigError, error_message

UNKNOWN_TYPE = "unknown_component_type"


class ComponentSpec(BaseModel):
    # Studio round-trips extra keys byte for byte, so keep them.
    model_config = ConfigDict(extra="allow", strict=True)

    provider: str = Field(min_length=1)
    component_type: str  # one of the table's types
    label: str = Field(min_length=1)
    description: str | None = None
    version: int | None = None
    component_version: int | None = None
    config: dict[str, Any]

    @field_validator("label")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():  # Studio would show it as no name, and nothing could reference it by eye
            raise PydanticCustomError("blank", "is blank: give the component a label")
        return value

    @field_validator("component_type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if components.kind_of(value) is None:
            raise PydanticCustomError(UNKNOWN_TYPE, "unknown component type")
        return value


# Studio's other documents, dropped into a tree whole: said as what they are, not as four missing fields
STUDIO_DOCUMENTS = (
    (
        "components",
        "this is an AutoGen Studio gallery entry (its `components` hold many), not one component: "
        "put each in a file of its own, or let `producer pull` write them",
    ),
    (
        "component",
        "this is an AutoGen Studio team row (the team is its `component`): keep only the "
        "`component`, as a file of its own, or let `producer pull` write it",
    ),
)


def validate_spec(path: str, doc: dict[str, Any]) -> ComponentSpec | list[ConfigError]:
    if "provider" not in doc:
        said = next((why for key, why in STUDIO_DOCUMENTS if isinstance(doc.get(key), dict)), None)
        if said is not None:
            return [ConfigError(path=path, field=None, message=said)]
    try:
        spec = ComponentSpec.model_validate(doc)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or None
            if err["type"] == UNKNOWN_TYPE:
                known = ", ".join(components.component_types())
                message = f"unknown component type {err['input']!r}; expected one of {known}"
            else:
                message = error_message(err)
            errors.append(ConfigError(path=path, field=field, message=message))
        return errors
    found = components.spec_problems(doc)
    return [ConfigError(path=path, field=f, message=why) for f, why in found] if found else spec
