"""The gated model client (workers/model_client.py) as AutoGen loads it from a swapped spec: its
requests go through the task's limit and retry policy, its tokens, calls and latencies are
counted, streams are retried until their first chunk, and a final failure names the model and
where it is. A stand-in for the real client; no servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from autogen_core.models import CreateResult, RequestUsage, UserMessage

from shared.core.endpoints import model_specs
from shared.metrics import Metrics
from workers.agent_runtime import load_component
from workers.model_client import GatedChatCompletionClient, ModelError, TaskModels

SPEC = {
    "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
    "component_type": "model",
    "label": "m",
    "config": {"model": "gpt-x", "base_url": "http://models.example/v1", "api_key": "k"},
}
MESSAGES = [UserMessage(content="hi", source="user")]


class Status(Exception):
    """An SDK's error for an HTTP answer: its status and Retry-After."""

    def __init__(self, code: int) -> None:
        super().__init__(f"status {code}")
        self.status_code = code
        self.body = {"message": f"said {code}"}
        self.response = SimpleNamespace(headers={"retry-after": "0"})


def result(text: str = "ok", finish: str = "stop") -> CreateResult:
    return CreateResult(
        finish_reason=finish,  # type: ignore[arg-type]
        content=text,
        usage=RequestUsage(prompt_tokens=3, completion_tokens=5),
        cached=False,
    )


class Inner:
    """The real client: answers (or raises) in turn, and records what it was asked."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.asked: list[dict[str, object]] = []

    async def create(self, messages: object, **kwargs: object) -> CreateResult:
        self.asked.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, CreateResult)
        return answer

    async def create_stream(self, messages: object, **kwargs: object) -> AsyncGenerator[str | CreateResult, None]:
        self.asked.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, list)
        for chunk in answer:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk


class Limit:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.ranks: list[int] = []

    def __call__(self, key: str, limit: int) -> Limit:
        self.asked.append((key, limit))
        return self

    @contextlib.asynccontextmanager
    async def slot(self, rank: int = 0, on_queued: Callable[[], None] | None = None) -> AsyncIterator[None]:
        self.ranks.append(rank)
        if on_queued:
            on_queued()
        yield


def gated(
    inner: Inner, retries: int = 2, spec: dict[str, Any] = SPEC, task_retries: bool = False
) -> tuple[GatedChatCompletionClient, TaskModels, Limit, list[str]]:
    limit = Limit()
    causes: list[str] = []

    async def on_retry(cause: str) -> None:
        causes.append(cause)

    clients = SimpleNamespace(get=lambda spec, fresh: inner)
    models = TaskModels(clients, limit, 7, retries, 0.001, 4, Metrics(), on_retry, task_retries=task_retries)  # type: ignore[arg-type]
    client = load_component(spec, spec, models)
    assert isinstance(client, GatedChatCompletionClient)
    return client, models, limit, causes


def durations(models: TaskModels) -> dict[tuple[str, ...], float]:
    """How many latencies were observed, by (model, status)."""
    return {
        labels: sum(slots[:-1])
        for (name, labels), slots in models.metrics.histograms.items()
        if name == "agentq_model_request_duration_seconds"
    }


def test_a_request_is_retried_after_a_429_and_its_tokens_counted() -> None:
    inner = Inner(Status(429), result())
    client, models, limit, causes = gated(inner)
    answer = asyncio.run(client.create(MESSAGES, json_output=True, extra_create_args={"seed": 1}))
    assert answer.content == "ok"
    given = {"tools": [], "json_output": True, "extra_create_args": {"seed": 1}, "cancellation_token": None}
    assert inner.asked == [given] * 2  # what was left out, with ChatCompletionClient's defaults
    assert causes == ["rate_limited"]
    assert (models.usage.calls, models.usage.attempts) == (1, 2)
    assert (models.usage.prompt_tokens, models.usage.completion_tokens) == (3, 5)
    assert limit.asked == [(limit.asked[0][0], 4)] and limit.ranks == [7]
    assert durations(models) == {("gpt-x", "429"): 1, ("gpt-x", "200"): 1}
    tokens = {k[1]: v for k, v in models.metrics.counters.items() if k[0] == "agentq_model_tokens_total"}
    assert tokens == {("gpt-x", "prompt"): 3, ("gpt-x", "completion"): 5}
    assert models.metrics.counters[("agentq_retries_total", ("model", "rate_limited"))] == 1


def test_a_final_failure_names_the_model_and_where_it_is() -> None:
    client, models, _, causes = gated(Inner(Status(500), Status(500), Status(500)), retries=2)
    with pytest.raises(ModelError) as failed:
        asyncio.run(client.create(MESSAGES))
    assert str(failed.value) == "model 'gpt-x' at http://models.example/v1 answered 500: said 500"
    assert isinstance(failed.value.__cause__, Status)
    assert causes == ["server_error"] * 2 and models.usage.attempts == 3 and models.usage.calls == 0


def test_a_model_without_base_url_is_named_by_the_sdks_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was named by its client class ("at autogen_ext.models.openai.OpenAIChatCompletionClient")."""
    bare = {**SPEC, "config": {"model": "gpt-x", "api_key": "k"}}
    client, *_ = gated(Inner(Status(400)), spec=bare)
    with pytest.raises(
        ModelError, match=r"^model 'gpt-x' at https://api\.openai\.com/v1 \(no base_url given\) answered 400"
    ):
        asyncio.run(client.create(MESSAGES))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gw:gw-pass@gateway.example/v1")  # which the SDK reads then
    client, *_ = gated(Inner(Status(400)), spec=bare)
    with pytest.raises(
        ModelError, match=r"^model 'gpt-x' at http://gw:\*\*\*@gateway\.example/v1 \(no base_url given\)"
    ):
        asyncio.run(client.create(MESSAGES))


