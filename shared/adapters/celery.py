"""Celery: the app's configuration, and the Dispatcher (shared/ports.py) that publishes work on it.

The app: JSON only, late acks with prefetch 1, a broker with priorities, and the
threads pool: every task's work is I/O on the process's one event loop (workers/task_base.py),
so a thread per message in flight costs little and a released workflow task never waits for a
free process. Run one worker per core for CPU (`celery -A workers worker -c 32` on each).

Two queues: `studio` (sync batches, waves, gallery writes) and `models` (workflow tasks). A worker
started without `-Q` takes both; `celery -A workers worker -Q models` is a model-only worker.

Any Celery setting can be changed without editing code: CELERY_CONFIG_MODULE names a module
whose lower-case attributes are Celery settings (`worker_prefetch_multiplier = 4`). Only the
serialization settings cannot be changed: messages and results are JSON, never pickle.

The broker is REDIS_URL's Redis, or BROKER_URL's RabbitMQ (or another Redis). Run state, Celery's
results (chord counters), the cache and the model limits are always in REDIS_URL's Redis
(`app.conf.result_backend`). On RabbitMQ the queues are classic queues with `x-max-priority` 9,
not quorum queues: RabbitMQ 3.x quorum queues ignore message priorities (4.x knows two levels),
and "critical work first" needs them; a quorum queue would survive the loss of a broker node,
which a classic queue on one node does not. Declare quorum queues through CELERY_CONFIG_MODULE
(`task_queues`) if that matters more to you than priorities.

Publishing: sync work goes as one chord per dependency group, each message constant-size; the
chord's body starts the next wave, reading the plan from Redis by run id, so no message embeds the
rest of the graph (a chain of chords grows with depth squared). Workflow tasks go as the tasks one
completion released, as a group. Priorities are given Redis's way everywhere (0 is served first, 9
last; a message without one counts as 0) and turned into the broker's here, in `broker_priority`,
the one place that knows that RabbitMQ serves the highest number first.

What the broker holds, for the producer's watchdog (producer/recovery.py): on the Redis broker,
the messages in its queue lists and kombu's `unacked` hash, and kombu's own restore of a lost
consumer's unacknowledged messages (RabbitMQ gives those back itself).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import kombu.exceptions
import redis
from celery import Celery, chord, group
from kombu.entity import Exchange, Queue
from kombu.utils.url import url_to_parts

from shared.adapters.redis.broker_view import messages, queue_length
from shared.adapters.redis.conn import (
    CONNECT_TIMEOUT,
    HEALTH_CHECK_SECONDS,
    KEEPALIVE,
    SOCKET_TIMEOUT,
    sync_client,
)
from shared.core.exceptions import BrokerUnavailable, InvalidInput
from shared.core.reconcile import carried_by
from shared.core.secrets import shown_url
from shared.core.task_names import MODELS_QUEUE, STUDIO_QUEUE, TaskName
from shared.settings import Settings, load_settings

MAX_PRIORITY = 9  # message priorities 0..9 on both brokers (Redis: 0 is served first; RabbitMQ: 9)
BROKER_HEARTBEAT = 10.0  # seconds: RabbitMQ closes a silent consumer's connection (and requeues) within ~2 of these
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# what reading the broker raises when it is out of reach (a socket's, kombu's)
BROKER_ERRORS: tuple[type[Exception], ...] = (OSError, kombu.exceptions.OperationalError)
NO_REDIS = (
    "REDIS_URL is not set: a worker, the exporter and `celery -A workers` need the Redis of the producers "
    "they serve (there is no default)"
)


def require_redis(settings: Settings) -> None:
    """A process that serves producers (a worker, the exporter, a `celery` command) names their Redis:
    it never falls back to whatever answers on 127.0.0.1:6379."""
    if not settings.redis_url:
        raise InvalidInput(NO_REDIS)


ROUTES = {
    name: {"queue": STUDIO_QUEUE}
    for name in (
        TaskName.SYNC_BATCH,
        TaskName.START_RUN,
        TaskName.WAVE_DONE,
        TaskName.FINALIZE,
        TaskName.NOOP_BATCH,
        TaskName.NOOP,
    )
}
ROUTES |= {name: {"queue": MODELS_QUEUE} for name in (TaskName.RUN_TASKS, TaskName.LOAD_COMPONENT)}
# never overridden: a pickle message would run code on the worker
SECURE = {
    "task_serializer": "json",
    "result_serializer": "json",
    "event_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
}
log = logging.getLogger(__name__)
exporter_log = logging.getLogger("agentq.exporter")  # what the exporter reads through here says so under its name


def user_config() -> dict[str, Any]:
    """Celery settings from the module named by CELERY_CONFIG_MODULE, if any."""
    name = os.environ.get("CELERY_CONFIG_MODULE")
    if not name:
        return {}
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # whatever importing it raises: said in one line, naming the variable
        raise InvalidInput(f"CELERY_CONFIG_MODULE={name!r}: cannot import it: {type(exc).__name__}: {exc}") from None
    config = {k: v for k, v in vars(module).items() if k.islower() and not k.startswith("_")}
    for key in SECURE.keys() & config.keys():
        if config[key] != SECURE[key]:
            log.warning("%s from %s ignored: messages and results stay JSON-only", key, name)
    return config


def is_redis_url(url: str | None) -> bool:
    """Whether a broker URL names Redis (kombu's Redis transport) rather than RabbitMQ."""
    return (url_to_parts(url).scheme if url else "redis") in ("redis", "rediss", "unix", "redis+socket")


def is_redis_broker(app: Celery) -> bool:
    """Whether `app`'s messages travel through Redis. Only then are unacknowledged messages in
    kombu's `unacked` hash and queues in Redis lists (`queue`, `queue\\x06\\x16<p>`); on RabbitMQ the
    broker itself requeues a lost consumer's messages and counts its queues."""
    return is_redis_url(app.conf.broker_url)


def _broker_settings(settings: Settings, broker: str) -> dict[str, Any]:
    """What differs between the two brokers: queues, priorities and how a dead peer is noticed."""
    if not is_redis_url(broker):
        priority = {"x-max-priority": MAX_PRIORITY}
        return dict(
            # each queue bound to an exchange of its own name (not both to the default queue's)
            task_queues=[
                Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=priority)  # type: ignore[no-untyped-call]  # kombu's entities are unannotated
                for name in (STUDIO_QUEUE, MODELS_QUEUE)
            ],
            task_queue_max_priority=MAX_PRIORITY,
            # a message published without a priority is served first, as it is on Redis (the Dispatcher
            # gives every message one; these cover the rest: a route's priority is taken when a call
            # gives none, the task's default when the task is registered in the publishing process)
            task_routes={name: {**route, "priority": MAX_PRIORITY} for name, route in ROUTES.items()},
            task_default_priority=MAX_PRIORITY,
            # a consumer whose host is gone is noticed within ~2 heartbeats; RabbitMQ then returns its
            # unacknowledged messages to their queues (late acks)
            broker_heartbeat=BROKER_HEARTBEAT,
            # a publish returns once RabbitMQ has the message: a broker that fails meanwhile loses nothing
            broker_transport_options={"confirm_publish": True},
        )
    return dict(
        broker_transport="shared.adapters.redis.broker:Transport",  # kombu's Redis transport, surviving Redis restarts
        task_queues=[Queue(STUDIO_QUEUE), Queue(MODELS_QUEUE)],  # type: ignore[no-untyped-call]  # kombu's Queue is unannotated
        # Without this the Redis transport ignores message priorities.
        broker_transport_options={
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            "visibility_timeout": settings.visibility_timeout_seconds,
            # a dead peer (a lost host, a partition) is noticed in seconds, not after TCP's minutes
            # (kombu #1785: a socket timeout keeps a consumer from hanging on a dead connection)
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_keepalive": True,
            "socket_keepalive_options": KEEPALIVE,
            "health_check_interval": HEALTH_CHECK_SECONDS,
        },
    )


