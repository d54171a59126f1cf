"""A `producer sync DIR` beside a `producer watch DIR` hands its sync to the watch, which has the
tree scanned, its modules imported and its connections open: the command waits for a sync the
watch starts after it asked, or the one it is running should that one have read the tree as the
command sees it (every file's path, mtime, size and inode), and prints its report as its own.

Trust: the watch listens on a Unix socket in a folder only this user can enter
($XDG_RUNTIME_DIR/agentq, else /tmp/agentq-<uid>, mode 0700), named for the tree and the cache
folder. The command hands over only when that folder and socket are this user's, the process
at the other end is this user's (SO_PEERCRED), and the watch runs the same code (a digest of the
package's source files) with the same settings and ${VAR}s (it compares them with the command's
environment, which it is sent). Anything else (no watch, a dead one's socket, another version,
other settings, a flag, the embedded default, a broken answer) and the command syncs alone.

Standard library only: it runs where producer/nochange.py does, before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.defaults import cache_dir

if TYPE_CHECKING:
    from producer.walk import Walks

PACKAGES = ("producer", "shared", "workers")
MAX_LINE = 64 * 1024 * 1024  # a report of 10,000 nodes is a few MB
INTERRUPTED = 130  # Ctrl-C, as producer/cli/app.py's Exit says it
# while it syncs for a command, the watch says so this often; a command that hears nothing for
# SILENCE_SECONDS (a watch stopped with Ctrl-Z, something else on the socket) syncs alone
WORKING, WORKING_EVERY, SILENCE_SECONDS = b'{"working": true}\n', 1.0, 5.0


def runtime_dir(environ: dict[str, str]) -> Path:
    base = environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "agentq" if base else Path(f"/tmp/agentq-{os.getuid()}")


def socket_path(root: Path, cache_dir: Path, environ: dict[str, str]) -> Path:
    """The watch's socket for this tree and cache folder (short: a socket's path has 107 bytes)."""
    name = hashlib.blake2b(f"{root}\0{cache_dir}".encode(errors="surrogateescape"), digest_size=10).hexdigest()
    return runtime_dir(environ) / f"{name}.sock"


def code_digest() -> str:
    """The package's source files (path, size, mtime): another version of the code is another digest."""
    base = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=16)
    for package in PACKAGES:
        for folder, dirs, files in os.walk(base / package):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for name in sorted(f for f in files if f.endswith((".py", ".lua", ".txt"))):
                st = os.stat(os.path.join(folder, name))
                h.update(f"{folder}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return h.hexdigest()


def private_dir(path: Path) -> bool:
    """A folder that is this user's and no one else's to enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux's SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def read_line(conn: socket.socket) -> bytes:
    """One newline-ended message ("": the other end closed without one)."""
    chunks, size = [], 0
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            return b""
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
        if size > MAX_LINE:
            return b""


def try_handoff(argv: list[str], environ: dict[str, str], walks: Walks | None = None) -> int | None:
    """The exit code of a sync the watch of this tree ran for this command; None: sync alone.
    `walks`: the tree walked already (by the no-change answer's look), or walked here."""
    try:
        return _handoff(argv, environ, walks)
    except OSError:  # a folder on the way that is not ours to look into, say: no hand-off
        return None
    except KeyboardInterrupt:  # as producer/cli/app.py says a failure: one line, and JSON with --json
        line = "interrupted: the watch of this tree goes on with the sync; its next line says how it ended"
        sys.stderr.write(f"error: {line}\n")
        if argv[2:] == ["--json"]:
            sys.stdout.write(json.dumps({"error": line, "errors": [line], "exit_code": INTERRUPTED}) + "\n")
        return INTERRUPTED


def _handoff(argv: list[str], environ: dict[str, str], walks: Walks | None) -> int | None:
    from producer.nochange import plain_sync

    if not plain_sync(argv) or not environ.get("REDIS_URL") or not Path(argv[1]).is_dir():
        return None
    started = time.monotonic()
    root = Path(argv[1]).resolve()
    path = socket_path(root, cache_dir(environ), environ)
    if not path.exists() or not private_dir(path.parent):
        return None  # no watch of this tree: nothing else is done

    def request() -> dict[str, Any]:
        from producer.nochange import fingerprint

        tree = fingerprint(root, [], [], {}, walks)  # the tree as this command sees it
        return {"v": 1, "root": str(root), "code": code_digest(), "tree": tree, "environ": environ}

    answer = _ask(path, request)
    if answer is None or not _well_formed(answer):
        return None  # a broken answer: the command syncs alone
    return _show(answer, argv[2:] == ["--json"], time.monotonic() - started)


# what a sync's report has (a run id is None where nothing was enqueued)
REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "run_id": (str, type(None)),
    "state": str,
    "tree": str,
    "counts": dict,
    "nodes": dict,
}


def _well_formed(answer: dict[str, Any]) -> bool:
    """A watch's answer as producer/handoff_server.py writes it: ok, a sync's report, its warnings
    as lines, whether it succeeded, the watch's pid."""
    report, warnings = answer.get("report"), answer.get("warnings", [])
    return (
        answer.get("ok") is True
        and isinstance(report, dict)
        and all(isinstance(report.get(name), kind) for name, kind in REPORT_FIELDS.items())
        and isinstance(warnings, list)
        and all(isinstance(w, str) for w in warnings)
        and isinstance(answer.get("succeeded"), bool)
        and isinstance(answer.get("pid"), int)
    )


def _ask(path: Path, request: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The watch's answer; the request is made once a watch is there (the socket of one that died,
    refused at once, costs no walk of the tree)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(SILENCE_SECONDS)  # a timeout is an OSError: the command syncs alone
            conn.connect(str(path))
            if peer_uid(conn) != os.getuid():
                return None
            conn.sendall(json.dumps(request()).encode() + b"\n")  # ASCII: lone surrogates travel escaped
            reader = conn.makefile("rb")
            line = WORKING
            while line == WORKING:
                line = reader.readline(MAX_LINE)
        answer = json.loads(line) if line.endswith(b"\n") else None
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def _show(answer: dict[str, Any], as_json: bool, seconds: float) -> int:
    """The report as `producer sync` shows it, the watch's warnings on stderr; the sync's exit code."""
    report = answer["report"]
    for warning in answer.get("warnings", []):
        sys.stderr.write(f"warning: {warning}\n")
    sys.stderr.write(f"Synced by the watch of this tree (pid {answer.get('pid')}) in {seconds:.2f} s.\n")
    if as_json:
        from shared.core.json_text import dumps

        sys.stdout.write(dumps(report, indent=True) + "\n")
    else:
        from rich.console import Console

        from producer.report import render_report

        render_report(Console(), report)
    return 0 if answer.get("succeeded") else 1
