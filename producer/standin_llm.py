"""A STAND-IN for a real model endpoint: a small local OpenAI-compatible chat completions server
that answers deterministically, for the demo and the tests. It records every request and can be
told to be slow, to fail with 500, or to answer 429 with Retry-After.

    python -m producer.standin_llm --port 11435

Control (JSON): POST /_control {"delay": s, "fail_rate": 0..1, "fail_every": n, "fail_status": 500|429|[...],
"retry_after": s, "fail_when_contains": "text"}; GET /_requests; GET /_stats; POST /_reset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.control: dict[str, Any] = {"delay": 0.0, "fail_rate": 0.0, "fail_every": 0, "fail_status": 500,
                                        "retry_after": 0.2, "fail_when_contains": None}
        self.count = 0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def answer(self, body: dict[str, Any], auth: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.count += 1
            number = self.count
            control = dict(self.control)
        started = time.time()
        try:
            time.sleep(float(control["delay"]))
            marker = control.get("fail_when_contains")
            if marker and marker in prompt:
                status = 500
            elif (control["fail_every"] and number % int(control["fail_every"]) == 0) or random.random() < float(control["fail_rate"]):
                # a list of statuses is used in turn: e.g. [500, 429]
                statuses = control["fail_status"] if isinstance(control["fail_status"], list) else [control["fail_status"]]
                status = int(statuses[number % len(statuses)])
            else:
                status = 200
        finally:
            with self.lock:
                self.in_flight -= 1
        # the key itself is never kept: only a digest, so a test can tell which key was sent
        auth_digest = hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest() if auth else None
        self.requests.append({"model": body.get("model"), "messages": messages, "status": status,
                              "started": started, "finished": time.time(), "auth_sha256": auth_digest})
        if status == 429:
            return 429, {"Retry-After": str(control["retry_after"])}, {"error": {"message": "rate limited (stand-in)"}}
        if status != 200:
            return status, {}, {"error": {"message": f"stand-in failure {status}"}}
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
        lines = [ln for ln in str(last_user).splitlines() if ln.strip()]
        first_line = next((ln for ln in lines if ln.startswith("Task:")), lines[0] if lines else "")[:120]
        content = f"[stand-in {body.get('model')} #{digest}] Done: {first_line}"
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {}, {"id": f"chatcmpl-{digest}", "object": "chat.completion", "model": body.get("model"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}], "usage": usage}


def make_server(host: str, port: int) -> tuple[ThreadingHTTPServer, StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per response and no Nagle: headers and body in separate small writes would
        # meet the client's delayed ACK and add ~40 ms to every answer, which no real endpoint does.
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self) -> None:
            if self.path == "/_requests":
                self._send(200, state.requests)
            elif self.path == "/_stats":
                self._send(200, {"requests": len(state.requests), "max_in_flight": state.max_in_flight})
            elif self.path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.endswith("/chat/completions"):
                status, headers, payload = state.answer(self._body(), self.headers.get("Authorization"))
                self._send(status, payload, headers)
            elif self.path == "/_control":
                with state.lock:
                    state.control.update(self._body())
                self._send(200, state.control)
            elif self.path == "/_reset":
                with state.lock:
                    state.requests.clear()
                    state.max_in_flight = 0
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found"})

    server = _Server((host, port), Handler)
    return server, state


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # listen() backlog: the default of 5 drops connection bursts, which then wait for a 1 s SYN retry
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    args = parser.parse_args()
    server, _ = make_server(args.host, args.port)
    print(f"stand-in model endpoint on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