def create_app(settings: Settings | None = None, include: Sequence[str] = ()) -> Celery:
    """The app, for the workers (`include`: the modules defining its tasks) and for publishing."""
    settings = settings or load_settings()  # checked: a bad value is one line, its secrets masked
    url = settings.redis_url or DEFAULT_REDIS_URL  # only where nothing connects (an import): see require_redis
    user = user_config()
    broker = user.get("broker_url") or settings.broker_url or url
    app = Celery("agentq", broker=broker, backend=url, include=list(include))
    defaults: dict[str, Any] = dict(
        task_default_queue=STUDIO_QUEUE,
        task_routes=ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # After a lost broker connection Celery lowers the prefetch count and raises it again from the
        # callback of each acknowledgement: with the threads pool that is the pool thread, which then
        # sends basic.qos and waits for its answer on the consumer's connection while the worker's own
        # thread reads that socket (py-amqp is not thread safe). The frames interleave, that thread
        # blocks mid-frame and sends no heartbeats, and RabbitMQ drops the connection again ~30 s after
        # the reconnect, handing its messages back a second time. Without the reduction the worker
        # takes its full prefetch at once; a message beyond its free threads waits for one.
        worker_enable_prefetch_count_reduction=False,
        result_expires=settings.run_ttl_seconds,
        # the result backend (chord counters) rides out an outage as every other Redis client does
        result_backend_always_retry=True,
        result_backend_max_sleep_between_retries_ms=2000,
        result_backend_max_retries=max(1, int(settings.redis_outage_seconds)),
        redis_socket_timeout=SOCKET_TIMEOUT,
        redis_socket_connect_timeout=CONNECT_TIMEOUT,
        redis_socket_keepalive=True,
        redis_retry_on_timeout=True,
        redis_backend_health_check_interval=HEALTH_CHECK_SECONDS,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker for as long as it takes
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    defaults |= _broker_settings(settings, broker)
    app.conf.update({**defaults, **user, **SECURE})
    return app


def broker_priority(app: Celery, priority: int | None) -> int | None:
    """A Redis message priority (0 first, None as 0) as `app`'s broker takes it: as it is on Redis,
    reversed on RabbitMQ (9 first), so critical work goes first on both. On RabbitMQ every message
    gets one: a message without a priority would be served last there."""
    if is_redis_broker(app):
        return priority
    return MAX_PRIORITY - min(MAX_PRIORITY, max(0, priority or 0))


class CeleryDispatcher:
    """The Dispatcher port on a Celery app: starts runs and waves, publishes released workflow
    tasks, sends lost work again, and says what the broker holds."""

    def __init__(self, app: Celery, broker_outage: float = 0.0) -> None:
        """`broker_outage`: seconds without the Redis broker that its reads ride out (conn.py)."""
        self.app = app
        self.broker_outage = broker_outage
        self._broker: redis.Redis | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryDispatcher:
        """The producer's: its reads of the broker ride out an outage as its store's do when the
        broker is that Redis (REDIS_URL); another broker is read once."""
        app = create_app(settings)
        same = app.conf.broker_url == app.conf.result_backend
        return cls(app, settings.redis_outage_seconds if same else 0.0)

    # ---- publishing ---------------------------------------------------------------------------
    @contextmanager
    def _publishing(self) -> Iterator[None]:
        """A publish (or a requeue) that found no broker (after Celery's own publish retries) is
        BrokerUnavailable, a failure the CLI names in one line and the watchdog rides out, not kombu's error."""
        from kombu.exceptions import OperationalError

        try:
            yield
        except OperationalError as exc:
            url = shown_url(str(self.app.conf.broker_url))
            raise BrokerUnavailable(f"the broker at {url} is unreachable: {exc}") from exc

    def start_run(self, run_id: str, queue: str | None = None) -> None:
        """From the producer: one small message; a worker publishes the first chord (so the
        producer never holds chord results or a result subscription)."""
        with self._publishing():
            self.app.send_task(
                TaskName.START_RUN, args=(run_id,), priority=broker_priority(self.app, None), queue=queue
            )

    def start_wave(
        self,
        run_id: str,
        wave: int,
        batches: int,
        task: str = TaskName.SYNC_BATCH,
        priorities: list[int] | None = None,
    ) -> None:
        """`priorities`: a Redis message priority per batch (0 is served first)."""
        app = self.app
        header = [
            app.signature(
                task, args=(run_id, wave, i), priority=broker_priority(app, priorities[i] if priorities else None)
            )
            for i in range(batches)
        ]
        with self._publishing():
            chord(header)(app.signature(TaskName.WAVE_DONE, args=(run_id, wave), priority=broker_priority(app, None)))

    def start_finalize(self, run_id: str) -> None:
        with self._publishing():
            self.app.send_task(TaskName.FINALIZE, args=(run_id,), priority=broker_priority(self.app, None))

    def publish_tasks(self, run_id: str, groups: list[list[tuple[str, int, int]]], batch_size: int) -> None:
        """Publish released workflow tasks, (task id, rank, Redis priority) each, as one Celery group.
        Tasks that one completion released stay in one message (up to `batch_size`), so they reach the
        model limits together and the higher-ranked goes first; small groups share messages. Each
        message is constant-size (ids only: the rest is in Redis), highest rank first."""
        app = self.app
        batches: list[list[tuple[str, int, int]]] = [[]]
        for released in groups:
            for i in range(0, len(released), batch_size):
                part = released[i : i + batch_size]
                if len(batches[-1]) + len(part) > batch_size:
                    batches.append([])
                batches[-1].extend(part)
        signatures = [
            app.signature(
                TaskName.RUN_TASKS,
                args=(run_id, [tid for tid, _, _ in sorted(batch, key=lambda x: (-x[1], x[0]))]),
                priority=broker_priority(app, min(p for _, _, p in batch)),
            )
            for batch in batches
            if batch
        ]
        with self._publishing():
            if len(signatures) == 1:
                signatures[0].apply_async()
            elif signatures:
                group(signatures).apply_async()

    def send_again(self, task: str, args: Sequence[Any], queue: str | None = None) -> None:
        """Publish a message again, with no priority: the routes' default serves late work first on
        either broker."""
        with self._publishing():
            self.app.send_task(task, args=tuple(args), queue=queue)

    # ---- what the broker holds ------------------------------------------------------------------
    @property
    def restores_unacked(self) -> bool:
        """Whether a lost consumer's unacknowledged messages wait in the broker for us to put back
        (kombu's Redis transport); RabbitMQ gives them back itself."""
        return is_redis_broker(self.app)

    def _broker_client(self) -> redis.Redis:
        if self._broker is None:
            self._broker = sync_client(self.app.conf.broker_url, self.broker_outage)
        return self._broker

    def in_flight(self, queues: Sequence[str]) -> list[tuple[str, str, list[Any]]] | None:
        """Every message queued on `queues` or delivered and unacknowledged: (task name, id, args);
        None when the broker cannot be looked into so (RabbitMQ)."""
        if not self.restores_unacked:
            return None
        return list(messages(self._broker_client(), list(queues)))

    def requeue(self, task_ids: set[str], orphans_before: float, live: set[str]) -> int:
        """Put back on their queues the unacknowledged messages of these Celery tasks, and those
        delivered before `orphans_before` that no live worker is running (a dead worker had taken
        them but not started them yet), with kombu's own restore; returns how many."""
        restored = 0
        with self._publishing(), self.app.connection_for_write() as conn:  # a Redis broker gone: BrokerUnavailable
            qos = conn.default_channel.qos
            client = conn.default_channel.client
            delivered = dict(client.zrange(qos.unacked_index_key, 0, -1, withscores=True))
            for tag, raw in client.hgetall(qos.unacked_key).items():
                task_id = (json.loads(raw)[0].get("headers") or {}).get("id")
                orphan = task_id not in live and delivered.get(tag, orphans_before) < orphans_before
                if task_id in task_ids or orphan:
                    qos.restore_by_tag(tag, client=client)
                    restored += 1
        return restored

    def revoke_run(self, run_id: str) -> int:
        """Revoke the messages of `run_id` still queued or not yet acknowledged, as Celery does
        (workers drop a revoked message when it comes); how many. On RabbitMQ, which cannot be looked
        into, none: a worker starts nothing of a cancelled run all the same."""
        found = self.in_flight([STUDIO_QUEUE, MODELS_QUEUE]) or []
        ids = [task_id for name, task_id, args in found if task_id and carried_by(name, args, run_id)]
        if ids:
            self.app.control.revoke(ids)
        return len(ids)

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Messages waiting in each queue: the Redis broker's lists (every priority), or RabbitMQ's
        own counts."""
        if not self.restores_unacked:
            return amqp_queue_lengths(self.app, list(queues))
        client = self._broker_client()
        return {q: queue_length(client, q) for q in queues}


def amqp_queue_lengths(app: Celery, queues: list[str]) -> dict[str, int]:
    """Messages ready in each queue, as RabbitMQ counts them (a passive declare creates nothing);
    a queue not declared yet holds none. A broker out of reach: no figures, and a warning."""
    counts: dict[str, int] = {}
    with app.connection_for_read() as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except conn.connection_errors as exc:
            exporter_log.warning("queue lengths: broker %s unreachable (%s)", conn.as_uri(), exc)
            return counts
        for queue in queues:
            channel = conn.channel()
            try:
                counts[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except conn.channel_errors:  # NOT_FOUND: nobody declared it yet (RabbitMQ closes the channel)
                counts[queue] = 0
            finally:
                with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
                    channel.close()
    return counts


@contextmanager
def worker_probe(broker: str, backend: str) -> Iterator[Callable[[str], bool]]:
    """A check that the worker of a node name answers a ping on `broker` (a worker starting up)."""
    probe = Celery(broker=broker, backend=backend)
    probe.conf.update(accept_content=["json"], task_serializer="json", result_serializer="json")

    def answers(nodename: str) -> bool:
        try:
            replies = probe.control.ping(timeout=0.5) or []
        except kombu.exceptions.OperationalError as exc:  # the broker not answering (yet): "not yet"
            raise OSError(str(exc)) from exc
        return any(host.startswith(nodename + "@") for reply in replies for host in reply)

    try:
        yield answers
    finally:
        probe.close()
