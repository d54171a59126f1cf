"""Find and read a tree's config files, re-reading only what changed since the last scan."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.walk import Walked, Walks, too_big
from producer.walk import default_cache_path as default_cache_path  # re-exported
from shared.core.errors import ConfigError
from shared.core.facts import FileFacts, file_facts
from shared.core.json_text import dumps
from shared.core.loader import Limits, parse_document
from shared.core.records import Settled
from shared.core.tree_update import LastTree

CACHE_VERSION = 5


@dataclass
class ScanResult:
    documents: Mapping[str, dict[str, Any] | ConfigError] = field(default_factory=dict)
    facts: dict[str, FileFacts] = field(default_factory=dict)  # relpath -> what the tree needs to know
    skipped: dict[str, str] = field(default_factory=dict)  # relpath -> why it was not read
    parsed: int = 0  # files read and parsed this time (the rest came from the stat cache)
    # what the walk found: relpath -> (path, stat) of config files, and relpath -> why not read
    files: dict[str, tuple[str, os.stat_result]] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # relpath read through a symlink -> its real path


@dataclass
class ScanMemo:
    """What a resident process (`producer watch`) keeps of its last scan, so that the next one reads
    neither the cache files nor the facts of unchanged files again. Good while the cache file is
    as that scan left it (another process's sync of the tree rewrites it). Also the tree built
    from it, for the next to start from (shared/core/tree_update.py), and the plan's first states
    (producer/planner.py)."""

    stamp: tuple[int, int] | None = None  # the cache file's (mtime_ns, size) after the last scan
    entries: dict[str, list[Any]] = field(default_factory=dict)
    facts: dict[str, FileFacts] = field(default_factory=dict)
    docs: dict[str, Any] | None = None  # the docs file's documents, once read or written
    tree: LastTree | None = None
    states: dict[tuple[object, ...], Settled] = field(default_factory=dict)  # the last plan's first states
    # the last scan's cache files, written once the sync is said (`save`): not while a watched edit waits
    unsaved: Callable[[], None] | None = None

    def save(self) -> None:
        """Write the last scan's cache files, when it left them to write."""
        write, self.unsaved = self.unsaved, None
        if write is not None:
            write()

    def valid(self, cache_path: Path | None) -> bool:
        return cache_path is not None and self.stamp is not None and self.stamp == _stamp(cache_path)

    def keep(
        self,
        stamp: tuple[int, int] | None,
        entries: dict[str, list[Any]],
        facts: dict[str, FileFacts],
        docs: dict[str, Any] | None,
    ) -> None:
        self.stamp, self.entries, self.facts, self.docs = stamp, entries, facts, docs


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class Documents(Mapping[str, "dict[str, Any] | ConfigError"]):
    """Every file's document by relpath; documents of unchanged files are read from the cache's
    docs file only when first asked for (a no-change sync never needs them)."""

    def __init__(self, docs_path: Path | None, cached: dict[str, Any] | None = None) -> None:
        self.paths: list[str] = []
        self.loaded: dict[str, dict[str, Any] | ConfigError] = {}
        self._docs_path = docs_path
        self._cached: dict[str, Any] | None = cached

    def cached_docs(self) -> dict[str, Any]:
        if self._cached is None:
            try:
                self._cached = json.loads(self._docs_path.read_text(encoding="utf-8")) if self._docs_path else {}
            except (OSError, ValueError):
                self._cached = {}
        return self._cached

    @property
    def read_whole(self) -> dict[str, Any] | None:
        """The docs file's documents, when they were read (or given)."""
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


def scan(
    root: Path,
    cache_path: Path | None = None,
    limits: Limits | None = None,
    memo: ScanMemo | None = None,
    walked: Walked | None = None,
) -> ScanResult:
    """Documents of every config file under `root`. A file whose (mtime, size, inode) is unchanged
    since the last scan is not read again: its facts come from the cache at `cache_path`, and its
    document from the docs file beside it, only if needed. A file over `limits.max_file_bytes` is an
    error, and is never read. `memo`: the last scan of this process, kept up to date. `walked`:
    the tree as this command walked it already (producer/walk.py's Walks), else walked here."""
    walked = walked or Walks().walked(root)
    files, skipped, bad, links = dict(walked.files), dict(walked.skipped), dict(walked.bad), dict(walked.links)
    docs_path, kept = _docs_and_memo(cache_path, memo)
    documents = Documents(docs_path, kept.docs if kept else None)
    result = ScanResult(documents=documents, skipped=skipped, files=files, unread={**skipped, **bad}, links=links)
    run = _Scan(result, documents, limits or Limits(), kept)
    for rel, reason in bad.items():
        run.error(rel, reason)
    cached = kept.entries if kept else _read_cache(cache_path, docs_path)
    changed = len(cached) != len(files)
    for rel, (path, st) in files.items():
        changed = run.file(rel, path, st, cached.get(rel)) or changed
    if cache_path is not None and docs_path is not None:
        run.finish(cache_path, docs_path, changed, memo)
    return result


def _docs_and_memo(cache_path: Path | None, memo: ScanMemo | None) -> tuple[Path | None, ScanMemo | None]:
    """The docs file beside the cache, and the memo when it can be trusted."""
    docs_path = cache_path.with_suffix(".docs.json") if cache_path else None
    return docs_path, memo if memo is not None and memo.valid(cache_path) else None


class _Scan:
    """One scan: the result it fills in, and the cache entries and documents it has for the next."""

    def __init__(self, result: ScanResult, documents: Documents, limits: Limits, memo: ScanMemo | None) -> None:
        self.result, self.documents, self.limits, self.memo = result, documents, limits, memo
        self.fresh: dict[str, list[Any]] = {}  # relpath -> the cache entry for the next scan
        self.parsed: dict[str, dict[str, Any]] = {}  # relpath -> the document read this time
        self.docs: dict[str, Any] | None = None  # every good file's document, once written or read whole

    def error(self, rel: str, message: str) -> None:
        self.documents.paths.append(rel)
        self.documents.loaded[rel] = ConfigError(path=rel, message=message)

    def file(self, rel: str, path: str, st: os.stat_result, entry: list[Any] | None) -> bool:
        """Take in one config file, from its cache `entry` when its stamp still matches; whether it changed."""
        stamp = [st.st_mtime_ns, st.st_size, st.st_ino]
        if entry is not None and entry[:3] == stamp:
            self._cached(rel, entry)
            return False
        data = self._read(rel, path, st.st_size)
        if data is not None:
            self._parse(rel, data, stamp)
        return True

    def _cached(self, rel: str, entry: list[Any]) -> None:
        self.documents.paths.append(rel)
        if entry[3] is None:
            known = self.memo.facts.get(rel) if self.memo is not None else None
            self.result.facts[rel] = known if known is not None else FileFacts.from_json(entry[4])
        else:
            self.documents.loaded[rel] = ConfigError(**entry[3])
        self.fresh[rel] = entry

    def _read(self, rel: str, path: str, size: int) -> bytes | None:
        """The file's bytes; None when it is too big or cannot be read (its error recorded)."""
        max_file_bytes = self.limits.max_file_bytes
        why = too_big(size, max_file_bytes)
        if why:
            self.error(rel, why)
            return None
        try:
            with open(path, "rb") as fh:
                return fh.read(max_file_bytes + 1)
        except FileNotFoundError:  # deleted since the walk listed it (a checkout, an editor's save): not there
            return None
        except OSError as exc:
            self.error(rel, f"cannot read file: {exc.strerror}")
            return None

    def _parse(self, rel: str, data: bytes, stamp: list[int]) -> None:
        self.documents.paths.append(rel)
        self.result.parsed += 1
        doc = parse_document(rel, data, self.limits)
        self.documents.loaded[rel] = doc
        if isinstance(doc, ConfigError):
            self.fresh[rel] = [*stamp, doc.model_dump(), None]
            return
        self.result.facts[rel] = file_facts(rel, doc)
        self.parsed[rel] = doc
        self.fresh[rel] = [*stamp, None, self.result.facts[rel].to_json()]

    def finish(self, cache_path: Path, docs_path: Path, changed: bool, memo: ScanMemo | None) -> None:
        """The cache for the next scan written when anything changed, and the memo brought up to
        date; with a memo, once its `save` is called (the memo's entries are checked against each
        file's stamp all the same, so a scan made before that reads what it must)."""
        if memo is None:
            if changed:
                self.save(cache_path, docs_path)
            return

        def saved() -> None:
            if changed:
                self.save(cache_path, docs_path)
            docs = self.docs if self.docs is not None else self.documents.read_whole
            memo.keep(_stamp(cache_path), self.fresh, self.result.facts, docs)

        memo.unsaved = saved

    def save(self, cache_path: Path, docs_path: Path) -> None:
        """The cache for the next scan: every good file's document, and every file's entry."""
        cached_docs = self.documents.cached_docs
        docs = {rel: self.parsed.get(rel) or cached_docs().get(rel) for rel, e in self.fresh.items() if e[3] is None}
        self.docs = {rel: doc for rel, doc in docs.items() if doc is not None}
        _write_atomically(docs_path, self.docs)
        _write_atomically(cache_path, {"version": CACHE_VERSION, "files": self.fresh})


def _read_cache(cache_path: Path | None, docs_path: Path | None) -> dict[str, list[Any]]:
    """The last scan's entries by relpath; none without a cache, its docs file, or the current version."""
    if cache_path is None or docs_path is None or not docs_path.exists():
        return {}
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
        if data.get("version") == CACHE_VERSION:
            files: dict[str, list[Any]] = data["files"]
            return files
    except (OSError, ValueError, KeyError):
        pass
    return {}


def _write_atomically(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    tmp.replace(path)
