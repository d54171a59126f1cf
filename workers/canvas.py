"""Publishing work. Sync: one chord per dependency group, each message constant-size. Workflows:
the tasks one completion released, as a group.

The chord's body starts the next wave, reading the plan from Redis by run id, so no message
embeds the rest of the graph (a chain of chords grows with depth squared).

Priorities are given Redis's way everywhere (0 is served first, 9 last; a message without one
counts as 0) and turned into the broker's here, in `broker_priority`, the one place that knows
that RabbitMQ serves the highest number first.
"""

from __future__ import annotations

from celery import Celery, chord, group

from workers.celery_app import MAX_PRIORITY, is_redis_broker


def broker_priority(app: Celery, priority: int | None) -> int | None:
    """A Redis message priority (0 first, None as 0) as `app`'s broker takes it: as it is on Redis,
    reversed on RabbitMQ (9 first), so critical work goes first on both. On RabbitMQ every message
    gets one: a message without a priority would be served last there."""
    if is_redis_broker(app):
        return priority
    return MAX_PRIORITY - min(MAX_PRIORITY, max(0, priority or 0))


def start_wave(
    app: Celery,
    run_id: str,
    wave: int,
    batches: int,
    task: str = "agentq.sync_batch",
    priorities: list[int] | None = None,
) -> None:
    """`priorities`: a Redis message priority per batch (0 is served first)."""
    header = [
        app.signature(
            task, args=(run_id, wave, i), priority=broker_priority(app, priorities[i] if priorities else None)
        )
        for i in range(batches)
    ]
    chord(header)(app.signature("agentq.wave_done", args=(run_id, wave), priority=broker_priority(app, None)))


def start_run(app: Celery, run_id: str) -> None:
    """From the producer: one small message; a worker publishes the first chord (so the
    producer never holds chord results or a result subscription)."""
    app.send_task("agentq.start_run", args=(run_id,), priority=broker_priority(app, None))


def start_finalize(app: Celery, run_id: str) -> None:
    app.send_task("agentq.finalize", args=(run_id,), priority=broker_priority(app, None))


def publish_tasks(app: Celery, run_id: str, groups: list[list[tuple[str, int, int]]], batch_size: int) -> None:
    """Publish released workflow tasks, (task id, rank, Redis priority) each, as one Celery group.
    Tasks that one completion released stay in one message (up to `batch_size`), so they reach the
    model limits together and the higher-ranked goes first; small groups share messages. Each
    message is constant-size (ids only: the rest is in Redis), highest rank first."""
    batches: list[list[tuple[str, int, int]]] = [[]]
    for released in groups:
        for i in range(0, len(released), batch_size):
            part = released[i : i + batch_size]
            if len(batches[-1]) + len(part) > batch_size:
                batches.append([])
            batches[-1].extend(part)
    signatures = [
        app.signature(
            "agentq.run_tasks",
            args=(run_id, [tid for tid, _, _ in sorted(batch, key=lambda x: (-x[1], x[0]))]),
            priority=broker_priority(app, min(p for _, _, p in batch)),
        )
        for batch in batches
        if batch
    ]
    if len(signatures) == 1:
        signatures[0].apply_async()
    elif signatures:
        group(signatures).apply_async()