def test_a_password_written_in_a_models_base_url_is_never_in_its_errors() -> None:
    """`http://alice:LitPassw0rd@host/v1`, written as is (not a ${VAR}), was shown whole."""
    spec = {**SPEC, "config": {**SPEC["config"], "base_url": "http://alice:LitPassw0rd@models.example/v1"}}  # type: ignore[dict-item]
    client, *_ = gated(Inner(Status(400)), spec=spec)
    with pytest.raises(ModelError) as failed:
        asyncio.run(client.create(MESSAGES))
    assert "LitPassw0rd" not in str(failed.value) and "http://alice:***@models.example/v1" in str(failed.value)


def test_an_error_that_is_not_retried_fails_at_once() -> None:
    client, models, _, causes = gated(Inner(Status(400), result()))
    with pytest.raises(ModelError, match=r"^model 'gpt-x' at http://models.example/v1 answered 400: said 400$"):
        asyncio.run(client.create(MESSAGES))
    assert causes == [] and models.usage.attempts == 1


def test_a_stream_is_retried_until_its_first_chunk_and_counted_once_at_its_end() -> None:
    empty = [result("", finish="unknown")]  # AutoGen's result of a stream that held no chunk
    inner = Inner(Status(503), empty, ["a", "b", result("ab")])
    client, models, _, causes = gated(inner, retries=3)

    async def go() -> list[str | CreateResult]:
        return [chunk async for chunk in client.create_stream(MESSAGES, cancellation_token=None)]

    chunks = asyncio.run(go())
    assert chunks[:2] == ["a", "b"] and isinstance(chunks[2], CreateResult)
    assert causes == ["server_error", "malformed_answer"]
    assert (models.usage.calls, models.usage.attempts) == (1, 3)
    assert (models.usage.prompt_tokens, models.usage.completion_tokens) == (3, 5)
    assert durations(models) == {("gpt-x", "503"): 1, ("gpt-x", "error"): 1, ("gpt-x", "200"): 1}
    given = {"tools": [], "json_output": None, "extra_create_args": {}, "cancellation_token": None}
    assert inner.asked == [given] * 3


def test_a_stream_that_breaks_after_its_first_chunk_is_not_retried() -> None:
    client, models, _, causes = gated(Inner(["a", Status(502)], ["never"]))

    async def go() -> list[str | CreateResult]:
        return [chunk async for chunk in client.create_stream(MESSAGES)]

    with pytest.raises(ModelError, match=r"^model 'gpt-x' at http://models.example/v1 answered 502: said 502$"):
        asyncio.run(go())
    assert causes == [] and models.usage.attempts == 1 and models.usage.calls == 0


def test_an_empty_stream_ends_with_no_chunk() -> None:
    client, models, _, _ = gated(Inner([]))

    async def go() -> list[str | CreateResult]:
        return [chunk async for chunk in client.create_stream(MESSAGES)]

    assert asyncio.run(go()) == [] and models.usage.calls == 0


