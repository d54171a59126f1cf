"""A STAND-IN for a real model endpoint: a small local OpenAI-compatible chat completions server
that answers deterministically, for the demo and the tests. It records every request and can be
told to be slow, to fail with 500, to answer 429 with Retry-After, or to answer 200 with a body
that is no answer (an HTML page as a proxy sends, JSON cut short, no choices).

    python -m producer.standin_llm --port 11435

It answers as a model does in the three situations AutoGen creates:
- a request that offers `tools`, whose last message is not a tool result: one tool call, to the
  tool named by control `tool` (default: the first offered) with the arguments in control
  `tool_args` (default: 2, 3, 4 ... for each integer or number parameter, "x" for strings);
- a selector's request (a message contains control `selector_marker`, by default AutoGen's
  "select the next role"): the next name from control `select` (used in turn), or else the first
  candidate the prompt lists;
- anything else: a text naming the model, a digest of the prompt and the task's first line; as
  JSON when the request asks for it, as models do: `response_format` json_schema (AutoGen's
  structured output) gets a value of that schema, json_object an object {"answer": text}.
A request with `stream: true` is answered as server-sent chunks, ending in `data: [DONE]` (with a
usage chunk when `stream_options.include_usage` asks for one), as OpenAI streams.
A `[delay:S]` in the task's line makes that answer take S seconds (benchmarks set per-task latencies).

Control (JSON): POST /_control {"delay": s, "fail_rate": 0..1, "fail_every": n,
"fail_status": 500|429|"html"|"truncated"|"no_choices"|[...],
"retry_after": s, "fail_when_contains": "text", "tool": name, "tool_args": {...}, "select": [names],
"selector_marker": text}; GET /_requests; GET /_stats; POST /_reset.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import threading
import time
from typing import Any

from aiohttp import web

from producer.standin_values import formatted, tool_call

DELAY_MARK = re.compile(r"\[delay:([0-9]*\.?[0-9]+)\]")
# AutoGen's SelectorGroupChat lists candidates as "... from ['alice', 'bob'] to play" (0.5.x)
CANDIDATES = re.compile(r"from \[([^\]]*)\]")
# 200s whose body is no answer, by the fail_status that asks for them: (content type, body)
MALFORMED = {
    "html": ("text/html", "<html><body><h1>Service Temporarily Unavailable</h1></body></html>"),
    "truncated": ("application/json", '{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"ind'),
    "no_choices": (
        "application/json",
        '{"id": "chatcmpl-none", "object": "chat.completion", "created": 0, "choices": []}',
    ),
}


class StandIn:
    """The endpoint's state: its control settings and every request it saw. The server runs on
    one event loop; tests read and change this from their own thread (plain dict and list
    operations, atomic under the GIL)."""

    def __init__(self) -> None:
        self.control: dict[str, Any] = {
            "delay": 0.0,
            "per_token": 0.0,
            "fail_rate": 0.0,
            "fail_every": 0,
            "fail_status": 500,
            "retry_after": 0.2,
            "fail_when_contains": None,
            "tool": None,
            "tool_args": None,
            "select": [],
            "selector_marker": "select the next role",
        }
        self.count = 0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.selections = 0

    async def answer(
        self, body: dict[str, Any], auth: str | None = None
    ) -> tuple[int | str, dict[str, str], dict[str, Any]]:
        """(status, or the MALFORMED kind of a 200 that is no answer; headers; body)"""
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.count += 1
        number = self.count
        control = dict(self.control)
        started = time.time()
        first_line = _task_line(messages)
        try:
            await asyncio.sleep(_latency(control, prompt, first_line))
            status = _status(control, prompt, number)
        finally:
            self.in_flight -= 1
        self._record(body, status, started, auth)
        return _refusal(status, control, auth) or (200, {}, self._completion(body, prompt, first_line, control))

    def _record(self, body: dict[str, Any], status: int | str, started: float, auth: str | None) -> None:
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        self.requests.append(
            {
                "model": body.get("model"),
                "messages": body.get("messages") or [],
                "params": params,
                "status": status,
                "started": started,
                "finished": time.time(),
                "auth_sha256": _key_digest(auth),
            }
        )

    def _completion(
        self, body: dict[str, Any], prompt: str, first_line: str, control: dict[str, Any]
    ) -> dict[str, Any]:
        """A 200's body: the message (a selection, a tool call or a text) with its usage."""
        model = body.get("model")
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
        message = self._message(body, prompt, control, digest) or {
            "role": "assistant",
            "content": formatted(f"[stand-in {model} #{digest}] Done: {first_line[:120]}", body.get("response_format")),
        }
        text = message["content"] or json.dumps(message.get("tool_calls"))
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": usage,
        }

    def _message(
        self, body: dict[str, Any], prompt: str, control: dict[str, Any], digest: str
    ) -> dict[str, Any] | None:
        """A selector's pick or a tool call, as the request calls for; None for a text answer."""
        if _asks_selection(control, prompt):
            return {"role": "assistant", "content": self._select(prompt, control)}
        tools = body.get("tools") or []
        if tools and _last_role(body.get("messages") or []) != "tool":
            return {"role": "assistant", "content": None, "tool_calls": [tool_call(tools, control, digest)]}
        return None

    def _select(self, prompt: str, control: dict[str, Any]) -> str:
        chosen = control.get("select") or []
        if chosen:
            name = str(chosen[self.selections % len(chosen)])
            self.selections += 1
            return name
        return _first_candidate(prompt)


