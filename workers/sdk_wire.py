"""Chat requests sent as AutoGen built them.

AutoGen's OpenAI clients build `messages` and `tools` as plain JSON already, yet the openai SDK
walks them against its typed-dict unions before sending: about 0.3 ms of CPU per request here, a
sixth of a worker's CPU per workflow task (benchmarks/bench_workflow.py). Plain JSON goes in
`extra_body` instead, which the SDK merges into the body after that walk, over an empty
placeholder that keeps each key in its place: the bytes on the wire are the same
(tests/test_sdk_wire.py pins them). Anything else (a pydantic model, a generator) stays on the
SDK's typed path. LiteLLM and Hermes Agent bypass the same walk the same way.
"""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI
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


class AsBuiltCompletions(AsyncCompletions):
    async def create(self, **kwargs: Any) -> Any:
        moved = {k: kwargs[k] for k in BULK if isinstance(kwargs.get(k), list) and is_plain_json(kwargs[k])}
        if moved:
            # the caller's own extra_body still has the last word, as it has on the typed path
            kwargs["extra_body"] = {**moved, **(kwargs.get("extra_body") or {})}
            kwargs.update(dict.fromkeys(moved, []))
        return await super().create(**kwargs)


def send_as_built(model_client: Any) -> None:
    """Give an AutoGen OpenAI (or Azure OpenAI) chat client's SDK client the as-built path; any
    other client is left as it is."""
    sdk = getattr(model_client, "_client", None)  # AutoGen's BaseOpenAIChatCompletionClient keeps it there
    if isinstance(sdk, AsyncOpenAI):
        sdk.chat.completions = AsBuiltCompletions(sdk)  # type: ignore[misc]  # a cached_property: this client's own
