"""Find and read a tree's config files, re-reading only what changed since the last scan."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.loader import SUFFIXES, parse_document

IGNORE_FILE = ".producerignore"
CACHE_VERSION = 1
ERROR_MARK = "\x00error"  # marks a cached parse error; no real component has this key


@dataclass
class ScanResult:
    documents: dict[str, dict[str, Any] | ConfigError] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # relpath -> why it was not read
    parsed: int = 0  # files read and parsed this time (the rest came from the stat cache)


def _ignore_patterns(root: Path) -> list[str]:
    try:
        lines = (root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/").lstrip("/")
        if dir_only and not is_dir:
            continue
        if fnmatch.fnmatchcase(rel, pat) or ("/" not in pat and fnmatch.fnmatchcase(name, pat)):
            return True
    return False


def _walk(root: Path, result: ScanResult) -> dict[str, tuple[str, os.stat_result]]:
    """relpath -> (absolute path, stat) of every config file; symlinks must stay inside the tree."""
    real_root = os.path.realpath(root)
    patterns = _ignore_patterns(root)
    found: dict[str, tuple[str, os.stat_result]] = {}
    seen_dirs = {real_root}
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            result.skipped[prefix or "."] = f"cannot list directory: {exc.strerror}"
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if _ignored(rel, is_dir, patterns):
                continue
            if not is_dir and not entry.name.endswith(SUFFIXES):
                continue
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.commonpath([real_root, target]) != real_root:
                    result.skipped[rel] = "symlink points outside the tree; not followed"
                    continue
                if is_dir and target in seen_dirs:
                    continue
            if is_dir:
                seen_dirs.add(os.path.realpath(entry.path))
                stack.append((entry.path, rel + "/"))
            else:
                try:
                    found[rel] = (entry.path, entry.stat())
                except OSError as exc:
                    result.skipped[rel] = f"cannot stat: {exc.strerror}"
    return found


def default_cache_path(root: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"scan-{digest}.json"


def scan(root: Path, cache_path: Path | None = None) -> ScanResult:
    """Documents of every config file under `root`; a file whose (mtime, size, inode) is unchanged
    since the last scan is taken from the cache at `cache_path` instead of being read again."""
    result = ScanResult()
    files = _walk(root, result)
    cached: dict[str, list[Any]] = {}
    if cache_path is not None:
        try:
            data = json.loads(cache_path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                cached = data["files"]
        except (OSError, ValueError, KeyError):
            cached = {}
    fresh: dict[str, list[Any]] = {}
    changed = len(cached) != len(files)
    for rel, (path, st) in files.items():
        stamp = [st.st_mtime_ns, st.st_size, st.st_ino]
        entry = cached.get(rel)
        if entry is not None and entry[:3] == stamp:
            doc = entry[3]
            result.documents[rel] = ConfigError(**doc[ERROR_MARK]) if ERROR_MARK in doc else doc
            fresh[rel] = entry
            continue
        changed = True
        try:
            with open(path, "rb") as fh:
                data_bytes = fh.read()
        except OSError as exc:
            result.documents[rel] = ConfigError(path=rel, message=f"cannot read file: {exc.strerror}")
            continue
        result.parsed += 1
        doc = parse_document(rel, data_bytes)
        result.documents[rel] = doc
        stored = {ERROR_MARK: doc.model_dump()} if isinstance(doc, ConfigError) else doc
        fresh[rel] = [*stamp, stored]
    if cache_path is not None and changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": fresh}), encoding="utf-8")
        tmp.replace(cache_path)
    return result
