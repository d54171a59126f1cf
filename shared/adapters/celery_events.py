"""Celery's task and worker events as the workers send them (worker_send_task_events,
task_send_sent_event), received for the exporter (monitoring/exporter.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

log = logging.getLogger("agentq.exporter")

Event = dict[str, Any]
Receive = Callable[[threading.Event], None]  # runs until the event is set


def receive_events(app: Celery, on_event: Callable[[Event], None], on_idle: Callable[[], None]) -> Receive:
    """A loop that hands every event on `app`'s broker to `on_event`, and calls `on_idle` at least
    once a second, until the event it is given is set; a lost stream is received again."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with app.connection_for_read() as conn:
                    receiver = app.events.Receiver(conn, handlers={"*": on_event})
                    for _ in receiver.itercapture(limit=None, timeout=1.0, wakeup=True):
                        on_idle()
                        if stop.is_set():
                            return
            except (TimeoutError, OSError) as exc:  # socket timeout: no events for a while
                on_idle()
                if not isinstance(exc, TimeoutError):
                    log.warning("event stream lost (%s); reconnecting", exc)
                    stop.wait(1.0)
            except Exception:
                log.exception("event stream failed; reconnecting")
                stop.wait(1.0)

    return run
