"""Chat requests sent as AutoGen built them.

AutoGen's OpenAI clients build `messages` and `tools` as plain JSON already, yet the openai SDK
walks them against its typed-dict unions before sending: about 0.3 ms of CPU per request here, a
sixth of a worker's CPU per workflow task (benchmarks/bench_workflow.py). Plain JSON goes in
`extra_body` instead, which the SDK merges into the body after that walk, over an empty
placeholder that keeps each key in its place: the bytes on the wire are the same
(tests/test_sdk_wire.py pins them). Anything else (a pydantic model, a generator) stays on the
SDK's typed path. LiteLLM and Hermes Agent bypass the same walk the same way.

The rest of the body (model, stream, temperature and the like) is scalars, which the SDK's walk
returns as they are, yet the walk of its ~40 typed fields costs another 0.1 ms a request
(benchmarks/bench_task_cpu.py). So the first request of each shape (which keys, streamed or not,
which timeout) goes the SDK's whole way and its call to `post` is recorded: the key order of the
body and the request options the SDK added. A later request of that shape whose fields are all
scalars is posted the same way without the walk.

Every answer to a chat request passes through the same hook, which checks it is one: a 200 whose
body is an HTML page or has no choices is a MalformedAnswer, retried as a 5xx is, where AutoGen
would fail with an AttributeError or IndexError naming nothing.

Two more of the SDK's per-request costs, kept to what they compute:
- An answer (or streamed chunk) is built by the SDK's lenient `construct`, a Python walk of every
  field: 80 us for a short completion, where pydantic's own validation builds the equal model in
  7 us. A body that validates strictly is built so (the same model: strict validation coerces
  nothing); one that does not (an OpenAI-compatible server off the spec) goes the SDK's way.
- The request's URL is merged from the base URL and the path, parsing the host, on every request;
  the chat path's is kept while the base URL stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from openai import AsyncOpenAI, NotGiven, Omit
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ValidationError

from shared.core.exceptions import MalformedAnswer

if TYPE_CHECKING:
    from httpx2 import URL, Response

R = TypeVar("R")
BULK = ("messages", "tools")
OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")  # create's arguments that are not body fields
OWN_OPTIONS = ("extra_headers", "extra_query")  # a request with these is not posted as a recorded one
_SCALARS = (str, int, float, bool, type(None))


def is_plain_json(value: object) -> bool:
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
# what the SDK's create adds to the options of a request with no headers or query of its own; a
# recorded call with anything else is not reused (a newer SDK's new option only turns this off)
REUSABLE_OPTIONS = frozenset({"extra_json", "timeout", "security"})
NO_TIMEOUT = ("no timeout",)  # a timeout not given (AutoGen gives one when its config has one)


@dataclass(frozen=True)
class Shape:
    """How the SDK posted a request of one shape: its body's key order, and the rest of its call
    to `post` but the extra body."""

    order: tuple[str, ...]
    post: dict[str, object]
    options: dict[str, object]

    @classmethod
    def of(cls, call: Mapping[str, object], body: dict[str, object], options: dict[str, object]) -> Shape:
        rest, kept = dict(call), dict(options)
        del rest["body"], rest["options"]
        kept.pop("extra_json", None)  # each request's own
        return cls(tuple(body), rest, kept)


ShapeKey = tuple[frozenset[str], bool, object]


def shape_key(keys: Iterable[str], stream: object, timeout: object) -> ShapeKey | None:
    """Which keys, streamed or not, which timeout; None when the timeout is not a plain number."""
    if isinstance(timeout, NotGiven):
        timeout = NO_TIMEOUT
    if timeout is not NO_TIMEOUT and not isinstance(timeout, (int, float, type(None))):
        return None
    return frozenset(keys), bool(stream), timeout


def reusable_parts(call: Mapping[str, object]) -> tuple[dict[str, object], dict[str, object]] | None:
    """The body and options of a call to `post`, when it could be posted again as it was (no
    options of its own)."""
    body, options = call.get("body"), call.get("options")
    if isinstance(body, dict) and isinstance(options, dict) and set(options) <= REUSABLE_OPTIONS:
        return body, options
    return None


def body_fields(kwargs: Mapping[str, object]) -> dict[str, object] | None:
    """The body fields of a call to create (what the SDK leaves out of the body, as AutoGen's
    tools=NOT_GIVEN, does not count); None when it has headers or a query of its own."""
    if any(kwargs.get(k) is not None for k in OWN_OPTIONS):
        return None
    return {k: v for k, v in kwargs.items() if k not in OPTIONS and not isinstance(v, (NotGiven, Omit))}


class AsBuiltCompletions(AsyncCompletions):
    def __init__(self, client: AsyncOpenAI) -> None:
        super().__init__(client)
        self._shapes: dict[ShapeKey, Shape] = {}
        self._sdk_post: Callable[..., Awaitable[object]] = self._post
        self._post = self._checked_post  # the SDK's resources call their client's post through this attribute

    # Any: it stands in for the SDK's overloaded `post`, whose answer's type is the call's cast_to
    async def _checked_post(self, path: str, **call: object) -> Any:
        """The SDK's post, recording the first call of each shape, and checking a chat answer."""
        if path == PATH:
            self._record(call)
        try:
            answer = await self._sdk_post(path, **call)
        except json.JSONDecodeError as exc:  # a JSON body cut short
            raise MalformedAnswer(f"answered 200 with JSON that does not parse: {exc.msg} (char {exc.pos})") from exc
        if path == PATH and not call.get("stream"):
            check_answer(answer)
        elif path == PATH:
            return Finished(answer)
        return answer

    def _record(self, call: Mapping[str, object]) -> None:
        parts = reusable_parts(call)
        if parts is None:
            return
        key = shape_key(parts[0], call.get("stream"), parts[1].get("timeout", NO_TIMEOUT))
        if key is not None and key not in self._shapes:
            self._shapes[key] = Shape.of(call, *parts)

    # Any: the SDK's create is overloaded on `stream`; its arguments and answer pass through as they are
    async def create(self, **kwargs: Any) -> Any:
        moved = movable(kwargs)
        if not moved:
            return await super().create(**kwargs)
        # the caller's own extra_body still has the last word, as it has on the typed path
        kwargs["extra_body"] = extra = {**moved, **(kwargs.get("extra_body") or {})}
        kwargs.update(dict.fromkeys(moved, []))
        again = self._as_recorded(kwargs, moved, extra)
        if again is not None:
            return await self._checked_post(PATH, **again)
        return await super().create(**kwargs)

    def _as_recorded(
        self, kwargs: Mapping[str, object], moved: Mapping[str, object], extra: Mapping[str, object]
    ) -> dict[str, object] | None:
        """The call to `post` that a request of a recorded shape whose fields are all scalars (but
        the moved ones) makes without the SDK's walk; None for any other request."""
        fields = body_fields(kwargs)
        if fields is None:
            return None
        key = shape_key(fields, fields.get("stream"), kwargs.get("timeout", NO_TIMEOUT))
        shape = self._shapes.get(key) if key is not None else None
        if shape is None or not all_scalars(fields, but=moved):
            return None
        body = {k: fields[k] for k in shape.order}
        return {**shape.post, "options": {**shape.options, "extra_json": extra}, "body": body}


