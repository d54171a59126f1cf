"""The as-built request path (workers/sdk_wire.py) sends the same bytes as the SDK's typed path,
for every shape of request AutoGen's OpenAI client makes, and skips the SDK's walk of them: of the
conversation always, of the rest once a request of the same shape has been sent."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import FunctionTool
from autogen_ext.models.openai import OpenAIChatCompletionClient
from openai.resources.chat.completions import completions as sdk_completions

from workers.sdk_wire import is_plain_json, send_as_built

MODEL_INFO: ModelInfo = {
    "vision": True,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}
# a 1x1 PNG
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def answer(stream: bool) -> httpx2.Response:
    if stream:
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        }
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    return httpx2.Response(
        200,
        json={
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        },
    )


def client(sent: list[bytes], body: dict[str, Any] | None = None, **config: Any) -> OpenAIChatCompletionClient:
    """A client whose requests are kept in `sent`, answered with `body` (a short completion by default)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.content)
        if body is not None:
            return httpx2.Response(200, json=body)
        return answer(b'"stream":true' in request.content.replace(b" ", b""))

    transport = httpx2.MockTransport(handler)
    return OpenAIChatCompletionClient(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        api_key="not-sent",
        model_info=MODEL_INFO,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),  # type: ignore[call-arg]  # passed on to the SDK
        **config,
    )


CONVERSATIONS: dict[str, list[LLMMessage]] = {
    "system and user text": [SystemMessage(content="Be brief."), UserMessage(content="Task: hi", source="user")],
    "an image": [
        UserMessage(content=["What is this?", Image.from_base64(base64.b64encode(PIXEL).decode())], source="u")
    ],
    "a tool call and its result": [
        UserMessage(content="add 2 and 3", source="user"),
        AssistantMessage(content=[FunctionCall(id="call_1", name="add", arguments='{"a": 2, "b": 3}')], source="a"),
        FunctionExecutionResultMessage(
            content=[FunctionExecutionResult(call_id="call_1", content="5", name="add", is_error=False)]
        ),
    ],
}


async def bodies(request: Callable[[OpenAIChatCompletionClient], Any], **config: Any) -> tuple[bytes, bytes]:
    """The body each path sends, checked equal for a first request and for a second of the same
    shape (the one that skips the walk of its scalars)."""
    typed_sent: list[bytes] = []
    built_sent: list[bytes] = []
    typed, built = client(typed_sent, **config), client(built_sent, **config)
    send_as_built(built)
    for _ in range(2):
        await request(typed)
        await request(built)
    assert len(typed_sent) == len(built_sent) == 2
    assert built_sent[1] == typed_sent[1] == typed_sent[0]
    return typed_sent[0], built_sent[0]


@pytest.mark.parametrize("shape", sorted(CONVERSATIONS))
@pytest.mark.parametrize("with_tools", [False, True])
def test_the_body_on_the_wire_is_the_sdks_own(shape: str, with_tools: bool) -> None:
    tools = [FunctionTool(add, description="Add two numbers.")] if with_tools else []
    typed, built = asyncio.run(bodies(lambda c: c.create(CONVERSATIONS[shape], tools=tools), temperature=0.2))
    assert built == typed
    assert json.loads(built)["messages"], "the conversation must be sent"
    assert ("tools" in json.loads(built)) == with_tools


def test_a_stream_request_keeps_its_bytes() -> None:
    async def stream(c: OpenAIChatCompletionClient) -> None:
        async for _ in c.create_stream(CONVERSATIONS["system and user text"], tools=[FunctionTool(add, "Add.")]):
            pass

    typed, built = asyncio.run(bodies(stream, seed=7))
    assert built == typed
    assert json.loads(built)["stream"] is True and json.loads(built)["seed"] == 7


@pytest.mark.parametrize("config", [{}, {"timeout": 30.0}], ids=["no timeout", "a timeout, as the workers set"])
def test_the_sdk_no_longer_walks_the_conversation(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> None:
    walked: list[Any] = []
    real = sdk_completions.async_maybe_transform

    async def spy(data: Any, expected_type: Any) -> Any:
        walked.append(data.get("messages"))
        return await real(data, expected_type)

    monkeypatch.setattr(sdk_completions, "async_maybe_transform", spy)
    typed, built = asyncio.run(bodies(lambda c: c.create(CONVERSATIONS["a tool call and its result"]), **config))
    assert built == typed
    # in turn typed, as built, typed, as built: the typed path walked three messages each time; the
    # as-built path walked none, and its second request (a shape it has sent) was not walked at all
    assert [len(m) for m in walked] == [3, 0, 3]


def test_a_request_with_options_of_its_own_takes_the_sdks_way() -> None:
    async def go() -> list[bytes]:
        sent: list[bytes] = []
        built = client(sent)
        send_as_built(built)
        for headers in (None, {"X-Trace": "1"}):
            await built.create(CONVERSATIONS["system and user text"], extra_create_args={"user": "u1"})
            if headers:
                await built._client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], extra_headers=headers
                )
        return sent

    sent = asyncio.run(go())
    assert [json.loads(b).get("user") for b in sent] == ["u1", "u1", None]


def test_only_plain_json_leaves_the_typed_path() -> None:
    assert is_plain_json([{"role": "user", "content": [{"type": "text", "text": "x"}], "n": 1.5, "ok": None}])
    assert not is_plain_json([{"role": "user", "content": ("a", "tuple")}])
    assert not is_plain_json([{1: "int key"}])
    assert not is_plain_json([UserMessage(content="a model", source="u")])


SPEC_ANSWER = {
    "id": "c2",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": "a provider's own field",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}],
            },
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cached": 0},
}
# as OpenAI-compatible servers answer off the spec: no `created`, another `object`, a finish
# reason of their own, a usage count that is a string
OFF_SPEC_ANSWER = {
    "id": "c3",
    "object": "text_completion",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "eos", "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": "3", "completion_tokens": 1, "total_tokens": 4},
}


# valid but for a number sent as a string, which validation would turn into a number and the SDK does not
NUMBER_AS_TEXT = {**SPEC_ANSWER, "created": "1"}


@pytest.mark.parametrize(
    "body", [SPEC_ANSWER, OFF_SPEC_ANSWER, NUMBER_AS_TEXT], ids=["on the spec", "off the spec", "a number as text"]
)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # AutoGen dumps the off-spec answer: a string
def test_the_answer_handed_to_autogen_is_the_sdks_own(body: dict[str, Any]) -> None:
    async def go() -> list[Any]:
        answers = []
        for as_built in (False, True):
            c = client([], body)
            if as_built:
                send_as_built(c)
            sdk = c._client
            completion = await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            result = await c.create(CONVERSATIONS["system and user text"])
            answers.append(
                (
                    type(completion),
                    completion.model_dump(warnings=False),
                    result.content,
                    result.finish_reason,
                    result.usage,
                )
            )
        return answers

    typed, built = asyncio.run(go())
    assert built == typed
