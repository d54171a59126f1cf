"""What the Redis broker holds: the Celery messages in its queue lists and those delivered but not
yet acknowledged (kombu's `unacked` hash), read as (task name, id, args). The reconciler
(shared/core/reconcile.py) compares them with the run state to find work nobody carries.

kombu stores a message as JSON with its body base64-encoded (Celery's protocol 2: [args, kwargs,
embed]); a priority p > 0 lives in the list `<queue>\\x06\\x16<p>` (kombu's priority steps).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from itertools import chain

import redis

from shared.adapters.redis.keys import UNACKED, queue_lists


def _decode(raw: str | bytes) -> tuple[str, str, list[object]] | None:
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # an unacked entry: [message, exchange, routing key]
            message = message[0]
        headers = message.get("headers") or {}
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(headers.get("task", "")), str(headers.get("id", "")), list(args)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # not one of ours (or not Celery's): carries nothing we look for


def messages(client: redis.Redis, queues: list[str]) -> Iterator[tuple[str, str, list[object]]]:
    """Every message queued on `queues` or delivered and unacknowledged: (task name, id, args)."""
    for raw in chain.from_iterable(_held(client, queues)):
        decoded = _decode(raw)
        if decoded is not None:
            yield decoded


def _held(client: redis.Redis, queues: list[str]) -> list[list[str | bytes]]:
    """What the queues' lists hold, then the unacked hash's values, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in _lists(queues):
        pipe.lrange(name, 0, -1)
    pipe.hvals(UNACKED)
    held: list[list[str | bytes]] = pipe.execute()
    return held


def _lists(queues: list[str]) -> list[str]:
    """The lists of `queues`, one for each priority step."""
    return [name for queue in queues for name in queue_lists(queue)]


def queue_length(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue with priorities: the sum of its lists."""
    pipe = client.pipeline(transaction=False)
    for name in queue_lists(queue):
        pipe.llen(name)
    return int(sum(pipe.execute()))