def _first_candidate(prompt: str) -> str:
    """The first name the selector's prompt lists."""
    found = CANDIDATES.search(prompt)
    if not found:
        return "unknown"
    return found.group(1).split(",")[0].strip().strip("'\"") or "unknown"


def _asks_selection(control: dict[str, Any], prompt: str) -> bool:
    """Whether the prompt is a selector's: it holds control `selector_marker`, in any case."""
    marker = control.get("selector_marker")
    return bool(marker and marker.lower() in prompt.lower())


def _key_digest(auth: str | None) -> str | None:
    # the key itself is never kept: only a digest, so a test can tell which key was sent
    return hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest() if auth else None


def _latency(control: dict[str, Any], prompt: str, first_line: str) -> float:
    """Seconds to wait: the task's [delay:S], else control `delay`; plus `per_token` for each word
    of the prompt (latency that grows with the request, as a real model's does with its prompt)."""
    per_token = float(control.get("per_token") or 0.0) * len(prompt.split())
    marked = DELAY_MARK.search(first_line)
    return (float(marked.group(1)) if marked else float(control["delay"])) + per_token


def _status(control: dict[str, Any], prompt: str, number: int) -> int | str:
    """The status this request gets by control: 200, a failure, or a MALFORMED kind."""
    marker = control.get("fail_when_contains")
    if marker and marker in prompt:
        return 500
    return _failure(control, number) if _fails(control, number) else 200


def _failure(control: dict[str, Any], number: int) -> int | str:
    """The status a failed request gets: control `fail_status`, or a MALFORMED kind of 200."""
    # a list of statuses is used in turn: e.g. [500, 429]
    statuses = control["fail_status"] if isinstance(control["fail_status"], list) else [control["fail_status"]]
    chosen = statuses[number % len(statuses)]
    return chosen if chosen in MALFORMED else int(chosen)


def _refusal(
    status: int | str, control: dict[str, Any], auth: str | None = None
) -> tuple[int | str, dict[str, str], dict[str, Any]] | None:
    """The reply to a request that control fails; None for one it answers. A 401 says the key it
    was sent, as OpenAI-compatible servers do (some in full)."""
    if isinstance(status, str):
        return status, {}, {}
    if status == 401:
        key = (auth or "").removeprefix("Bearer ")
        return 401, {}, {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}
    if status == 429:
        return 429, {"Retry-After": str(control["retry_after"])}, {"error": {"message": "rate limited (stand-in)"}}
    if status != 200:
        return status, {}, {"error": {"message": f"stand-in failure {status}"}}
    return None


