"""The Celery app: JSON only, late acks with prefetch 1, Redis broker with priorities, and the
threads pool: every task's work is I/O on the process's one event loop (workers/task_base.py),
so a thread per message in flight costs little and a released workflow task never waits for a
free process. Run one worker per core for CPU (`celery -A workers worker -c 32` on each)."""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    url = settings.redis_url or DEFAULT_REDIS_URL
    app = Celery("agentq", broker=url, backend=url, include=["workers.tasks"])
    app.conf.update(
        broker_transport="workers.broker:Transport",  # kombu's Redis transport, surviving Redis restarts
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # Without this the Redis transport ignores message priorities.
        broker_transport_options={
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            "visibility_timeout": settings.visibility_timeout_seconds,
        },
        result_expires=settings.run_ttl_seconds,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    from workers.resources import ResourceGuard

    app.steps["consumer"].add(ResourceGuard)
    return app


app = create_app()
