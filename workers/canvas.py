"""Publishing a wave: one chord per dependency group, each message constant-size.

The chord's body starts the next wave, reading the plan from Redis by run id, so no message
embeds the rest of the graph (a chain of chords grows with depth squared).
"""

from __future__ import annotations

from celery import Celery, chord


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
