"""No change, no work: a `producer sync DIR` of a tree in which nothing changed since the last
clean sync is answered from that sync's record and one Redis round trip.

The record (beside the scan cache) holds a fingerprint of what decides the sync's outcome: every
config file's (path, mtime, size, inode), what the walk reported, the settings read from the
environment, and which of the variables the tree uses are set. When the fingerprint still
matches and Redis still holds the record's root key (set when that sync ended, expiring with the
cache entries under it), the answer is the record's report. Anything else (a changed file, a
flag, the embedded default, a missed key) falls through to the full sync.

This module imports only the standard library: it runs before Celery, pydantic, rich and
redis-py are imported (about 0.6 s together, against a budget of a few hundred milliseconds).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from producer.walk import Walks, default_cache_path
from shared.adapters.plain_http import studio_get
from shared.adapters.redis.resp import root_still_there
from shared.core.gallery_answer import without_components
from shared.defaults import cache_dir

STUDIO_SECONDS = 5.0  # for Studio's listing, as a whole: past it the full path asks (and times out as set)
SECONDS = '\n  "seconds": null,'  # the first key of the stored report, filled in when it is printed


class LastSync(NamedTuple):  # not a dataclass: importing dataclasses costs 5 to 8 ms of this path
    fingerprint: str
    root_key: str
    settings_names: list[
        str
    ]  # environment variables kept by value: the settings', and the tree's ${VAR}s that are no secret
    variables: list[str]  # ${VAR}s the tree uses
    tree: str
    unchanged: int  # components in the report
    counters: dict[str, float]  # what a full no-change sync adds to the metrics (shared/metrics.py)
    studio: list[str]  # [base URL, user id] the rows below live in
    # team row id -> [content hash, updated_at] as the sync last saw the row
    rows: dict[str, list[str | None]]
    # the tree's gallery entry as the sync left it: [row id, its config's id, updated_at]; [] when
    # the tree has none; None (a record from before this field): not known, the full path looks
    gallery: list[str] | None = None


def record_path(root: Path, cache_dir: Path) -> Path:
    return default_cache_path(root, cache_dir).with_suffix(".last-sync.json")


def report_path(record: Path) -> Path:
    """The report, stored as the text `--json` prints: a 10,000-node report takes 0.1 s to render."""
    return record.with_suffix(".report.json")


def fingerprint(
    root: Path, settings_names: list[str], variables: list[str], environ: dict[str, str], walks: Walks | None = None
) -> str:
    return fingerprint_of(*(walks or Walks()).files(root), settings_names, variables, environ)


def fingerprint_of(
    files: dict[str, tuple[str, os.stat_result]],
    unread: dict[str, str],
    settings_names: list[str],
    variables: list[str],
    environ: dict[str, str],
) -> str:
    """`files` and `unread` as the walk found them (producer/walk.py). Text is hashed as the bytes
    it stands for (surrogateescape): a file name or a variable's value need not be UTF-8."""
    h = hashlib.blake2b(digest_size=20)
    paths = sorted(files)
    stats = [files[rel][1] for rel in paths]
    # one joined string and two arrays: formatting a line per file took twice as long
    h.update("\0".join(paths).encode(errors="surrogateescape"))
    h.update(array("q", [st.st_mtime_ns for st in stats]).tobytes())
    h.update(array("Q", [n for st in stats for n in (st.st_size, st.st_ino)]).tobytes())
    h.update(
        "\n".join(["", *_other_lines(unread, settings_names, variables, environ)]).encode(errors="surrogateescape")
    )
    return h.hexdigest()


def _other_lines(
    unread: dict[str, str], settings_names: list[str], variables: list[str], environ: dict[str, str]
) -> list[str]:
    """The files not read and why, the settings' values and which variables are set: a line each."""
    lines = [f"{rel}\0{reason}" for rel, reason in sorted(unread.items())]
    lines += [f"{name}={environ.get(name, chr(0))}" for name in settings_names]
    lines += [f"${name}:{name in environ}" for name in variables]
    return lines


def save(path: Path, last: LastSync, report: dict[str, Any]) -> None:
    from shared.core.json_text import dumps  # orjson: not on the no-change path

    text = dumps({"seconds": None, **{k: v for k, v in report.items() if k != "seconds"}}, indent=True)
    assert text.startswith("{" + SECONDS)
    for target, content in ((report_path(path), text), (path, json.dumps(last._asdict()))):  # the record last
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(target)


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)
    report_path(path).unlink(missing_ok=True)


