"""What the Redis broker holds, as the reconciler reads it (shared/adapters/redis/broker_view.py):
kombu's messages in a queue's priority lists and in the unacked hash, read as (task, id, args);
anything else is passed over."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis

from shared.adapters.redis.broker_view import messages, queue_length
from shared.adapters.redis.keys import UNACKED, queue_lists

pytestmark = pytest.mark.integration


def kombu_message(task: str, task_id: str, args: list[object]) -> dict[str, object]:
    body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
    return {"body": body, "headers": {"task": task, "id": task_id}, "properties": {"body_encoding": "base64"}}


def test_queued_and_unacknowledged_messages_are_read_and_counted(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = f"agentq-test-{uuid.uuid4().hex[:8]}"
    plain, urgent = queue_lists(queue)[0], queue_lists(queue)[3]
    client.rpush(plain, json.dumps(kombu_message("t.a", "1", ["r", 1])), "not json", json.dumps({"body": 5}))
    client.rpush(
        urgent, json.dumps({**kombu_message("t.b", "2", []), "properties": {}}).replace('"body": "', '"body": "x')
    )
    raw = {"body": json.dumps([["r", 2], {}, {}]), "headers": {"task": "t.c", "id": "3"}}
    client.rpush(urgent, json.dumps(raw))
    tag = uuid.uuid4().hex
    client.hset(UNACKED, tag, json.dumps([kombu_message("t.d", "4", ["r", 3]), "", queue]))
    try:
        found = list(messages(client, [queue]))
        assert ("t.a", "1", ["r", 1]) in found and ("t.c", "3", ["r", 2]) in found
        assert ("t.d", "4", ["r", 3]) in found
        assert [m for m in found if m[1] in {"1", "2", "3"}] == [("t.a", "1", ["r", 1]), ("t.c", "3", ["r", 2])]
        assert queue_length(client, queue) == 5
    finally:
        client.delete(*queue_lists(queue))
        client.hdel(UNACKED, tag)


def test_an_ack_after_the_connection_let_go_of_redis_still_reaches_it(tmp_path) -> None:
    """After a Redis restart, kombu's channel had lost its connection's parameters: the ack of a task
    that had ended failed, the message stayed unacknowledged, and it was restored and ran again."""
    import contextlib
    import time

    from producer import embedded
    from shared.adapters.celery import create_app
    from shared.adapters.redis.keys import UNACKED_INDEX
    from shared.settings import Settings

    url, proc = embedded.start_redis(tmp_path / "redis")
    try:
        client, tag = redis.Redis.from_url(url), uuid.uuid4().hex
        client.hset(UNACKED, tag, json.dumps([kombu_message("t.d", "4", []), "", "studio"]))
        client.zadd(UNACKED_INDEX, {tag: time.time()})
        app = create_app(Settings(redis_url=url))
        conn = app.connection_for_write()
        channel = conn.default_channel
        transport_client, channel.connection.client = channel.connection.client, None  # as kombu leaves it
        channel._pool = None
        channel.__dict__.pop("client", None)
        channel.qos.ack(tag)
        assert not client.hexists(UNACKED, tag) and client.zscore(UNACKED_INDEX, tag) is None
        channel.connection.client = transport_client
        with contextlib.suppress(Exception):
            conn.release()
    finally:
        embedded.stop(proc)