def _fails(control: dict[str, Any], number: int) -> bool:
    """Whether this request is one to fail: every `fail_every`th, else at random by `fail_rate`."""
    every = control["fail_every"]
    return bool(every and number % int(every) == 0) or random.random() < float(control["fail_rate"])


def _chunks(payload: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as the chunks OpenAI streams it: the role, the content a few words at a time,
    each tool call, the finish reason, then the usage when asked for."""
    base = {"id": payload["id"], "object": "chat.completion.chunk", "created": payload["created"]}
    base["model"] = payload["model"]
    choice = payload["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": part}) for part in _few_words(message.get("content") or "")]
    out += [chunk({"tool_calls": [{"index": i, **call}]}) for i, call in enumerate(message.get("tool_calls") or [])]
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        out.append({**base, "choices": [], "usage": payload["usage"]})
    return out


def _few_words(content: str) -> list[str]:
    """The content in parts of four words, each with the spaces around them."""
    words = re.findall(r"\s*\S+\s*", content)
    return ["".join(words[i : i + 4]) for i in range(0, len(words), 4)]


def _first_user(messages: list[dict[str, Any]]) -> object:
    return next((m.get("content") for m in messages if m.get("role") == "user"), "")


def _last_role(messages: list[dict[str, Any]]) -> object:
    return messages[-1].get("role") if messages else None


def _task_line(messages: list[dict[str, Any]]) -> str:
    """The line that names the task: "Task: ..." in the first user message, else its first line."""
    lines = _lines(str(_first_user(messages) or ""))
    return next((ln for ln in lines if ln.startswith("Task:")), lines[0] if lines else "")


def _lines(text: str) -> list[str]:
    """The lines of the text that are not blank."""
    return [ln for ln in text.splitlines() if ln.strip()]


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"message": f"invalid JSON: {exc}"}}), content_type="application/json"
        ) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"message": "expected a JSON object"}}), content_type="application/json"
        )
    return body


def make_app(state: StandIn) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        status, headers, payload = await state.answer(body, request.headers.get("Authorization"))
        if isinstance(status, str):
            content_type, text = MALFORMED[status]
            return web.Response(status=200, text=text, content_type=content_type)
        if status != 200 or not body.get("stream"):
            return web.json_response(payload, status=status, headers=headers)
        options = body.get("stream_options")
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await stream.prepare(request)
        for part in _chunks(payload, isinstance(options, dict) and bool(options.get("include_usage"))):
            await stream.write(f"data: {json.dumps(part)}\n\n".encode())
        await stream.write(b"data: [DONE]\n\n")
        await stream.write_eof()
        return stream

    async def control(request: web.Request) -> web.Response:
        state.control.update(await _json_body(request))
        return web.json_response(state.control)

    async def reset(_request: web.Request) -> web.Response:
        state.requests.clear()
        state.max_in_flight = 0
        state.selections = 0
        return web.json_response({"ok": True})

    async def requests(_request: web.Request) -> web.Response:
        return web.json_response(state.requests)

    async def stats(_request: web.Request) -> web.Response:
        # its pid: the command that started it knows its own stand-in from another on the port
        return web.json_response(
            {"requests": len(state.requests), "max_in_flight": state.max_in_flight, "pid": os.getpid()}
        )

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
        # stopped, it cancels an answer still being delayed after 2 s rather than wait for it
        self._runner = web.AppRunner(make_app(self.state), access_log=None, shutdown_timeout=2.0)
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
    try:
        web.run_app(make_app(StandIn()), host=args.host, port=args.port, backlog=1024, print=None, access_log=None)
    except OSError as exc:  # the port taken: said in one line
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    main()
