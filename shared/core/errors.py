"""Errors about a config tree, each naming the file and, where there is one, the field."""

from __future__ import annotations

from pydantic import BaseModel


class ConfigError(BaseModel):
    path: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else self.path
        return f"{where}: {self.message}"
