"""The workers' Celery app (`celery -A workers worker`): configured in shared/adapters/celery.py,
with the tasks of workers/tasks.py and the bootstep that reports host resources and throttles
(workers/resources.py)."""

from __future__ import annotations

from shared.adapters.celery import create_app
from shared.core.exceptions import InvalidInput
from workers.resources import ResourceGuard

try:
    app = create_app(include=["workers.tasks"])
except InvalidInput as exc:  # a bad setting: one line (no traceback, no password), for `celery` to exit on
    raise SystemExit(f"error: {exc}") from None
app.steps["consumer"].add(ResourceGuard)
