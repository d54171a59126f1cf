"""Which files of a tree are config files: a walk that stats each entry once. Standard library
only: the no-change sync (producer/nochange.py) runs it before anything heavy is imported."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

IGNORE_FILE = ".producerignore"
SUFFIXES = (".yaml", ".yml", ".json")


def check_dir(directory: Path) -> None:
    """A tree is a folder: anything else is bad input naming it (before a walk that would find nothing)."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")


def is_config_name(name: str) -> bool:
    """Named as a config file: its suffix in any case (X.YML from a case-insensitive disk)."""
    return name.lower().endswith(SUFFIXES)


def _ignore_spec(root: Path) -> GitIgnoreSpec | None:
    """The tree's .producerignore, with git's rules (pathspec); None when there is none. One that
    cannot be read is an error, not an empty list: what it meant to keep out would be synced."""
    path = root / IGNORE_FILE
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read forever
            raise InvalidInput(f"{path}: not a regular file; remove it or make it one")
        # as git reads an ignore file: a leading BOM skipped, lines ended by LF (a CR before it dropped)
        lines = [line.removesuffix("\r") for line in path.read_bytes().decode("utf-8-sig").split("\n")]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    import pathspec  # only for trees that have an ignore file

    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, re.error) as exc:  # pathspec's pattern errors; a range Python's re refuses (`[z-a]`)
        number = next((n for n, line in enumerate(lines, 1) if not _parses(line)), None)
        raise InvalidInput(f"{path}: {f'line {number}: ' if number else ''}{exc}") from exc


def _parses(line: str) -> bool:
    import pathspec

    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except (ValueError, re.error):
        return False
    return True


def _ignored(rel: str, is_dir: bool, spec: GitIgnoreSpec | None) -> bool:
    return spec is not None and bool(spec.match_file(rel + "/" if is_dir else rel))


def config_files(
    root: Path, skipped: dict[str, str], bad: dict[str, str], links: dict[str, str] | None = None
) -> dict[str, tuple[str, os.stat_result]]:
    """relpath -> (absolute path, stat) of every regular config file; symlinks must stay inside
    the tree. `bad` gets the config-named entries that cannot be read as files: FIFOs, sockets,
    devices (reading one could block forever), symlink loops, broken symlinks; `links` the files
    read through a symlink, with the real path an edit of theirs changes (`producer watch`)."""
    walk = _Walk(root, skipped, bad)
    stack = [(str(root), "", False)]
    while stack:
        stack += walk.directory(*stack.pop())
    walk.drop_aliases()
    if links is not None:
        links.update({rel: os.path.realpath(walk.found[rel][0]) for rel in walk.linked if rel in walk.found})
    return walk.found