def test_specs_are_swapped_for_gated_ones_and_slots_kept_in_order() -> None:
    inner = Inner()
    _, models, _, _ = gated(inner)
    team = {"provider": "t.Team", "config": {"participants": [{"config": {"model_client": SPEC}}, {"x": [SPEC]}]}}
    swapped = models.swap(team, team)
    first = swapped["config"]["participants"][0]["config"]["model_client"]  # type: ignore[index]
    second = swapped["config"]["participants"][1]["x"][0]  # type: ignore[index]
    assert first["provider"] == second["provider"] == "workers.model_client.GatedChatCompletionClient"
    assert (first["config"]["slot"], second["config"]["slot"]) == (1, 2)  # slot 0: `gated`'s own
    assert first["config"]["max_concurrency"] == 4 and first["label"] == "m"
    assert models.specs[1:] == [SPEC, SPEC]


async def sdk_failure(port: int) -> BaseException:
    """What the OpenAI SDK's aiohttp client (the workers') raises for one request to `port`."""
    from openai import AsyncOpenAI, DefaultAioHttpClient

    async with DefaultAioHttpClient(timeout=10) as http:
        sdk = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, http_client=http)
        try:
            await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        except Exception as exc:
            return exc
    raise AssertionError("an answer came")


def test_a_refused_connection_is_said_as_one_and_retried_as_one() -> None:
    """The SDK raises a refused connect as APITimeoutError."""
    from producer.embedded import free_port
    from shared.retry import classify
    from workers.task_models import _status, failure_text

    exc = asyncio.run(sdk_failure(free_port()))
    assert type(exc).__name__ == "APITimeoutError"  # as the SDK names it
    assert failure_text(exc) == "could not connect: Connection refused"
    assert _status(exc) == "error"  # the latency metric's label: no timeout
    retry = classify(exc)
    assert retry is not None and retry.cause == "connection"


def test_a_connection_the_server_closes_before_answering_is_said_as_lost_and_retried_as_one() -> None:
    """The SDK raises that as APITimeoutError too: a server that reads the request and hangs up (a
    proxy dropping it, a crashed upstream)."""
    from shared.retry import classify
    from workers.task_models import failure_text

    async def hangs_up() -> BaseException:
        async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        async with await asyncio.start_server(close, "127.0.0.1", 0) as server:
            return await sdk_failure(server.sockets[0].getsockname()[1])

    exc = asyncio.run(hangs_up())
    assert failure_text(exc) == "connection lost: the server closed it before answering", repr(exc)
    retry = classify(exc)
    assert retry is not None and retry.cause == "connection"


def test_a_model_client_without_component_type_is_gated_as_one_with_it() -> None:
    """AutoGen loads a `model_client` spec that gives no `component_type`: it goes through the
    cluster-wide limit, the retries and the usage count all the same."""
    _, models, _, _ = gated(Inner())
    bare = {k: v for k, v in SPEC.items() if k != "component_type"}
    agent = {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "config": {"name": "a", "model_client": bare, "tools": [], "reflect_on_tool_use": False},
    }
    swapped = models.swap(agent, agent)
    gated_spec = swapped["config"]["model_client"]  # type: ignore[index]
    assert gated_spec["provider"] == "workers.model_client.GatedChatCompletionClient"
    assert models.specs[-1] == bare
    assert model_specs(agent) == [bare]  # the producer's checks of a task's models see it too
    assert model_specs({"config": {"other": bare}}) == []  # elsewhere a spec says what it is


def test_a_name_a_module_lacks_is_autogens_error_not_a_missing_package() -> None:
    """`from json import dumpz` fails with AutoGen's own words; only a module that is not there
    is said to be missing from the worker."""
    from workers.agent_runtime import AgentError

    def tool(imports: list[object]) -> dict[str, object]:
        return {
            "provider": "autogen_core.tools.FunctionTool",
            "component_type": "tool",
            "config": {
                "source_code": "def f() -> int:\n    return 1\n",
                "name": "f",
                "description": "d",
                "global_imports": imports,
                "has_cancellation_support": False,
            },
        }

    models = gated(Inner())[1]
    spec = tool([{"module": "json", "imports": ["dumpz"]}])
    with pytest.raises(AgentError) as wrong_name:
        load_component(spec, spec, models)
    assert "cannot import name 'dumpz' from 'json'" in str(wrong_name.value)
    assert "not installed" not in str(wrong_name.value)
    spec = tool([{"module": "agentq_no_such_module", "imports": ["x"]}])
    with pytest.raises(AgentError) as missing:
        load_component(spec, spec, models)
    assert "not installed on this worker (agentq_no_such_module)" in str(missing.value)


