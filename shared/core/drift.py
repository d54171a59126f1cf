"""What the sync wrote to Studio, and what became of it since: drift and prune. Pure, no I/O.

When a worker writes a team row it records a `WrittenRow`: the row's id, a hash of the content it
wrote (secrets masked, shared/core/secrets.py), the tree and file it came from, and whether the
sync created the row. Later, Studio's rows are compared with those records:
- a row whose content no longer hashes to the record was edited in Studio: it has *drifted*, and a
  sync leaves it alone unless forced;
- a row the sync created, whose label is gone from the tree, is what `sync --prune` deletes. A row
  the sync adopted (matched by label) or never wrote has no `created` record and is never deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

from shared.core.secrets import content_hash


@dataclass(frozen=True)
class WrittenRow:
    label: str
    row_id: int
    hash: str  # content_hash of the component as written
    tree: str  # the tree (its absolute path) that wrote it
    path: str  # the file the component came from, relative to the tree
    created: bool  # the sync inserted this row (it did not adopt an existing one)
    updated_at: str | None = None  # the row's timestamp as the sync last saw it: unchanged means unedited
    run_id: str | None = None  # the sync run that wrote it (None: written before runs said so)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WrittenRow:
        data = json.loads(text)
        return cls(
            label=str(data["label"]),
            row_id=int(data["row_id"]),
            hash=str(data["hash"]),
            tree=str(data["tree"]),
            path=str(data["path"]),
            created=bool(data["created"]),
            updated_at=data.get("updated_at"),
            run_id=data.get("run_id"),
        )


class KnownRow(NamedTuple):
    """What a namespace knows of a label's team row: the record of its last write, and its id."""

    written: WrittenRow | None
    team_id: int | None


@dataclass(frozen=True)
class Drift:
    label: str
    row_id: int
    reason: str


def row_label(row: Mapping[str, Any]) -> str | None:
    component = row.get("component")
    label = component.get("label") if isinstance(component, dict) else None
    return str(label) if label is not None else None


def drifted(written: Mapping[str, WrittenRow], rows: Mapping[int, Mapping[str, Any]]) -> dict[str, Drift]:
    """Label -> how its row changed in Studio since the sync wrote it. A row that is gone is not
    drift: the next sync writes it again (see `gone`)."""
    out: dict[str, Drift] = {}
    for label, record in written.items():
        row = rows.get(record.row_id)
        found = _drift(label, record, row) if row is not None else None
        if found is not None:
            out[label] = found
    return out


def _drift(label: str, record: WrittenRow, row: Mapping[str, Any]) -> Drift | None:
    if record.updated_at is not None and row.get("updated_at") == record.updated_at:
        return None  # not written since the sync saw it: no need to hash its content
    now = row_label(row)
    if now != label:
        return Drift(label, record.row_id, f"relabelled in Studio to {now!r}")
    if content_hash(row.get("component")) == record.hash:
        return None
    when = row.get("updated_at")
    return Drift(
        label, record.row_id, "edited in Studio since the sync wrote it" + (f" (updated {when})" if when else "")
    )


def touched(written: Mapping[str, WrittenRow], rows: Mapping[int, Mapping[str, Any]]) -> list[WrittenRow]:
    """Records of rows saved again in Studio with the same content (a new timestamp, no drift):
    with the timestamp brought up to date, so the next check need not hash them."""
    out = []
    for label, record in written.items():
        row = rows.get(record.row_id)
        if row is None or row.get("updated_at") == record.updated_at or row_label(row) != label:
            continue
        if content_hash(row.get("component")) == record.hash:
            out.append(replace(record, updated_at=row.get("updated_at")))
    return out


def gone(written: Mapping[str, WrittenRow], rows: Mapping[int, Mapping[str, Any]]) -> set[str]:
    """Labels whose row was deleted in Studio: a cached result for them no longer holds."""
    return {label for label, record in written.items() if record.row_id not in rows}


def prune_candidates(
    written: Mapping[str, WrittenRow],
    rows: Mapping[int, Mapping[str, Any]],
    tree_labels: Collection[str],
    unreadable_paths: Collection[str],
    drift: Mapping[str, Drift],
) -> list[WrittenRow]:
    """The rows `sync --prune` deletes: created by the sync, still in Studio under the same label,
    whose label is gone from the tree. Never one whose file could not be read (its label is
    unknown, not gone), nor one edited in Studio since (the caller decides about those)."""
    out = []
    for label, record in sorted(written.items()):
        if not _may_prune(label, record, tree_labels, unreadable_paths, drift):
            continue
        row = rows.get(record.row_id)
        if row is not None and row_label(row) == label:
            out.append(record)
    return out


def _may_prune(
    label: str,
    record: WrittenRow,
    tree_labels: Collection[str],
    unreadable_paths: Collection[str],
    drift: Mapping[str, Drift],
) -> bool:
    """Created by the sync, its label gone from the tree, its file not unreadable (nor in a folder
    that could not be read: a broken link, one leaving the tree), not drifted."""
    return record.created and not (label in tree_labels or _unread(record.path, unreadable_paths) or label in drift)


def _unread(path: str, unreadable_paths: Collection[str]) -> bool:
    """Whether `path` is, or is below, one of the paths the walk could not read ('.': the root)."""
    return any(
        path == u or u.rstrip("/") in (".", "") or path.startswith(u.rstrip("/") + "/") for u in unreadable_paths
    )


GALLERY_AUTHOR = "agentq producer"  # the author a tree's gallery entry names (its metadata)


def gallery_slug(name: str) -> str:
    """The id of a tree's gallery entry in Studio (the entry's `config.id`)."""
    return "agentq-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tree")


class EntryState(StrEnum):
    """What became of the tree's gallery entry since the sync last wrote it."""

    HELD = "held"  # as the sync left it
    CHANGED = "changed"  # written since (in Studio, or by another tree's sync into the same name)
    GONE = "gone"  # deleted, or the id now holds another entry


def entry_stamp(row: Mapping[str, Any]) -> str:
    """A gallery row's id and the time Studio last wrote it: any write through Studio moves it."""
    return f"{row.get('id')}:{row.get('updated_at')}"


def is_entry(row: Mapping[str, Any], name: str) -> bool:
    """Whether `row` is the gallery entry `name` (its config's id is the name's slug)."""
    config = row.get("config")
    return isinstance(config, dict) and config.get("id") == gallery_slug(name)


def entry_state(row: Mapping[str, Any] | None, name: str, stamp: str | None) -> EntryState:
    """The entry `name` as Studio answered for its id (None: not there), against the stamp the
    sync recorded when it last wrote it (None: what it holds is not known)."""
    if row is None or not is_entry(row, name):
        return EntryState.GONE
    if stamp is None or row.get("updated_at") is None or entry_stamp(row) != stamp:
        return EntryState.CHANGED
    return EntryState.HELD
