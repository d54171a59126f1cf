"""A recording HTTP proxy in front of the real AutoGen Studio, for counting requests and
injecting faults (delay, dropped connections, and a share of answers replaced by a 500 or a 429
with Retry-After, the 500 either instead of the work or after Studio did it, as a lost answer
looks, or by a 200 that is no answer: an HTML page as a proxy sends, before or after the work).
Everything else is passed through unchanged."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
JUNK = {
    "json-list": b"[1, 2, 3]",
    "json-data": b'{"status": true, "data": "weird"}',
    "junk-rows": b'{"status": true, "data": [{"id": "x", "component": 5}]}',
}


class StudioProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, str, int]] = []  # (method, path without query, status)
        self.delay = 0.0
        self.down = False
        self.fault_rate = 0.0  # share of answers replaced by a fault
        # 500-after: Studio did the work, the answer is lost; html(-after): a 200 with an HTML page;
        # 401-echo, 200-echo: an answer that repeats the request's Authorization header and body;
        # json-list: a 200 whose JSON is not shaped as Studio's answers are; json-data: Studio's
        # {status, data} with data a string; junk-rows: with data rows that are not Studio's
        self.fault_kinds: tuple[str, ...] = ("500", "500-after", "429")
        self.retry_after = 1
        self.late = 0.0  # late: the request is held this long (past the client's timeout), then sent on
        self.max_faults_per_request = 2  # the same request (method, path, body) fails at most this often
        # called with (method, path, body) before a request is sent on: what another client does meanwhile
        self.before: Callable[[str, str, bytes | None], None] | None = None
        self.fault_methods: tuple[str, ...] | None = None  # only requests with these methods fail (None: any)
        self.fault_paths: tuple[str, ...] | None = None  # only requests for these paths fail (None: any)
        self.faults: list[tuple[str, str, str]] = []
        self._fault_counts: dict[str, int] = {}
        self._random = random.Random(7)
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=60)
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _fault(self, method: str, path: str, body: bytes | None) -> str | None:
        if (
            not self.fault_rate
            or (self.fault_methods is not None and method not in self.fault_methods)
            or (self.fault_paths is not None and path.split("?")[0] not in self.fault_paths)
        ):
            return None
        key = hashlib.sha256(f"{method} {path} ".encode() + (body or b"")).hexdigest()
        with self._lock:
            if (
                self._fault_counts.get(key, 0) >= self.max_faults_per_request
                or self._random.random() >= self.fault_rate
            ):
                return None
            self._fault_counts[key] = self._fault_counts.get(key, 0) + 1
            kind = self._random.choice(self.fault_kinds)
            self.faults.append((method, path.split("?")[0], kind))
            return kind

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] != "GET" and "/validate/" not in r[1]]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops bursts of connections


def _handler_for(proxy: StudioProxy) -> type[BaseHTTPRequestHandler]:
    """The request handler of `proxy`'s server: forwards to Studio, or answers with a fault."""
    return type("Handler", (_Handler,), {"proxy": proxy})


class _Handler(BaseHTTPRequestHandler):
    proxy: StudioProxy  # set by _handler_for
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.proxy.down:
            self.close_connection = True
            return  # drop the connection without an answer, like a dead server
        if self.proxy.delay:
            time.sleep(self.proxy.delay)
        if self.proxy.before is not None:
            self.proxy.before(self.command, self.path, body)
        fault = self.proxy._fault(self.command, self.path, body)
        if fault == "late":  # Studio does it all the same, after its client gave up
            time.sleep(self.proxy.late)
        if self._instead(fault, body):
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        resp = self.proxy._client.request(self.command, self.path, content=body, headers=headers)
        if fault == "500-after":
            self._answer(500, b'{"status": false, "message": "injected fault after the work"}', {})
            return
        if fault == "html-after":
            self._answer(200, HTML, {"Content-Type": "text/html"})
            return
        with self.proxy._lock:
            self.proxy.requests.append((self.command, self.path.split("?")[0], resp.status_code))
        self._relay(resp)

    def _instead(self, fault: str | None, body: bytes | None) -> bool:
        """Answer with a fault instead of asking Studio; False when Studio is to be asked."""
        if fault in ("500", "429"):
            retry = {"Retry-After": str(self.proxy.retry_after)} if fault == "429" else {}
            self._answer(int(fault), b'{"status": false, "message": "injected fault"}', retry)
        elif fault == "html":
            self._answer(200, HTML, {"Content-Type": "text/html"})
        elif fault in JUNK:  # JSON, but not Studio's answer
            self._answer(200, JUNK[fault], {})
        elif fault in ("401-echo", "200-echo"):  # a server that says back what it was sent
            said = f"<html>refused: {self.headers.get('Authorization')} {body!r}</html>".encode()
            self._answer(int(fault[:3]), said, {"Content-Type": "text/html"})
        else:
            return False
        return True

    def _relay(self, resp: httpx.Response) -> None:
        try:
            self.send_response(resp.status_code)
            for k, v in resp.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)
        except OSError:  # the client gave up waiting (a late answer)
            self.close_connection = True

    def _answer(self, status: int, content: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward
