"""Redis spoken directly over a socket (RESP), for the no-change answer (producer/nochange.py):
importing redis-py costs about 0.2 s, more than that whole answer. Standard library only."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, unquote, urlsplit

from shared.adapters.redis.keys import COUNTERS, ROOT_PREFIX

NO_CHANGE_LUA = Path(__file__).resolve().parent / "lua" / "no_change.lua"
Reply = bytes | int | None


class Lines(Protocol):
    """What a reply is read from: the socket's file."""

    def readline(self) -> bytes: ...

    def read(self, size: int, /) -> bytes: ...


def root_still_there(url: str, root: str, counters: list[str], timeout: float = 5.0) -> bool:
    """Whether a clean sync's root key (over every cache entry it covers) is still in Redis; when
    it is, the counters a full no-change sync adds (name, value, name, value ...) are added in the
    same script call (no_change.lua). OSError or ValueError when Redis cannot answer."""
    script = NO_CHANGE_LUA.read_text(encoding="utf-8")
    return redis_call(url, ["EVAL", script, "2", ROOT_PREFIX + root, COUNTERS, *counters], timeout) == 1


def redis_call(url: str, command: list[str], timeout: float = 5.0) -> Reply:
    """One command over RESP, with AUTH and SELECT pipelined in the same round trip."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError("only redis:// URLs take the fast path")
    commands = [*_login(parts), ["SELECT", parts.path.strip("/") or "0"], command]
    payload = b"".join(_encode(c) for c in commands)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout) as sock:
        sock.sendall(payload)
        reader = sock.makefile("rb")
        replies = [_read(reader) for _ in commands]
    return _answer(replies)


def _login(parts: SplitResult) -> list[list[str]]:
    """AUTH with the URL's password (and user), when it has one."""
    if parts.password is None:
        return []
    return [["AUTH", *([unquote(parts.username)] if parts.username else []), unquote(parts.password)]]


def _answer(replies: list[Reply | Exception]) -> Reply:
    """The last reply; the first error among all of them (AUTH's, SELECT's, the command's) raised
    as ValueError."""
    answers: list[Reply] = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise ValueError(str(reply))
        answers.append(reply)
    return answers[-1]


def _encode(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(reader: Lines) -> Reply | Exception:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return Exception(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2]
    raise ValueError(f"unexpected Redis reply {line[:20]!r}")
