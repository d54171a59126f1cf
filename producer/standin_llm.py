"""A STAND-IN for a real model endpoint: a small local OpenAI-compatible chat completions server
that answers deterministically, for the demo and the tests. It records every request and can be
told to be slow, to fail with 500, or to answer 429 with Retry-After.

    python -m producer.standin_llm --port 11435

Control (JSON): POST /_control {"delay": s, "fail_rate": 0..1, "fail_every": n, "fail_status": 500|429|[...],
"retry_after": s, "fail_when_contains": "text"}; GET /_requests; GET /_stats; POST /_reset.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from typing import Any

from aiohttp import web


class StandIn:
    """The endpoint's state: its control settings and every request it saw. The server runs on
    one event loop; tests read and change this from their own thread (plain dict and list
    operations, atomic under the GIL)."""

    def __init__(self) -> None:
        self.control: dict[str, Any] = {"delay": 0.0, "fail_rate": 0.0, "fail_every": 0, "fail_status": 500,
                                        "retry_after": 0.2, "fail_when_contains": None}
        self.count = 0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def answer(self, body: dict[str, Any], auth: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.count += 1
        number = self.count
        control = dict(self.control)
        started = time.time()
        try:
            await asyncio.sleep(float(control["delay"]))
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
            self.in_flight -= 1
        # the key itself is never kept: only a digest, so a test can tell which key was sent
        auth_digest = hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest() if auth else None
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        self.requests.append({"model": body.get("model"), "messages": messages, "params": params, "status": status,
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


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": f"invalid JSON: {exc}"}}),
                                 content_type="application/json") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": "expected a JSON object"}}),
                                 content_type="application/json")
    return body


def make_app(state: StandIn) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        status, headers, payload = await state.answer(await _json_body(request), request.headers.get("Authorization"))
        return web.json_response(payload, status=status, headers=headers)

    async def control(request: web.Request) -> web.Response:
        state.control.update(await _json_body(request))
        return web.json_response(state.control)

    async def reset(_request: web.Request) -> web.Response:
        state.requests.clear()
        state.max_in_flight = 0
        return web.json_response({"ok": True})

    async def requests(_request: web.Request) -> web.Response:
        return web.json_response(state.requests)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"requests": len(state.requests), "max_in_flight": state.max_in_flight})

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "standin", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/chat/completions", chat)
    app.router.add_post("/{prefix:.+}/chat/completions", chat)  # any base path: /v1, /openai/v1 ...
    app.router.add_post("/_control", control)
    app.router.add_post("/_reset", reset)
    app.router.add_get("/_requests", requests)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    return app


class ThreadedStandIn:
    """The stand-in on its own event loop in a daemon thread (tests run it inside their process)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = StandIn()
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(make_app(self.state), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        self._loop.run_until_complete(site.start())
        self.port: int = self._runner.addresses[0][1]
        self.url = f"http://{host}:{self.port}/v1"
        self._thread = threading.Thread(target=self._loop.run_forever, name="standin-llm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    args = parser.parse_args()
    print(f"stand-in model endpoint on http://{args.host}:{args.port}/v1", flush=True)
    # backlog: the default drops connection bursts, which then wait for a 1 s SYN retry
    web.run_app(make_app(StandIn()), host=args.host, port=args.port, backlog=1024, print=None, access_log=None)


if __name__ == "__main__":
    main()
