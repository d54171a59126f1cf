"""Kombu's Redis transport, with one fault made survivable.

When Redis goes away while messages are unacknowledged, kombu closes the channel after the
connection and then uses a connection that no longer exists (AttributeError on
`conninfo.hostname` or `connection.client`, kombu 5.x): to put those messages back, and to
acknowledge a task (late acks) that ended meanwhile. Celery calls that an unrecoverable error and
the worker stops consuming for good, though Redis comes back. Here the failed restore or ack
leaves the message where it is, in Redis's unacked hash: once the worker says it connected again
(its heartbeat), shared/requeue.py puts back what nothing runs (its task is idempotent), and the
worker reconnects as it would otherwise. An ack is first sent again on a connection of its own:
Redis may be back already, and a message restored after its task ended would run again.
"""

from __future__ import annotations

import logging

import redis
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: redis.Redis | None = None) -> None:
        try:
            super().restore_unacked(client)  # type: ignore[no-untyped-call]  # kombu's QoS is unannotated
        except (AttributeError, RedisConnectionError, OSError) as exc:
            assert self._delivered is not None
            log.warning(
                "broker gone while %d message(s) were unacknowledged; they stay in Redis for the "
                "watchdog or the visibility timeout to restore (%s)",
                len(self._delivered),
                exc,
            )
            self._delivered.clear()

    def ack(self, delivery_tag: str) -> None:  # kombu's Redis transport tags a delivery with a UUID
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]  # kombu's QoS is unannotated
        except (AttributeError, RedisConnectionError, OSError) as exc:
            self._quick_ack(delivery_tag)  # this channel is done with it
            if not self._ack_anew(delivery_tag):
                log.warning("broker gone before a message was acknowledged; it stays in Redis to be restored (%s)", exc)

    def _ack_anew(self, delivery_tag: str) -> bool:
        """The ack sent on a connection of its own: the channel's went with a lost connection,
        though Redis may be back (left unacked, the message would be restored and run again)."""
        params = getattr(self.channel, "kept_params", None)
        if params is None:
            return False
        client = redis.Redis(connection_pool=redis.ConnectionPool(**params))
        try:
            self._remove_from_indices(delivery_tag, pipe=client.pipeline()).execute()  # type: ignore[no-untyped-call]
            return True
        except (RedisConnectionError, OSError):
            return False
        finally:
            client.close()


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu is unannotated
        self.kept_params = self._connparams()  # type: ignore[no-untyped-call]  # Redis, once the connection lets go


class Transport(kombu_redis.Transport):
    Channel = Channel
