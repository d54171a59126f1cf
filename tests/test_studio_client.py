"""Studio's client (shared/adapters/studio.py) against servers that misbehave at the HTTP level:
each ends in one StudioError that says why, in bounded time and memory, with the token masked."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable

import pytest

from shared.adapters import studio
from shared.adapters.studio import StudioClient
from shared.ports import StudioError

pytestmark = pytest.mark.integration  # a server of its own on loopback, in this process

TOKEN = "tok-secret-42"
Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _ask(answer: Answer, timeout: float = 0.5) -> tuple[StudioError, int, float]:
    """GET /version of a server that answers with `answer`: the error, the requests it got, seconds."""
    asked = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal asked
        await reader.readuntil(b"\r\n\r\n")
        asked += 1
        try:
            await answer(writer)
        finally:
            writer.close()

    async with await asyncio.start_server(serve, "127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started = time.monotonic()
        async with StudioClient(url, "me", token=TOKEN, timeout=timeout, retries=1, backoff=0.01) as client:
            with pytest.raises(StudioError) as caught:
                await client.version()
    return caught.value, asked, time.monotonic() - started


def test_an_answer_sent_a_byte_at_a_time_ends_in_bounded_time() -> None:
    """Each byte restarts the read timeout: the whole answer has a bound of its own."""

    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\n \r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    error, asked, seconds = asyncio.run(_ask(drip))
    assert "timed out" in str(error) and error.status is None, error
    assert asked == 2 and seconds < 2 * 0.5 * studio.WHOLE_ANSWER_TIMEOUTS + 2, (asked, seconds)


def test_a_token_the_server_echoes_in_a_line_aiohttp_rejects_is_masked() -> None:
    """aiohttp's parser error quotes the line it could not read."""

    async def echo(writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nX-Echo Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()

    error, _, _ = asyncio.run(_ask(echo))
    assert TOKEN not in str(error) and "***" in str(error), error


def test_an_answer_too_big_once_unpacked_is_not_read_on_nor_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studio, "MAX_ANSWER_BYTES", 1024 * 1024)
    bomb = gzip.compress(b"0" * (8 * 1024 * 1024))  # 8 MiB from 8 KiB

    async def zipped(writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        writer.write(head.encode() + bomb)
        await writer.drain()

    error, asked, _ = asyncio.run(_ask(zipped))
    assert "over 1,048,576 bytes: not read" in str(error) and not error.retryable and asked == 1, (error, asked)


def test_json_nested_too_deeply_is_no_answer_not_a_crash() -> None:
    body = b'{"status": true, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def deep(writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    error, asked, _ = asyncio.run(_ask(deep))
    assert "nested too deeply" in str(error) and asked == 2, error  # retried as an answer that is no answer


def test_a_proxy_from_the_environment_is_named_when_it_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    from producer.embedded import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def answers(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    error, asked, _ = asyncio.run(_ask(answers))
    assert asked == 0 and f"through the proxy {dead}, from HTTP_PROXY" in str(error), error


def test_no_proxy_may_name_a_host_with_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1:8081")
    assert studio._proxy_for("http://127.0.0.1:8081/api") is None
    assert studio._proxy_for("http://127.0.0.1:9000/api") == "http://proxy.example:3128"


PAGE = b"""<!DOCTYPE HTML>
<html lang="en">
    <head><meta charset="utf-8">
        <title>Error
          response</title>
    </head>
    <body><h1>Error response</h1><p>Error code: 404</p><p>Message: File not found.</p></body>
</html>
"""


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (b"401 Unauthorized", b"", "refused us: .*STUDIO_TOKEN"),  # every call of the run would be refused too
        (b"404 Not Found", b"", "no AutoGen Studio API .*without `/api`"),  # STUDIO_URL=http://host:port/api
        # another server's page (`python -m http.server`'s): named by its title, not quoted whole
        (b"404 Not Found", PAGE, "answered 404 on GET /version: an HTML page titled 'Error response'$"),
        # no title to go by: its text, without its styles and scripts, entities decoded
        (
            b"500 Internal Server Error",
            b"<html><head><title></title><style>b{color:red}</style><script>var x='<b>';</script></head>"
            b"<body><p>Error &amp; more: it&#x27;s down</p></body></html>",
            "answered 500 on GET /version: an HTML page: Error & more: it's down$",
        ),
    ],
)
def test_studio_refusing_us_ends_the_command_before_anything_is_enqueued(
    monkeypatch: pytest.MonkeyPatch, status: bytes, body: bytes, said: str
) -> None:
    """The version check's answer says every call of the run would fail: one line, nothing enqueued."""
    from producer import studio_state
    from shared.core.exceptions import ServiceUnavailable
    from shared.metrics import Metrics
    from shared.settings import Settings

    async def main() -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 " + status + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            writer.close()

        async with await asyncio.start_server(refuse, "127.0.0.1", 0) as server:
            monkeypatch.setenv("STUDIO_URL", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            with pytest.raises(ServiceUnavailable, match=said):
                await asyncio.to_thread(studio_state.studio_version, Settings(), Metrics())

    asyncio.run(main())


def test_an_answer_that_is_no_http_is_retried_and_said_as_such() -> None:
    """aiohttp raised it as a 400 the server never sent: not retried, and said as "unreachable"."""

    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    error, asked, _ = asyncio.run(_ask(garbage))
    assert asked == 2 and error.retryable and error.status is None, (asked, error)
    assert str(error).startswith("Studio answered GET /version with something that is not HTTP: "), error


def test_a_gallery_write_answers_the_row_as_studio_keeps_it_without_reading_its_components(studio_url: str) -> None:
    """A real Studio: the saved row's id and timestamp are the ones a read of the entry gives (what
    the next sync's drift check compares), its components left unread (they are what was sent)."""
    from shared.adapters.studio import StudioClient

    config = {
        "id": "agentq-answer-test",
        "name": "answer-test",
        "metadata": {"author": "test", "version": "1"},
        "components": {"agents": [{"provider": "x", "label": f"a{i}", "config": {}} for i in range(50)]},
    }

    async def go() -> tuple[dict[str, object], dict[str, object], dict[str, object] | None]:
        async with StudioClient(studio_url, "answer-test-user") as client:
            created = await client.save_gallery(config)
            updated = await client.save_gallery({**config, "name": "answer-test-2"}, int(str(created["id"])))
            return created, updated, await client.get_gallery(int(str(created["id"])))

    created, updated, read = asyncio.run(go())
    assert read is not None and updated["id"] == created["id"] == read["id"]
    assert updated["updated_at"] == read["updated_at"] and read["config"]["components"] == config["components"]  # type: ignore[index]
    assert "components" not in updated["config"] and updated["config"]["name"] == "answer-test-2"  # type: ignore[index,operator]
