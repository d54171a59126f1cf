"""The plain GET the producer asks Studio with before anything heavy is imported
(shared/adapters/plain_http.py): Studio's answers read whole, and what is no plain 200 (an error,
a hostile or broken server) said as such in bounded time, for the caller to ask through Studio's
client. The misbehaving servers are small socket servers (fault injection)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from shared.adapters import plain_http
from shared.adapters.plain_http import http_get, studio_get


@contextmanager
def serving(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A server on loopback that reads one request and answers it with `answer`; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            with contextlib.suppress(OSError):  # the client gave up first
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def sent(text: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(text)


def test_studios_answers_are_read_whole(studio_url: str) -> None:
    body = studio_get(studio_url, "/api/version", None, {})
    assert body is not None and isinstance(json.loads(body)["data"]["version"], str)
    listed = studio_get(studio_url, "/api/teams/?user_id=plain-http-test", None, {})
    assert listed is not None and isinstance(json.loads(listed)["data"], list)
    assert studio_get(studio_url, "/api/gallery/999999?user_id=plain-http-test", None, {}) is None  # a 404


def test_what_is_not_for_a_plain_get_is_left_to_the_client() -> None:
    assert studio_get("https://127.0.0.1:1", "/api/version", None, {}) is None
    assert studio_get("http://127.0.0.1:1", "/api/version", None, {"HTTP_PROXY": "http://proxy:3128"}) is None
    assert studio_get("http://127.0.0.1:1", "/api/version", "a\r\nX-Injected: 1", {}) is None


def test_a_chunked_answer_is_read_and_an_error_status_is_none() -> None:
    with serving(
        sent(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n')
    ) as port:
        assert http_get("127.0.0.1", port, "/", {}) == b'{"a": 1}'
    with serving(sent(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")) as port:
        assert http_get("127.0.0.1", port, "/", {}) is None


def test_an_answer_whose_head_never_ends_is_no_answer() -> None:
    with (
        serving(sent(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)) as port,
        pytest.raises(ValueError, match="not an HTTP"),
    ):
        http_get("127.0.0.1", port, "/", {})


def test_a_server_that_sends_a_byte_at_a_time_is_not_waited_for() -> None:
    def drip(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with serving(drip) as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            http_get("127.0.0.1", port, "/", {}, timeout=1.0)
        assert time.monotonic() - started < 3


def test_an_answer_past_the_limit_or_no_http_or_cut_short_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_http, "MAX_ANSWER_BYTES", 100)
    for answer, said in (
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, "too big"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "ended early"),
    ):
        with serving(sent(answer)) as port, pytest.raises(ValueError, match=said):
            http_get("127.0.0.1", port, "/", {})
