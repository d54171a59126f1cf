"""The watch's side of producer/handoff.py: a Unix socket that takes a `producer sync` of the
watched tree from a command of this user running the same code with the same settings, and
answers with the report of a sync the watch started after it asked, or of the one it was running
when that one read the tree as the command sees it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.handoff import WORKING, WORKING_EVERY, code_digest, peer_uid, private_dir, read_line, socket_path
from shared.core.json_text import dumps

if TYPE_CHECKING:
    from producer.pipeline import SyncOutcome


@dataclass
class Request:
    """A command's sync, waiting for the watch's answer."""

    environ: dict[str, str]
    tree: str  # the tree as the command saw it (producer/nochange.py's fingerprint of its files)
    answer: dict[str, Any] = field(default_factory=lambda: {"ok": False, "why": "the watch stopped"})
    done: threading.Event = field(default_factory=threading.Event)

    def give(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.done.set()


class HandoffServer:
    """Listens while the watch runs; `requests` is what the watch's loop takes its syncs from."""

    def __init__(self, root: Path, cache_dir: Path, differs: Callable[[Mapping[str, str]], str | None]) -> None:
        self.root, self.code = root, code_digest()
        self.path = socket_path(root, cache_dir, dict(os.environ))
        self.differs = differs  # what in a command's environment this watch does not share (None: nothing)
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self.waiting: list[Request] = []  # asked while a sync of another state of the tree ran
        self._sock: socket.socket | None = None

    def start(self) -> bool:
        """Listen, unless another watch of the tree does (or the folder is not this user's alone)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not private_dir(self.path.parent) or self._taken():
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except OSError:
            sock.close()
            return False
        self._sock = sock
        threading.Thread(target=self._accept, name="agentq-handoff", daemon=True).start()
        return True

    def _taken(self) -> bool:
        """A live watch answers on the socket; a dead one's socket file is removed."""
        if not self.path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
                return True
            except OSError:
                pass
        with contextlib.suppress(OSError):
            self.path.unlink()
        return False

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._sock.close()
        self._sock = None

    def _accept(self) -> None:
        sock = self._sock
        while sock is not None and self._sock is sock:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            if peer_uid(conn) != os.getuid():
                return
            line = read_line(conn)
            request = json.loads(line) if line else None
            why = self._refused(request)
            if why is None:
                assert isinstance(request, dict)
                waiting = Request(dict(request["environ"]), str(request.get("tree")))
                self.requests.put(waiting)
                while not waiting.done.wait(WORKING_EVERY):  # a stopped watch is told from a slow sync
                    conn.sendall(WORKING)
                answer = waiting.answer
            else:
                answer = {"ok": False, "why": why}
            # orjson: a 10,000-node report in 2 ms, not 15 (lone surrogates go to json, which escapes them)
            conn.sendall(dumps(answer).encode() + b"\n")

    def _refused(self, request: object) -> str | None:
        if not isinstance(request, dict) or request.get("v") != 1 or not isinstance(request.get("environ"), dict):
            return "not a request this watch knows"
        if request.get("root") != str(self.root):
            return "another tree"
        if request.get("code") != self.code:
            return "another version of agentq"
        return self.differs(request["environ"])

    def take(self) -> list[Request]:
        """The requests waiting now: the watch's next sync starts after each of them arrived."""
        taken, self.waiting = self.waiting, []
        while True:
            try:
                taken.append(self.requests.get_nowait())
            except queue.Empty:
                return taken


def settings_differ(names: Collection[str]) -> Callable[[Mapping[str, str]], str | None]:
    """What of the settings (read from these environment variables) a command does not share with
    this process (compared here, never stored or sent back: some are secrets)."""

    def differs(environ: Mapping[str, str]) -> str | None:
        other = sorted(name for name in names if environ.get(name) != os.environ.get(name))
        return f"other settings: {', '.join(other)}" if other else None

    return differs


def answer(outcome: SyncOutcome | None, warnings: list[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """What the command gets of the watch's sync: its report, or why it is to sync alone."""
    from producer.pipeline import nothing_to_sync

    if outcome is None or outcome.report is None:
        return {"ok": False, "why": "the watch's sync did not finish"}
    if nothing_to_sync(outcome.prepared):
        return {"ok": False, "why": "nothing to sync"}
    facts = outcome.prepared.scan.facts.values()
    if any(environ.get(name) != os.environ.get(name) for ff in facts for _, name in ff.variables):
        return {"ok": False, "why": "the tree's ${VAR}s are set otherwise"}
    report, succeeded = outcome.report, outcome.succeeded
    return {"ok": True, "pid": os.getpid(), "report": report, "warnings": warnings, "succeeded": succeeded}


def synced_tree(outcome: SyncOutcome | None) -> str | None:
    """The tree as the sync read it, as a command fingerprints it (None: no sync)."""
    from producer.nochange import fingerprint_of

    if outcome is None:
        return None
    return fingerprint_of(outcome.prepared.scan.files, outcome.prepared.scan.unread, [], [], {})
