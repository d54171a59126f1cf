"""The httpx client workers use for model endpoints: httpx's API over an aiohttp transport.

httpcore's pool scans every connection for every queued request, so with the dozens of
concurrent requests a worker keeps in flight it cost ~2 ms of CPU per request; aiohttp's pool
costs under 1 ms (OpenAI's Python SDK offers the same transport for the same reason).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _network_error(exc: httpx.ConnectTimeout, request: httpx.Request | None = None) -> httpx.TransportError:
    """httpx-aiohttp maps every aiohttp connection error to ConnectTimeout; keep timeouts as
    timeouts and report the rest as what they are (retries and error messages name the cause)."""
    cause = exc.__cause__
    if isinstance(cause, asyncio.TimeoutError):
        return exc
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(cause) or "server disconnected", request=request)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(cause), request=request)
    return httpx.ReadError(str(cause) if cause else str(exc), request=request)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx.ConnectTimeout as exc:
            raise _network_error(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self.inner.aclose()


class ModelTransport(AiohttpTransport):  # type: ignore[misc]
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            raise _network_error(exc, request) from exc.__cause__
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Stream(response.stream)
        return response


def model_http_client(timeout: float, max_connections: int, verify: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    context = verify or ssl.create_default_context()
    # HTTPS_PROXY / NO_PROXY apply as with plain httpx; aiohttp reads them on every request
    # (~0.6 ms), so only when the environment sets a proxy at all
    trust_env = bool(urllib.request.getproxies())

    def session() -> aiohttp.ClientSession:  # created on first use, inside the running loop
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_connections, ssl=context), trust_env=trust_env)

    return httpx.AsyncClient(timeout=timeout, transport=ModelTransport(verify=context, client=session))
