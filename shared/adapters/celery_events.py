"""Celery's task and worker events as the workers send them (worker_send_task_events,
task_send_sent_event), received for the exporter (monitoring/exporter.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from celery import Celery

log = logging.getLogger("agentq.exporter")

Event = dict[str, Any]
Receive = Callable[[threading.Event], None]  # runs until the event is set
RECONNECT_SECONDS = 1.0


def receive_events(app: Celery, on_event: Callable[[Event], None], on_idle: Callable[[], None]) -> Receive:
    """A loop that hands every event on `app`'s broker to `on_event`, and calls `on_idle` at least
    once a second, until the event it is given is set; a lost stream is received again."""

    def run(stop: threading.Event) -> None:
        said: set[str] = set()  # a broker out of reach is said once, not at every reconnect
        while not stop.is_set():
            try:
                with app.connection_for_read() as conn:
                    for _ in _consume(app, conn, on_event, on_idle, stop):
                        said.clear()
            except Exception as exc:  # the broker gone (OSError, kombu's and redis' own errors)
                # no on_idle(): unheard, the workers are not known to be gone (agentq_redis_up says why)
                text = f"{type(exc).__name__}: {exc}"
                if text not in said:
                    said.add(text)
                    log.warning("event stream lost (%s); reconnecting every %g s", text, RECONNECT_SECONDS)
                stop.wait(RECONNECT_SECONDS)  # events missed meanwhile are lost: back soon

    return run


def _consume(
    app: Celery, conn: Any, on_event: Callable[[Event], None], on_idle: Callable[[], None], stop: threading.Event
) -> Iterator[None]:
    """One subscription, kept while no event comes (with a timeout, kombu left it at each idle
    second, and what was published until it was back was lost); ends once `stop` is set."""
    receiver = app.events.Receiver(conn, handlers={"*": on_event})

    def each_second() -> None:  # kombu calls it before each wait for an event, a second at most
        on_idle()
        receiver.should_stop = stop.is_set()

    receiver.on_iteration = each_second
    return receiver.consume(limit=None, timeout=None, safety_interval=1.0, wakeup=True)  # type: ignore[no-any-return]