def movable(kwargs: Mapping[str, object]) -> dict[str, object]:
    """The conversation and the tools, when they are plain JSON: what goes in the extra body."""
    return {k: kwargs[k] for k in BULK if isinstance(kwargs.get(k), list) and is_plain_json(kwargs[k])}


def all_scalars(fields: Mapping[str, object], but: Mapping[str, object]) -> bool:
    return all(k in but or isinstance(v, _SCALARS) for k, v in fields.items())


def check_answer(answer: object) -> None:
    """A chat completion with a choice, or MalformedAnswer: AutoGen would fail on it with an
    AttributeError or IndexError that says nothing of the endpoint."""
    if not isinstance(answer, ChatCompletion):  # the SDK hands back the text of a body that is not JSON
        text = answer if isinstance(answer, str) else type(answer).__name__
        raise MalformedAnswer(f"answered 200 with something that is not a chat completion: {text[:120]!r}")
    if not answer.choices:
        raise MalformedAnswer("answered 200 with a chat completion without choices")


class Finished:
    """A streamed answer, which must end as OpenAI's streams do: with `data: [DONE]`, or at least a
    chunk that gives its finish reason. A server that closed the connection before either (a body
    read to its close: no chunked framing says it was cut) would otherwise hand AutoGen the text so
    far as the whole answer, to be reported done and cached. A stream of no chunk at all is left to
    the caller (workers/model_client.py: no answer, retried)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._chunks = 0
        self._finished = False
        events = getattr(stream, "_iter_events", None)  # the SDK's server-sent events, [DONE] among them
        if callable(events):
            stream._iter_events = lambda: self._seen(events())

    async def _seen(self, events: Any) -> Any:
        async for event in events:
            self._finished = self._finished or str(getattr(event, "data", "")).startswith("[DONE]")
            yield event

    def __aiter__(self) -> Finished:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            if self._chunks and not self._finished:
                raise MalformedAnswer(
                    "answered a stream that ended before its end ([DONE], or a chunk's finish reason): cut off"
                ) from None
            raise
        self._chunks += 1
        self._finished = self._finished or any(
            c.finish_reason is not None for c in getattr(chunk, "choices", None) or ()
        )
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


VALIDATED = (ChatCompletion, ChatCompletionChunk)


def strictly_built(data: object, cast_to: object) -> BaseModel | None:
    """A chat answer or chunk built by pydantic's strict validation (no coercion the SDK would not
    make); None for any other type, or a body off the spec."""
    for model in VALIDATED:
        if model is cast_to and isinstance(data, dict):
            return _strictly(model, data)
    return None


def _strictly(model: type[BaseModel], data: dict[str, object]) -> BaseModel | None:
    try:
        return model.model_validate(data, strict=True)
    except ValidationError:
        return None  # off the spec: the SDK keeps what it can of it, as it always did


def _build_answers_by_validation(sdk: AsyncOpenAI) -> None:
    lenient = sdk._process_response_data

    def process(*, data: object, cast_to: type[R], response: Response) -> R:
        built = strictly_built(data, cast_to)
        return cast(R, built) if built is not None else lenient(data=data, cast_to=cast_to, response=response)

    sdk._process_response_data = process  # type: ignore[method-assign]


def _keep_chat_url(sdk: AsyncOpenAI) -> None:
    merge = sdk._prepare_url
    kept: dict[str, tuple[URL, URL]] = {}  # path -> (the base URL it was merged with, the URL)

    def prepare_url(url: str) -> URL:
        if url != PATH:
            return merge(url)
        base = sdk.base_url
        hit = kept.get(url)
        if hit is None or hit[0] is not base:  # a client whose base URL was set anew merges again
            hit = kept[url] = (base, merge(url))
        return hit[1]

    sdk._prepare_url = prepare_url  # type: ignore[method-assign]


def send_as_built(model_client: object) -> None:
    """Give an AutoGen OpenAI (or Azure OpenAI) chat client's SDK client the as-built path; any
    other client is left as it is."""
    sdk = getattr(model_client, "_client", None)  # AutoGen's BaseOpenAIChatCompletionClient keeps it there
    if isinstance(sdk, AsyncOpenAI):
        sdk.chat.completions = AsBuiltCompletions(sdk)  # type: ignore[misc]  # a cached_property: this client's own
        # AutoGen streams structured output through the beta client's own completions: checked alike
        sdk.beta.chat.completions = AsBuiltCompletions(sdk)  # type: ignore[misc]
        _build_answers_by_validation(sdk)
        _keep_chat_url(sdk)
