"""The workers' model HTTP client (httpx over aiohttp): transport failures keep their names,
so retries are counted under the right cause and a failed task says what went wrong."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from producer.embedded import free_port
from producer.standin_llm import ThreadedStandIn
from shared.endpoints import ModelEndpoint
from shared.llm import EndpointError, chat
from shared.model_http import model_http_client


def _chat(base_url: str, timeout: float = 5.0) -> tuple[str, list[str]]:
    causes: list[str] = []

    async def go() -> str:
        async with model_http_client(timeout, 4) as http:
            result = await chat(http, ModelEndpoint(base_url, "m", None, 1), [{"role": "user", "content": "hi"}],
                                retries=1, backoff=0.01, on_retry=causes.append)
            return result.content

    try:
        return asyncio.run(go()), causes
    except EndpointError as exc:
        return f"error: {exc}", causes


def test_answers_and_json_body_round_trip() -> None:
    server = ThreadedStandIn()
    try:
        content, causes = _chat(server.url)
        assert content.startswith("[stand-in m #") and causes == []
        assert server.state.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
    finally:
        server.stop()


def test_refused_connection_is_a_connection_error() -> None:
    content, causes = _chat(f"http://127.0.0.1:{free_port()}/v1")
    assert content.startswith("error: ") and "unreachable: ConnectError" in content
    assert causes == ["connection"]


def test_server_that_hangs_up_is_a_connection_error_not_a_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        content, causes = _chat(f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
    finally:
        listener.close()
    assert "unreachable: RemoteProtocolError" in content, content
    assert causes == ["connection"]


@pytest.mark.timeout(30)
def test_slow_answer_is_a_timeout() -> None:
    server = ThreadedStandIn()
    server.state.control["delay"] = 1.0
    try:
        content, causes = _chat(server.url, timeout=0.2)
    finally:
        server.stop()
    assert "unreachable: ReadTimeout" in content, content
    assert causes == ["timeout"]
