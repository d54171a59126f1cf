"""Errors about a config tree, each naming the file and, where there is one, the field."""

from __future__ import annotations

import datetime

from pydantic import BaseModel
from pydantic_core import ErrorDetails


class ConfigError(BaseModel):
    path: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else self.path
        return f"{where}: {self.message}"


def error_message(err: ErrorDetails) -> str:
    """One of pydantic's errors about a field, as a user reads it: a text field YAML read as
    another type (`label: no`, `name: 1.10`, `on:`) says what it was read as, and how to keep it."""
    if err["type"] == "missing":
        return "required field is missing"
    value = err.get("input")
    if err["type"] == "string_type" and isinstance(value, bool | int | float | datetime.date):
        return f"{err['msg']}: YAML read it as {type(value).__name__} {value!r}; quote it to keep it as written"
    return err["msg"]
