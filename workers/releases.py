"""Workflow tasks released on one worker process, published together.

Each release waits at most `window` seconds (2 ms) for others: tasks ending close together on a
process (a model's answers arrive in bursts) share Celery messages instead of sending one each,
which costs more CPU than the release itself on long chains. A release returns once its tasks are
published, so a worker never acknowledges a message whose releases are still unsent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Released = tuple[str, int, int]  # task id, rank, Redis message priority


class Releases:
    def __init__(self, send: Callable[[str, list[list[Released]]], None], window: float = 0.002) -> None:
        self._send = send
        self._window = window
        self._pending: dict[str, list[list[Released]]] = {}  # run id -> what each completion released
        self._sent: asyncio.Future[None] | None = None

    async def publish(self, run_id: str, items: list[Released]) -> None:
        loop = asyncio.get_running_loop()
        self._pending.setdefault(run_id, []).append(items)
        if self._sent is None:
            self._sent = loop.create_future()
            loop.call_later(self._window, self._flush)
        await asyncio.shield(self._sent)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        sent, self._sent = self._sent, None
        assert sent is not None
        try:
            for run_id, items in pending.items():
                self._send(run_id, items)
        except Exception as exc:  # every release waiting on this flush learns it failed
            sent.set_exception(exc)
            sent.exception()  # retrieved: the waiters raise it themselves
            return
        sent.set_result(None)
