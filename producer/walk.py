"""Which files of a tree are config files: a walk that stats each entry once. Standard library
only: the no-change sync (producer/nochange.py) runs it before anything heavy is imported."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

IGNORE_FILE = ".producerignore"
SUFFIXES = (".yaml", ".yml", ".json")


def _ignore_spec(root: Path) -> Any:
    """The tree's .producerignore, with git's rules (pathspec); None when there is none."""
    try:
        lines = (root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    import pathspec  # only for trees that have an ignore file

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignored(rel: str, is_dir: bool, spec: Any) -> bool:
    return spec is not None and bool(spec.match_file(rel + "/" if is_dir else rel))


def config_files(root: Path, skipped: dict[str, str], bad: dict[str, str]) -> dict[str, tuple[str, os.stat_result]]:
    """relpath -> (absolute path, stat) of every regular config file; symlinks must stay inside
    the tree. `bad` gets the config-named entries that cannot be read as files: FIFOs, sockets,
    devices (reading one could block forever), symlink loops, broken symlinks."""
    real_root = os.path.realpath(root)
    spec = _ignore_spec(root)
    found: dict[str, tuple[str, os.stat_result]] = {}
    seen_dirs = {real_root}
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            skipped[prefix or "."] = f"cannot list directory: {exc.strerror}"
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                bad[rel] = f"cannot follow: {exc.strerror}"
                continue
            if _ignored(rel, is_dir, spec):
                continue
            if not is_dir and not entry.name.endswith(SUFFIXES):
                continue
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.commonpath([real_root, target]) != real_root:
                    skipped[rel] = "symlink points outside the tree; not followed"
                    continue
                if is_dir and target in seen_dirs:
                    where = os.path.relpath(target, real_root)
                    skipped[rel] = (
                        f"symlink loop: points back to {'the tree root' if where == '.' else where!r}; not followed"
                    )
                    continue
            if is_dir:
                seen_dirs.add(os.path.realpath(entry.path))
                stack.append((entry.path, rel + "/"))
            else:
                try:
                    st = entry.stat()
                except OSError as exc:
                    bad[rel] = (
                        f"cannot follow: {exc.strerror}" if entry.is_symlink() else f"cannot stat: {exc.strerror}"
                    )
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[rel] = (entry.path, st)
                else:
                    kind = (
                        "a FIFO"
                        if stat.S_ISFIFO(st.st_mode)
                        else "a socket"
                        if stat.S_ISSOCK(st.st_mode)
                        else "a device"
                    )
                    bad[rel] = f"not a regular file ({kind}); not read"
    return found


def default_cache_path(root: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"scan-{digest}.json"
