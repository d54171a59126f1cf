"""Chat requests sent as AutoGen built them.

AutoGen's OpenAI clients build `messages` and `tools` as plain JSON already, yet the openai SDK
walks them against its typed-dict unions before sending: about 0.3 ms of CPU per request here, a
sixth of a worker's CPU per workflow task (benchmarks/bench_workflow.py). Plain JSON goes in
`extra_body` instead, which the SDK merges into the body after that walk, over an empty
placeholder that keeps each key in its place: the bytes on the wire are the same
(tests/test_sdk_wire.py pins them). Anything else (a pydantic model, a generator) stays on the
SDK's typed path. LiteLLM and Hermes Agent bypass the same walk the same way.

The rest of the body (model, stream, temperature and the like) is scalars, which the SDK's walk
returns as they are, yet the walk of its ~40 typed fields costs another 0.08 ms a request. So the
first request of each shape (which keys, streamed or not) goes the SDK's whole way and its call
to `post` is recorded: the key order of the body and the request options the SDK added. A later
request of that shape whose fields are all scalars is posted the same way without the walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI, NotGiven, Omit
from openai.resources.chat.completions import AsyncCompletions

BULK = ("messages", "tools")
_SCALARS = (str, int, float, bool, type(None))


def is_plain_json(value: Any) -> bool:
    """Only dicts with string keys, lists and scalars, all the way down."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, _SCALARS):
            return False
    return True


PATH = "/chat/completions"
OWN_OPTIONS = ("extra_headers", "extra_query", "timeout")  # a request with any of these takes the SDK's way


@dataclass(frozen=True)
class Shape:
    """How the SDK posted a request of one shape: its body's key order, and the rest of its call
    to `post` but the extra body."""

    order: tuple[str, ...]
    post: dict[str, Any]


def shape_key(keys: Any, stream: Any) -> tuple[frozenset[str], bool]:
    return frozenset(keys), bool(stream)


class AsBuiltCompletions(AsyncCompletions):
    def __init__(self, client: AsyncOpenAI) -> None:
        super().__init__(client)
        self._shapes: dict[tuple[frozenset[str], bool], Shape] = {}
        sdk_post = self._post

        async def post(path: str, **call: Any) -> Any:
            body, options = call.get("body"), call.get("options")
            if path == PATH and isinstance(body, dict) and isinstance(options, dict):
                rest = {k: v for k, v in call.items() if k not in ("body", "options")}
                self._shapes.setdefault(
                    shape_key(body, call.get("stream")),
                    Shape(tuple(body), {**rest, "options": {k: v for k, v in options.items() if k != "extra_json"}}),
                )
            return await sdk_post(path, **call)

        self._post = post  # the SDK's resources call their client's post through this attribute

    async def create(self, **kwargs: Any) -> Any:
        moved = {k: kwargs[k] for k in BULK if isinstance(kwargs.get(k), list) and is_plain_json(kwargs[k])}
        if moved:
            # the caller's own extra_body still has the last word, as it has on the typed path
            kwargs["extra_body"] = extra = {**moved, **(kwargs.get("extra_body") or {})}
            kwargs.update(dict.fromkeys(moved, []))
            # what the SDK leaves out of the body (AutoGen passes tools=NOT_GIVEN) does not count
            fields = {k: v for k, v in kwargs.items() if k != "extra_body" and not isinstance(v, (NotGiven, Omit))}
            shape = self._shapes.get(shape_key(fields, fields.get("stream")))
            if (
                shape is not None
                and not any(k in fields for k in OWN_OPTIONS)
                and all(k in moved or isinstance(v, _SCALARS) for k, v in fields.items())
            ):
                options = {**shape.post["options"], "extra_json": extra}
                body = {k: fields[k] for k in shape.order}
                return await self._post(PATH, **{**shape.post, "options": options, "body": body})
        return await super().create(**kwargs)


def send_as_built(model_client: Any) -> None:
    """Give an AutoGen OpenAI (or Azure OpenAI) chat client's SDK client the as-built path; any
    other client is left as it is."""
    sdk = getattr(model_client, "_client", None)  # AutoGen's BaseOpenAIChatCompletionClient keeps it there
    if isinstance(sdk, AsyncOpenAI):
        sdk.chat.completions = AsBuiltCompletions(sdk)  # type: ignore[misc]  # a cached_property: this client's own