class _Walk:
    """One walk's state: what it found, and the directories it has been in (for symlink loops)."""

    def __init__(self, root: Path, skipped: dict[str, str], bad: dict[str, str]) -> None:
        self.real_root = os.path.realpath(root)
        self.spec = _ignore_spec(root)
        self.skipped, self.bad = skipped, bad
        self.found: dict[str, tuple[str, os.stat_result]] = {}
        self.seen_dirs = {self.real_root}
        self.linked: list[str] = []  # files found through a symlink: maybe found under their own name too

    def directory(self, directory: str, prefix: str, linked: bool) -> list[tuple[str, str, bool]]:
        """Take in the files of one directory (`linked`: reached through a symlink); its
        subdirectories to walk, as (path, prefix, linked)."""
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            self.skipped[prefix or "."] = f"cannot list directory: {exc.strerror}"
            return []
        below: list[tuple[str, str, bool]] = []
        found, plain = self.found, self.spec is None and not linked
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            # the common case inline (a regular file, by the directory's own entry type, in a tree
            # with no ignore file): 7% off the walk of 10,000 files, whose lstat calls are most of it
            if plain and entry.is_file(follow_symlinks=False):
                if not name.lower().endswith(SUFFIXES):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    st = None  # gone since the listing: _entry says so
                if st is not None and stat.S_ISREG(st.st_mode):
                    found[prefix + name] = (entry.path, st)
                    continue
            self._entry(entry, prefix + name, below, linked)
        return below

    def drop_aliases(self) -> None:
        """A file found through symlinks is read once: under its own name when the walk finds that
        too, else under the first of the names it was found by (its own may be hidden or ignored).
        Read twice, its label would be a duplicate of itself, and neither would sync."""
        kept: dict[str, str] = {}  # the file's own name -> the name it is read under
        for rel in sorted(self.linked):
            own = os.path.relpath(os.path.realpath(self.found[rel][0]), self.real_root)
            read_as = own if own != rel and own in self.found else kept.setdefault(own, rel)
            if read_as != rel:
                del self.found[rel]
                self.skipped[rel] = f"is {read_as!r} through a symlink; read once, under that name"

    def _entry(self, entry: os.DirEntry[str], rel: str, below: list[tuple[str, str, bool]], linked: bool) -> None:
        try:
            is_dir = entry.is_dir()
        except OSError as exc:
            self.bad[rel] = f"cannot follow: {exc.strerror}"
            return
        if not is_dir and entry.is_symlink() and not os.path.exists(entry.path) and not _ignored(rel, False, self.spec):
            # whatever its name: a folder's link that leads nowhere (a submodule not checked out)
            # hides the files that were there, whose rows a prune must then not delete
            self.bad[rel] = "cannot follow: No such file or directory"
            return
        if not self._wanted(entry, rel, is_dir):
            return
        if is_dir:
            self.seen_dirs.add(os.path.realpath(entry.path))
            below.append((entry.path, rel + "/", linked or entry.is_symlink()))
        else:
            self._file(entry, rel, linked or entry.is_symlink())

    def _wanted(self, entry: os.DirEntry[str], rel: str, is_dir: bool) -> bool:
        """Not ignored, a directory or named as a config file, and no symlink that is not followed."""
        if _ignored(rel, is_dir, self.spec) or not (is_dir or is_config_name(entry.name)):
            return False
        return not entry.is_symlink() or self._follows(entry, rel, is_dir)

    def _follows(self, entry: os.DirEntry[str], rel: str, is_dir: bool) -> bool:
        """A symlink is followed when it stays in the tree and does not loop back; else it is said."""
        target = os.path.realpath(entry.path)
        if os.path.commonpath([self.real_root, target]) != self.real_root:
            self.skipped[rel] = "symlink points outside the tree; not followed"
            return False
        if is_dir and target in self.seen_dirs:
            where = os.path.relpath(target, self.real_root)
            shown = repr("the tree root" if where == "." else where)  # quoted, as a path is
            if os.path.commonpath([target, os.path.realpath(os.path.dirname(entry.path))]) == target:
                self.skipped[rel] = f"symlink loop: points back to {shown}; not followed"
            else:
                self.skipped[rel] = f"points to {shown}, which is read under its own name; not followed"
            return False
        return True

    def _file(self, entry: os.DirEntry[str], rel: str, linked: bool) -> None:
        try:
            st = entry.stat()
        except OSError as exc:
            self.bad[rel] = f"cannot follow: {exc.strerror}" if entry.is_symlink() else f"cannot stat: {exc.strerror}"
            return
        if stat.S_ISREG(st.st_mode):
            self.found[rel] = (entry.path, st)
            if linked:
                self.linked.append(rel)
        else:
            self.bad[rel] = f"not a regular file ({_kind(st.st_mode)}); not read"


class Walked(NamedTuple):  # not a dataclass: importing dataclasses costs the no-change path 5 to 8 ms
    """One walk of a tree, as config_files reports it."""

    files: dict[str, tuple[str, os.stat_result]]
    skipped: dict[str, str]
    bad: dict[str, str]
    links: dict[str, str]


class Walks:
    """The walks of trees one command made, each made once: the no-change answer's look, the
    hand-off (producer/handoff.py) and, when neither answers, the sync's own scan look at the same
    tree one after the other."""

    def __init__(self) -> None:
        self._done: dict[Path, Walked] = {}

    def walked(self, root: Path) -> Walked:
        if root not in self._done:
            skipped: dict[str, str] = {}
            bad: dict[str, str] = {}
            links: dict[str, str] = {}
            self._done[root] = Walked(config_files(root, skipped, bad, links), skipped, bad, links)
        return self._done[root]

    def files(self, root: Path) -> tuple[dict[str, tuple[str, os.stat_result]], dict[str, str]]:
        """The tree's config files and those not read (with why)."""
        walked = self.walked(root)
        return walked.files, {**walked.skipped, **walked.bad}


def too_big(size: int, max_bytes: int) -> str | None:
    """Why a file of `size` bytes is not read (MAX_FILE_BYTES), or None."""
    return f"file is {size:,} bytes, over the limit of {max_bytes:,} (MAX_FILE_BYTES)" if size > max_bytes else None


def read_config_file(path: Path, max_bytes: int) -> bytes | str:
    """One named config file's bytes, or why it is not read: only a regular file (a FIFO would block
    the read forever, /dev/zero never end it) of at most `max_bytes`."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            return "is a directory, not a file"
        if not stat.S_ISREG(st.st_mode):
            return f"not a regular file ({_kind(st.st_mode)}); not read"
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return f"cannot read file: {exc.strerror}"
    return too_big(max(len(data), st.st_size), max_bytes) or data


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def default_cache_path(root: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"scan-{digest}.json"
