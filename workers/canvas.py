"""Publishing work. Sync: one chord per dependency group, each message constant-size. Workflows:
the tasks one completion released, as a group.

The chord's body starts the next wave, reading the plan from Redis by run id, so no message
embeds the rest of the graph (a chain of chords grows with depth squared).
"""

from __future__ import annotations

from celery import Celery, chord, group


def start_wave(app: Celery, run_id: str, wave: int, batches: int, task: str = "agentq.sync_batch",
               priorities: list[int] | None = None) -> None:
    """`priorities`: a Redis message priority per batch (0 is served first)."""
    header = [app.signature(task, args=(run_id, wave, i), priority=priorities[i] if priorities else None)
              for i in range(batches)]
    chord(header)(app.signature("agentq.wave_done", args=(run_id, wave)))


def start_run(app: Celery, run_id: str) -> None:
    """From the producer: one small message; a worker publishes the first chord (so the
    producer never holds chord results or a result subscription)."""
    app.send_task("agentq.start_run", args=(run_id,))


def start_finalize(app: Celery, run_id: str) -> None:
    app.send_task("agentq.finalize", args=(run_id,))


def publish_tasks(app: Celery, run_id: str, items: list[tuple[str, int, int]], batch_size: int) -> None:
    """Publish released workflow tasks, (task id, rank, Redis priority) each: highest rank first,
    up to `batch_size` per message, each message constant-size (ids only: the rest is in Redis)."""
    ordered = sorted(items, key=lambda item: (-item[1], item[0]))
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    signatures = [app.signature("agentq.run_tasks", args=(run_id, [tid for tid, _, _ in batch]),
                                priority=min(p for _, _, p in batch)) for batch in batches]
    if len(signatures) == 1:
        signatures[0].apply_async()
    elif signatures:
        group(signatures).apply_async()