def test_a_models_own_max_retries_is_kept_unless_the_task_says_otherwise() -> None:
    """`max_retries: 0` on the model: one request, as AutoGen makes it; a task's `retries` rules."""
    own = {**SPEC, "config": {**SPEC["config"], "max_retries": 0}}  # type: ignore[dict-item]
    client, models, _, _ = gated(Inner(Status(500), result()), retries=2, spec=own)
    with pytest.raises(ModelError):
        asyncio.run(client.create(MESSAGES))
    assert models.usage.attempts == 1
    client, models, _, _ = gated(Inner(Status(500), result()), retries=2, spec=own, task_retries=True)
    assert asyncio.run(client.create(MESSAGES)).content == "ok" and models.usage.attempts == 2


def test_a_client_that_keeps_state_is_made_for_each_agent_an_http_one_is_shared() -> None:
    """AutoGen's ReplayChatCompletionClient answers from its script: each agent that names it gets
    its own, as in Studio, and the task closes it. An OpenAI client serves the whole process."""
    from workers.model_pool import ModelClients

    pool = ModelClients(timeout=5)
    replay = {
        "provider": "autogen_ext.models.replay.ReplayChatCompletionClient",
        "component_type": "model",
        "config": {"chat_completions": ["first", "second"]},
    }
    fresh: list[object] = []
    one, two = pool.get(replay, fresh), pool.get(replay, fresh)  # type: ignore[arg-type]
    assert one is not two and fresh == [one, two]
    assert asyncio.run(one.create(MESSAGES)).content == asyncio.run(two.create(MESSAGES)).content == "first"
    openai = {**SPEC, "config": {**SPEC["config"], "model": "gpt-4o-mini"}}  # type: ignore[dict-item]
    shared: list[object] = []
    assert pool.get(openai, shared) is pool.get(openai, shared) and shared == []  # type: ignore[arg-type]


