"""One HTTP/1.1 GET over a plain socket, for what must not wait for an HTTP client's import: the
no-change sync's look at Studio (producer/nochange.py: importing http.client costs about 35 ms,
more than the listing itself) and a sync's first question to Studio (producer/studio_state.py:
aiohttp and the retry policy cost a command 0.14 s to import). It asks once and judges nothing:
where it gets no plain 200 (TLS, a proxy, an error, a timeout), the caller asks through Studio's
client (shared/adapters/studio.py), which retries and says what failed. Standard library only."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.adapters.answer_limits import MAX_ANSWER_BYTES

MAX_HEAD_BYTES = 64 * 1024  # a status line and header fields: Studio's are a few hundred bytes


def studio_get(
    base_url: str, endpoint: str, token: str | None, environ: Mapping[str, str], timeout: float = 5.0
) -> bytes | None:
    """The body of Studio's 200 answer to GET `endpoint` (its path under the server's root, with
    its query), or None where it is not to be had this way. OSError when it cannot be reached,
    ValueError when the answer is past MAX_ANSWER_BYTES or not HTTP."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        return None  # https and the rest take the client
    if any(environ.get(name) for name in ("HTTP_PROXY", "http_proxy")):
        return None  # the client goes through the proxy (or not, as NO_PROXY says)
    if token is not None and ("\r" in token or "\n" in token):
        return None  # no header can hold it: the settings refuse it, saying why
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http_get(parts.hostname, parts.port or 80, f"{parts.path.rstrip('/')}{endpoint}", headers, timeout)


def http_get(host: str, port: int, path: str, headers: dict[str, str], timeout: float = 5.0) -> bytes | None:
    """The body of a 200 answer to one HTTP/1.1 GET, else None. The whole answer within `timeout`
    seconds, or socket.timeout (an OSError): a server that sends a byte at a time is not waited for.
    ValueError for an answer past MAX_ANSWER_BYTES, or one that is not HTTP."""
    deadline = time.monotonic() + timeout
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = bytearray()
        while (answer := _answer(raw)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole answer within {timeout:g} s")
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ValueError("the answer ended early")
            raw += chunk
            if len(raw) > MAX_ANSWER_BYTES + (1 << 16):
                raise ValueError("answer too big")
    status, body = answer
    return body if status == 200 else None


def _answer(raw: bytearray) -> tuple[int, bytes] | None:
    """(status, body) once `raw` holds a whole answer, else None."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        if len(raw) > MAX_HEAD_BYTES:
            raise ValueError("not an HTTP answer")  # no end of its head in sight
        return None
    status_line, *field_lines = bytes(raw[:head_end]).split(b"\r\n")
    status = status_line.split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise ValueError("not an HTTP answer")
    fields = {name.strip().lower(): value.strip() for name, _, value in (f.partition(b":") for f in field_lines)}
    start = head_end + 4
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _unchunked(raw[start:])
        return None if body is None else (int(status[1]), body)
    if b"content-length" not in fields:
        raise ValueError("an answer of no stated length")  # Studio states it; the client reads the rest
    size = int(fields[b"content-length"])
    if size > MAX_ANSWER_BYTES:
        raise ValueError("answer too big")
    return (int(status[1]), bytes(raw[start : start + size])) if len(raw) - start >= size else None


def _unchunked(rest: bytearray) -> bytes | None:
    """A chunked body, once its last chunk is in; None before."""
    chunks: list[bytes] = []
    at = 0
    while (line_end := rest.find(b"\r\n", at)) >= 0:
        size = int(bytes(rest[at:line_end]).split(b";")[0], 16)
        if size == 0:
            return b"".join(chunks)
        start = line_end + 2
        if len(rest) < start + size + 2:
            return None
        if rest[start + size : start + size + 2] != b"\r\n":
            raise ValueError("a chunk of another length than it says")
        chunks.append(bytes(rest[start : start + size]))
        at = start + size + 2
    return None
