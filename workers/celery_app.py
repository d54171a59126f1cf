"""The workers' Celery app (`celery -A workers worker`): configured in shared/adapters/celery.py,
with the tasks of workers/tasks.py and the bootstep that reports host resources and throttles
(workers/resources.py).

What a worker process reads once is made here, as the app is: its settings (`load_settings`, so
a bad value is one line) and the one Dispatcher its tasks and its resource thread publish through."""

from __future__ import annotations

import sys
from pathlib import Path

from celery import Celery

from shared.adapters.celery import CeleryDispatcher, create_app, require_redis
from shared.core.exceptions import InvalidInput
from shared.settings import Settings, load_settings
from workers.resources import ResourceGuard


def _celery_command() -> bool:
    """This process is `celery ...` (`celery -A workers worker`, `inspect`, `status`, `flower`)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return program.name == "celery" or program.parent.name == "celery"  # `python -m celery`: celery/__main__.py


def _app() -> tuple[Settings, Celery]:
    settings = load_settings()
    if _celery_command():
        require_redis(settings)
    return settings, create_app(settings, include=["workers.tasks"])


try:
    settings, app = _app()
except InvalidInput as exc:  # a bad setting: one line (no traceback, no password), for `celery` to exit on
    raise SystemExit(f"error: {exc}") from None
dispatcher = CeleryDispatcher(app)  # the process's one (workers/tasks.py, task_base.py, resources.py)
app.steps["consumer"].add(ResourceGuard)
