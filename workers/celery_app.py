"""The Celery app: JSON only, late acks with prefetch 1, a broker with priorities, and the
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
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from celery import Celery
from kombu import Exchange, Queue
from kombu.utils.url import url_to_parts

from shared.adapters.redis.conn import KEEPALIVE, SOCKET_TIMEOUT
from shared.adapters.redis.keys import MODELS_QUEUE, STUDIO_QUEUE
from shared.settings import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_PRIORITY = 9  # message priorities 0..9 on both brokers (Redis: 0 is served first; RabbitMQ: 9)
BROKER_HEARTBEAT = 10.0  # seconds: RabbitMQ closes a silent consumer's connection (and requeues) within ~2 of these
ROUTES = {
    name: {"queue": STUDIO_QUEUE}
    for name in (
        "agentq.sync_batch",
        "agentq.start_run",
        "agentq.wave_done",
        "agentq.finalize",
        "agentq.noop_batch",
        "agentq.noop",
    )
}
ROUTES |= {name: {"queue": MODELS_QUEUE} for name in ("agentq.run_tasks", "agentq.load_component")}
# never overridden: a pickle message would run code on the worker
SECURE = {
    "task_serializer": "json",
    "result_serializer": "json",
    "event_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
}
log = logging.getLogger(__name__)


def user_config() -> dict[str, Any]:
    """Celery settings from the module named by CELERY_CONFIG_MODULE, if any."""
    name = os.environ.get("CELERY_CONFIG_MODULE")
    if not name:
        return {}
    module = importlib.import_module(name)
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
                Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=priority)
                for name in (STUDIO_QUEUE, MODELS_QUEUE)
            ],
            task_queue_max_priority=MAX_PRIORITY,
            # a message published without a priority is served first, as it is on Redis (workers/canvas.py
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
        broker_transport="workers.broker:Transport",  # kombu's Redis transport, surviving Redis restarts
        task_queues=[Queue(STUDIO_QUEUE), Queue(MODELS_QUEUE)],
        # Without this the Redis transport ignores message priorities.
        broker_transport_options={
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            "visibility_timeout": settings.visibility_timeout_seconds,
            # a dead peer (a lost host, a partition) is noticed in seconds, not after TCP's minutes
            # (kombu #1785: a socket timeout keeps a consumer from hanging on a dead connection)
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": 5.0,
            "socket_keepalive": True,
            "socket_keepalive_options": KEEPALIVE,
            "health_check_interval": 15,
        },
    )


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    url = settings.redis_url or DEFAULT_REDIS_URL
    user = user_config()
    broker = user.get("broker_url") or settings.broker_url or url
    app = Celery("agentq", broker=broker, backend=url, include=["workers.tasks"])
    defaults: dict[str, Any] = dict(
        task_default_queue=STUDIO_QUEUE,
        task_routes=ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        result_expires=settings.run_ttl_seconds,
        # the result backend (chord counters) rides out an outage as every other Redis client does
        result_backend_always_retry=True,
        result_backend_max_sleep_between_retries_ms=2000,
        result_backend_max_retries=max(1, int(settings.redis_outage_seconds)),
        redis_socket_timeout=SOCKET_TIMEOUT,
        redis_socket_connect_timeout=5.0,
        redis_socket_keepalive=True,
        redis_retry_on_timeout=True,
        redis_backend_health_check_interval=15,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker for as long as it takes
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    defaults |= _broker_settings(settings, broker)
    app.conf.update({**defaults, **user, **SECURE})
    from workers.resources import ResourceGuard

    app.steps["consumer"].add(ResourceGuard)
    return app


app = create_app()
