"""Find and read a tree's config files, re-reading only what changed since the last scan."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.walk import config_files
from producer.walk import default_cache_path as default_cache_path  # re-exported
from shared.core.errors import ConfigError
from shared.core.facts import FileFacts, file_facts
from shared.core.json_text import dumps
from shared.core.loader import Limits, parse_document

CACHE_VERSION = 4


@dataclass
class ScanResult:
    documents: Mapping[str, dict[str, Any] | ConfigError] = field(default_factory=dict)
    facts: dict[str, FileFacts] = field(default_factory=dict)  # relpath -> what the tree needs to know
    skipped: dict[str, str] = field(default_factory=dict)  # relpath -> why it was not read
    parsed: int = 0  # files read and parsed this time (the rest came from the stat cache)
    # what the walk found: relpath -> (path, stat) of config files, and relpath -> why not read
    files: dict[str, tuple[str, os.stat_result]] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)


class Documents(Mapping[str, "dict[str, Any] | ConfigError"]):
    """Every file's document by relpath; documents of unchanged files are read from the cache's
    docs file only when first asked for (a no-change sync never needs them)."""

    def __init__(self, docs_path: Path | None) -> None:
        self.paths: list[str] = []
        self.loaded: dict[str, dict[str, Any] | ConfigError] = {}
        self._docs_path = docs_path
        self._cached: dict[str, Any] | None = None

    def cached_docs(self) -> dict[str, Any]:
        if self._cached is None:
            try:
                self._cached = json.loads(self._docs_path.read_text(encoding="utf-8")) if self._docs_path else {}
            except (OSError, ValueError):
                self._cached = {}
        return self._cached

    def __getitem__(self, rel: str) -> dict[str, Any] | ConfigError:
        if rel not in self.loaded:
            doc = self.cached_docs().get(rel)
            if doc is None:
                raise KeyError(rel)
            self.loaded[rel] = doc
        return self.loaded[rel]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def scan(root: Path, cache_path: Path | None = None, limits: Limits | None = None) -> ScanResult:
    """Documents of every config file under `root`. A file whose (mtime, size, inode) is unchanged
    since the last scan is not read again: its facts come from the cache at `cache_path`, and its
    document from the docs file beside it, only if needed. A file over `limits.max_file_bytes` is an
    error, and is never read."""
    limits = limits or Limits()
    max_file_bytes = limits.max_file_bytes
    skipped: dict[str, str] = {}
    bad: dict[str, str] = {}
    files = config_files(root, skipped, bad)
    docs_path = cache_path.with_suffix(".docs.json") if cache_path else None
    documents = Documents(docs_path)
    result = ScanResult(documents=documents, skipped=skipped, files=files, unread={**skipped, **bad})
    for rel, reason in bad.items():
        documents.paths.append(rel)
        documents.loaded[rel] = ConfigError(path=rel, message=reason)
    cached: dict[str, list[Any]] = {}
    if cache_path is not None and docs_path is not None and docs_path.exists():
        try:
            data = json.loads(cache_path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                cached = data["files"]
        except (OSError, ValueError, KeyError):
            cached = {}
    fresh: dict[str, list[Any]] = {}
    parsed: dict[str, dict[str, Any]] = {}
    changed = len(cached) != len(files)
    for rel, (path, st) in files.items():
        documents.paths.append(rel)
        stamp = [st.st_mtime_ns, st.st_size, st.st_ino]
        entry = cached.get(rel)
        if entry is not None and entry[:3] == stamp:
            if entry[3] is None:
                result.facts[rel] = FileFacts.from_json(entry[4])
            else:
                documents.loaded[rel] = ConfigError(**entry[3])
            fresh[rel] = entry
            continue
        changed = True
        if st.st_size > max_file_bytes:
            documents.loaded[rel] = ConfigError(
                path=rel, message=f"file is {st.st_size:,} bytes, over the limit of {max_file_bytes:,} (MAX_FILE_BYTES)"
            )
            continue
        try:
            with open(path, "rb") as fh:
                data_bytes = fh.read(max_file_bytes + 1)
        except OSError as exc:
            documents.loaded[rel] = ConfigError(path=rel, message=f"cannot read file: {exc.strerror}")
            continue
        result.parsed += 1
        doc = parse_document(rel, data_bytes, limits)
        documents.loaded[rel] = doc
        if isinstance(doc, ConfigError):
            fresh[rel] = [*stamp, doc.model_dump(), None]
        else:
            result.facts[rel] = file_facts(rel, doc)
            parsed[rel] = doc
            fresh[rel] = [*stamp, None, result.facts[rel].to_json()]
    if cache_path is not None and docs_path is not None and changed:
        all_docs = {rel: parsed.get(rel) or documents.cached_docs().get(rel) for rel in fresh if fresh[rel][3] is None}
        _write_atomically(docs_path, {rel: doc for rel, doc in all_docs.items() if doc is not None})
        _write_atomically(cache_path, {"version": CACHE_VERSION, "files": fresh})
    return result


def _write_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    tmp.replace(path)
