"""Kombu's Redis transport, with one fault made survivable.

When Redis goes away while messages are unacknowledged, kombu closes the channel after the
connection and tries to put those messages back through a connection that no longer exists
(AttributeError on `conninfo.hostname`, kombu 5.7). Celery calls that an unrecoverable error and
the worker stops consuming for good, though Redis comes back. Here the failed restore leaves the
messages where they are, in Redis's unacked hash: the producer's watchdog (producer/recovery.py)
or the visibility timeout puts them back, and the worker reconnects as it would otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)
        except (AttributeError, RedisConnectionError, OSError) as exc:
            assert self._delivered is not None
            log.warning(
                "broker gone while %d message(s) were unacknowledged; they stay in Redis for the "
                "watchdog or the visibility timeout to restore (%s)",
                len(self._delivered),
                exc,
            )
            self._delivered.clear()


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
