"""Content hashes and cache keys (Merkle style). Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

# Bump when the meaning of a cached result changes, so every old entry stops matching.
SCHEMA_VERSION = "agentq-sync-1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(*parts: str) -> str:
    # surrogatepass: a lone surrogate ("\ud800", valid in a JSON string) is hashed, not a crash
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def node_key(content_hash: str, dependency_keys: Iterable[tuple[str, str]]) -> str:
    """Key of a node: the hash of its own spec (references unresolved, `canonical_json`) plus the
    keys of what it references.

    A change anywhere below a node changes a dependency key and so this key; `${VAR}` values
    are not part of it (secrets never enter a key), only their names as written in the spec.
    """
    deps = ",".join(f"{label}={key}" for label, key in sorted(dependency_keys))
    return sha256_hex(SCHEMA_VERSION, content_hash, deps)


def namespace(studio_url: str, user_id: str) -> str:
    """Cache namespace: the same tree synced into another Studio or for another user is new work."""
    return sha256_hex(studio_url.rstrip("/"), user_id)[:16]


def gallery_key(name: str, members: Iterable[tuple[str, str]]) -> str:
    return sha256_hex(SCHEMA_VERSION, "gallery", name, canonical_json(sorted(members)))
