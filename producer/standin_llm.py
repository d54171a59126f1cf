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
import math
import random
import re
import threading
import time
from typing import Any

from aiohttp import web

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
        marked = DELAY_MARK.search(first_line)
        try:
            # per_token: latency that grows with the request, as a real model's does with its prompt
            per_token = float(control.get("per_token") or 0.0) * len(prompt.split())
            await asyncio.sleep((float(marked.group(1)) if marked else float(control["delay"])) + per_token)
            marker = control.get("fail_when_contains")
            if marker and marker in prompt:
                status = 500
            elif (control["fail_every"] and number % int(control["fail_every"]) == 0) or random.random() < float(
                control["fail_rate"]
            ):
                # a list of statuses is used in turn: e.g. [500, 429]
                statuses = (
                    control["fail_status"] if isinstance(control["fail_status"], list) else [control["fail_status"]]
                )
                chosen = statuses[number % len(statuses)]
                status = chosen if chosen in MALFORMED else int(chosen)
            else:
                status = 200
        finally:
            self.in_flight -= 1
        # the key itself is never kept: only a digest, so a test can tell which key was sent
        auth_digest = hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest() if auth else None
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        self.requests.append(
            {
                "model": body.get("model"),
                "messages": messages,
                "params": params,
                "status": status,
                "started": started,
                "finished": time.time(),
                "auth_sha256": auth_digest,
            }
        )
        if isinstance(status, str):
            return status, {}, {}
        if status == 429:
            return 429, {"Retry-After": str(control["retry_after"])}, {"error": {"message": "rate limited (stand-in)"}}
        if status != 200:
            return status, {}, {"error": {"message": f"stand-in failure {status}"}}
        model = body.get("model")
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
        marker = control.get("selector_marker")
        tools = body.get("tools") or []
        if marker and marker.lower() in prompt.lower():
            message: dict[str, Any] = {"role": "assistant", "content": self._select(prompt, control)}
        elif tools and (messages[-1].get("role") if messages else None) != "tool":
            message = {"role": "assistant", "content": None, "tool_calls": [_tool_call(tools, control, digest)]}
        else:
            text = f"[stand-in {model} #{digest}] Done: {first_line[:120]}"
            message = {"role": "assistant", "content": _formatted(text, body.get("response_format"))}
        text = message["content"] or json.dumps(message.get("tool_calls"))
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{digest}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": usage,
            },
        )

    def _select(self, prompt: str, control: dict[str, Any]) -> str:
        chosen = control.get("select") or []
        if chosen:
            name = str(chosen[self.selections % len(chosen)])
            self.selections += 1
            return name
        found = CANDIDATES.search(prompt)
        names = [n.strip().strip("'\"") for n in found.group(1).split(",")] if found else []
        return names[0] if names and names[0] else "unknown"


def _formatted(text: str, response_format: Any) -> str:
    """The answer in the format the request asks for."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(_instance(schema, schema, text))
    if kind == "json_object":
        return json.dumps({"answer": text})
    return text


def _instance(schema: Any, root: dict[str, Any], text: str, depth: int = 0) -> Any:
    """A value of a JSON schema (what pydantic writes: $defs and $ref, anyOf, enums, bounds), as a
    model in structured output gives one; `text` for strings."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    if "$ref" in schema:  # "#/$defs/Name"
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return _instance(target, root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if len(options) < len(schema.get(key) or []) and depth >= 4:
            return None  # nullable, deep in a schema that may nest itself
        if options:
            return _instance(options[0], root, text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _instance(sub, root, text, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_instance(schema.get("items"), root, text, depth + 1) for _ in range(max(1, schema.get("minItems", 1)))]
    return _scalar(kind, schema, text)


def _scalar(kind: Any, schema: dict[str, Any], text: str) -> Any:
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            value = (low + high) / 2
        elif low is not None:
            value = low + 1
        elif high is not None:
            value = high - 1
        else:
            value = 2
        return math.floor(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "string":
        return text[: schema.get("maxLength", len(text))].ljust(schema.get("minLength", 0), ".")
    return None


def _chunks(payload: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as the chunks OpenAI streams it: the role, the content a few words at a time,
    each tool call, the finish reason, then the usage when asked for."""
    base = {"id": payload["id"], "object": "chat.completion.chunk", "created": payload["created"]}
    base["model"] = payload["model"]
    choice = payload["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    words = re.findall(r"\s*\S+\s*", message.get("content") or "")
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": "".join(words[i : i + 4])}) for i in range(0, len(words), 4)]
    out += [chunk({"tool_calls": [{"index": i, **call}]}) for i, call in enumerate(message.get("tool_calls") or [])]
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        out.append({**base, "choices": [], "usage": payload["usage"]})
    return out


def _task_line(messages: list[dict[str, Any]]) -> str:
    """The line that names the task: "Task: ..." in the first user message, else its first line."""
    first_user = next((m.get("content") for m in messages if m.get("role") == "user"), "")
    lines = [ln for ln in str(first_user or "").splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith("Task:")), lines[0] if lines else "")


def _tool_call(tools: list[dict[str, Any]], control: dict[str, Any], digest: str) -> dict[str, Any]:
    functions = [t.get("function") or {} for t in tools]
    wanted = control.get("tool")
    function = next((f for f in functions if f.get("name") == wanted), functions[0])
    args = control.get("tool_args")
    if args is None:
        args, n = {}, 2
        for name, schema in ((function.get("parameters") or {}).get("properties") or {}).items():
            kind = schema.get("type") if isinstance(schema, dict) else None
            if kind in ("integer", "number"):
                args[name], n = n, n + 1
            elif kind == "boolean":
                args[name] = True
            else:
                args[name] = "x"
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": function.get("name"), "arguments": json.dumps(args)},
    }


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