def chunk_line(text: str, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": text}
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def streamed_by(
    tail: bytes, parts: tuple[str, str] = ("Hello partial ", "answer "), **create: Any
) -> Callable[[Any], Any]:
    """Run `client`'s stream against a server that sends two chunks, then `tail`, then closes the
    connection (no chunked framing: the body simply ends there)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        size = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(size)
        start = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
        writer.write(start + chunk_line(parts[0]) + chunk_line(parts[1]) + tail)
        await writer.drain()
        writer.close()

    async def run(make: Callable[[dict[str, Any]], Any]) -> list[object]:
        async with await asyncio.start_server(serve, "127.0.0.1", 0) as server:
            config: dict[str, Any] = {
                "model": "gpt-x",
                "api_key": "k",
                "base_url": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1",
                "model_info": {
                    "vision": False,
                    "function_calling": False,
                    "json_output": True,
                    "family": "unknown",
                    "structured_output": True,
                },
            }
            client, closing = make(config)
            try:
                return [part async for part in client.create_stream(MESSAGES, **create)]
            finally:
                await closing()

    return run


def stock(config: dict[str, Any]) -> Any:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(**config, max_retries=0)
    return client, client.close


def as_workers_load(config: dict[str, Any]) -> Any:
    from workers.model_pool import ModelClients

    pool = ModelClients(timeout=10)
    return pool.get({**SPEC, "config": config}, []), pool.close


def test_a_stream_cut_off_before_its_end_is_no_answer() -> None:
    """A server that sends a stream without chunked framing and closes the connection mid-answer:
    the body simply ends, and AutoGen took the text so far as the whole answer (its finish reason
    'unknown'), reported done and cached. As the workers load a model, the stream fails."""
    from shared.core.exceptions import MalformedAnswer

    taken = asyncio.run(streamed_by(b"")(stock))
    assert isinstance(taken[-1], CreateResult) and taken[-1].content == "Hello partial answer "  # AutoGen's own
    assert taken[-1].finish_reason == "unknown"
    with pytest.raises(MalformedAnswer, match="cut off"):
        asyncio.run(streamed_by(b"")(as_workers_load))


def test_a_structured_output_stream_cut_off_is_no_answer_either() -> None:
    """AutoGen streams structured output through the SDK's beta client, which the check did not see."""
    from pydantic import BaseModel

    from shared.core.exceptions import MalformedAnswer

    class Answer(BaseModel):
        answer: str

    with pytest.raises(MalformedAnswer, match="cut off"):
        asyncio.run(streamed_by(b"", ('{"answer": ', '"x"}'), json_output=Answer)(as_workers_load))


@pytest.mark.parametrize(
    "tail",
    [chunk_line("", "stop"), chunk_line("", "eos_token"), chunk_line("", ""), b"data: [DONE]\n\n"],
    ids=["finish reason", "one AutoGen does not know", "an empty one", "[DONE] alone"],
)
def test_a_stream_that_says_it_ended_is_the_answer(tail: bytes) -> None:
    """Off the spec as some servers are (no finish reason, or one AutoGen does not know), a stream
    that says it ended is taken as AutoGen takes it."""
    taken = asyncio.run(streamed_by(tail)(as_workers_load))
    assert asyncio.run(streamed_by(tail)(stock))[-1] == taken[-1]
    assert isinstance(taken[-1], CreateResult) and taken[-1].content == "Hello partial answer "


def test_an_answer_that_is_no_http_is_retried_and_said_as_such() -> None:
    """aiohttp raises a reply it cannot read as HTTP as a response error of status 400, which was
    taken for the server's 400: final, no retry, and aiohttp's own words."""
    from shared.retry import classify
    from workers.task_models import failure_text

    async def garbage() -> BaseException:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        async with await asyncio.start_server(answer, "127.0.0.1", 0) as server:
            return await sdk_failure(server.sockets[0].getsockname()[1])

    exc = asyncio.run(garbage())
    retry = classify(exc)
    assert retry is not None and retry.cause == "malformed_answer", repr(exc)
    assert failure_text(exc).startswith("answered with something that is not HTTP: "), failure_text(exc)


def test_a_base_url_with_a_user_and_password_is_sent_as_autogen_sends_it() -> None:
    """`http://user:pw@host/v1` failed in the workers (aiohttp refuses credentials in the URL beside
    an Authorization header) where AutoGen's own client sends them as Basic auth."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    from tests.test_sdk_wire import answer as completion
    from workers.model_pool import ModelClients

    heard: list[bytes] = []
    body = completion(stream=False).content  # a short completion, "hi"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        size = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(size)
        heard.append(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization")))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    async def both() -> list[str]:
        async with await asyncio.start_server(answer, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            config: dict[str, Any] = {
                "model": "gpt-4o",
                "api_key": "the-key",
                "base_url": f"http://proxyuser:pass%40word@127.0.0.1:{port}/v1",
            }
            texts = [str((await OpenAIChatCompletionClient(**config).create(MESSAGES)).content)]
            ours = ModelClients(timeout=10)
            texts.append(str((await ours.get({**SPEC, "config": config}, []).create(MESSAGES)).content))
            await ours.close()
            return texts

    assert asyncio.run(both()) == ["hi", "hi"]
    assert len(heard) == 2 and heard[1] == heard[0], heard  # the same header as AutoGen's own client


def test_a_timeout_a_blocking_tool_held_up_says_so() -> None:
    """A tool whose `async def` calls time.sleep holds the worker's event loop: the task's timeout
    fires only when it returns, and said "timed out after 0.2 s" of a task that took seconds."""
    import time

    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import FunctionCall
    from autogen_core.tools import FunctionTool
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from workers.agent_runtime import AgentError, run

    async def blocker() -> str:
        time.sleep(1.5)  # the mistake: a blocking call in a coroutine
        return "slept"

    call = CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id="1", name="blocker", arguments="{}")],
        usage=RequestUsage(prompt_tokens=1, completion_tokens=1),
        cached=False,
    )
    agent = AssistantAgent(
        "a",
        model_client=ReplayChatCompletionClient(
            [call, "done"],
            model_info={
                "vision": False,
                "function_calling": True,
                "json_output": False,
                "family": "unknown",
                "structured_output": False,
            },
        ),
        tools=[FunctionTool(blocker, "blocks")],
    )
    with pytest.raises(AgentError) as failed:
        asyncio.run(run(agent, "go", timeout=0.2))
    assert str(failed.value).startswith("timed out after 0.2 s, seen only after 2 s: "), str(failed.value)
    assert "blocked the worker's event loop" in str(failed.value)
