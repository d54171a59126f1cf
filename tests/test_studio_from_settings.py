"""The one way a Studio client is set up from settings, by the producer (its settings' Studio) and by
a worker (the run's Studio and user, its own concurrency)."""

from __future__ import annotations

import asyncio

import pytest

from producer import studio_state
from shared.adapters.studio import StudioClient
from shared.metrics import Metrics
from shared.settings import Settings


def test_a_client_takes_its_token_timeout_and_retries_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_TOKEN", "s3cret")
    monkeypatch.setenv("STUDIO_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("STUDIO_RETRIES", "2")
    monkeypatch.setenv("STUDIO_BACKOFF_SECONDS", "0.25")
    settings, metrics = Settings(), Metrics()
    client = StudioClient.from_settings(settings, "http://studio:8081/", "run-user", max_connections=3, metrics=metrics)
    assert (client.user_id, client.retries, client.backoff, client.metrics) == ("run-user", 2, 0.25, metrics)
    assert client._base == "http://studio:8081/api" and client._headers["Authorization"] == "Bearer s3cret"
    assert client._timeout.sock_read == client._timeout.connect == 7.0 and client._max_connections == 3
    asyncio.run(client.__aexit__(None, None, None))


def test_the_producers_client_is_its_settings_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_TOKEN", raising=False)
    monkeypatch.setenv("STUDIO_URL", "http://elsewhere:9000")
    monkeypatch.setenv("STUDIO_USER_ID", "me@example.com")
    client = studio_state.client(Settings())
    assert isinstance(client, StudioClient) and client.user_id == "me@example.com"
    assert client._base == "http://elsewhere:9000/api" and "Authorization" not in client._headers
    asyncio.run(client.__aexit__(None, None, None))