def answer(
    root: Path, redis_url: str, cache_dir: Path, environ: dict[str, str], walks: Walks | None = None
) -> tuple[LastSync, str] | None:
    """The last clean sync's record and its report's text, or None when the full sync must run."""
    found = _stored(record_path(root, cache_dir))
    if found is None:
        return None
    last, text = found
    if last.gallery is None:
        return None
    # Studio's answers are awaited while the tree is walked (the walk is CPU, the reads a wait)
    checks = [check for check, needed in ((_rows_as_written, last.rows), (_entry_as_written, last.gallery)) if needed]
    said: list[bool] = []
    asking = [threading.Thread(target=lambda c=c: said.append(c(last, environ)), daemon=True) for c in checks]
    for thread in asking:
        thread.start()
    if fingerprint(root, last.settings_names, last.variables, environ, walks) != last.fingerprint:
        return None
    deadline = time.monotonic() + STUDIO_SECONDS  # a server that answers a byte at a time: the full path
    for thread in asking:
        thread.join(max(0.0, deadline - time.monotonic()))
    if said != [True] * len(checks):
        return None  # a row or the entry was edited or deleted in Studio: the full sync says so
    return (last, text) if _root_still_there(redis_url, last) else None


def _stored(path: Path) -> tuple[LastSync, str] | None:
    """The record at `path` and its report's text; None when either is missing or unreadable."""
    try:
        last = LastSync(**json.loads(path.read_text(encoding="utf-8")))
        return last, report_path(path).read_text(encoding="utf-8")
    except (OSError, ValueError, TypeError):
        return None


def _root_still_there(redis_url: str, last: LastSync) -> bool:
    """Redis still holds the sync's root key (and counts the metrics a full sync would)."""
    counts = [str(x) for name, value in last.counters.items() for x in (name, value)]
    try:
        return root_still_there(redis_url, last.root_key, counts)
    except (OSError, ValueError):
        return False  # the full path names Redis in its error, with its exit code


def _rows_as_written(last: LastSync, environ: dict[str, str]) -> bool:
    """Every team row the last sync wrote is still in Studio as it left it: one listing."""
    listed = _studio_data(last.studio, "/api/teams/", environ)
    if not isinstance(listed, list):
        return False
    now = {str(row.get("id")): row for row in listed if isinstance(row, dict)}
    return all(_as_written(now.get(row_id), digest, stamp) for row_id, (digest, stamp) in last.rows.items())


def _entry_as_written(last: LastSync, environ: dict[str, str]) -> bool:
    """The entry is there, is the tree's (by its config's id), and was not written since (its
    timestamp): deleted, edited in Studio, or written by another tree's sync, the full path looks."""
    assert last.gallery
    row_id, config_id, updated_at = last.gallery
    row = _studio_data(last.studio, f"/api/gallery/{row_id}", environ, without_components)
    config = row.get("config") if isinstance(row, dict) else None
    return isinstance(config, dict) and config.get("id") == config_id and row.get("updated_at") == updated_at


def _studio_data(
    studio: list[str], endpoint: str, environ: dict[str, str], parse: Callable[[bytes], Any] = json.loads
) -> Any:
    """The `data` of Studio's answer to GET `endpoint` for the user, or None where it cannot be
    had here (https, no answer, not Studio's JSON): the full path looks then."""
    from urllib.parse import quote

    base, user = studio
    try:
        body = studio_get(base, f"{endpoint}?user_id={quote(user)}", environ.get("STUDIO_TOKEN"), environ)
        answer = parse(body) if body is not None else None
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    return answer.get("data") if isinstance(answer, dict) else None


def _as_written(row: dict[str, Any] | None, digest: str | None, stamp: str | None) -> bool:
    from shared.core.secrets import content_hash

    if row is None:
        return False
    # an unchanged timestamp is an unedited row; hashing 1,000 rows would cost more than the rest
    return (stamp is not None and row.get("updated_at") == stamp) or content_hash(row.get("component")) == digest


def try_fast_sync(argv: list[str], environ: dict[str, str], walks: Walks | None = None) -> int | None:
    """`producer sync DIR [--json]` answered without the full machinery; None: not this case."""
    if not plain_sync(argv):
        return None
    redis_url = environ.get("REDIS_URL")
    if not redis_url:
        return None  # the embedded default starts its own Redis anyway
    started = time.monotonic()
    root = Path(argv[1])
    if not root.is_dir():
        return None
    root = root.resolve()
    found = answer(root, redis_url, cache_dir(environ), environ, walks)
    if found is None:
        return None
    _print_answer(*found, seconds=round(time.monotonic() - started, 3), as_json=len(argv) == 3)
    return 0


def plain_sync(argv: list[str]) -> bool:
    """`sync DIR` or `sync DIR --json`, nothing else (a flag is a sync of its own)."""
    if len(argv) not in (2, 3) or argv[0] != "sync":
        return False
    return len(argv) == 2 or argv[2] == "--json"


def _print_answer(last: LastSync, text: str, seconds: float, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(text.replace(SECONDS, f'\n  "seconds": {seconds},', 1) + "\n")
    else:
        sys.stdout.write(
            f"{last.tree}: no change since the last sync; {last.unchanged} component(s) unchanged, "
            f"answered from the cache in {seconds:.2f} s\n"
        )
