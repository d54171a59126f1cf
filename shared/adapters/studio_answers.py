"""What an answer of Studio's must hold for the caller to use it, and what to call it when it does
not: Studio answers {status, message, data}, a proxy in front of it may answer anything with a
200. Read by Studio's client (shared/adapters/studio.py) and by the producer's plain first
questions (producer/studio_state.py), which must not import the client. Standard library only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Shape = tuple[Callable[[dict[str, Any]], bool], str]
ANY: Shape = (lambda _: True, "a JSON object")
ROWS: Shape = (lambda body: _all_rows(body.get("data")), "a list of rows, each with its id")
ROW: Shape = (lambda body: body.get("data") is None or _all_rows([body["data"]]), "a row")  # None: no such row
SAVED: Shape = (lambda body: _all_rows([body.get("data")]), "the row saved, with its id")
VERSION: Shape = (
    lambda body: isinstance(body.get("data"), dict) and isinstance(body["data"].get("version"), str),
    "Studio's version",
)
VERDICT: Shape = (lambda body: isinstance(body.get("is_valid"), bool), "a validation verdict")


def _all_rows(data: object) -> bool:
    """Studio's rows: objects with an integer id (what they hold is the caller's to judge: Studio
    stores a team's component unchecked)."""
    return isinstance(data, list) and all(
        isinstance(row, dict) and type(row.get("id")) is int  # not a bool either
        for row in data
    )
