"""The workers' Celery app (`celery -A workers worker`): configured in shared/adapters/celery.py,
with the tasks of workers/tasks.py and the bootstep that reports host resources and throttles
(workers/resources.py)."""

from __future__ import annotations

from shared.adapters.celery import create_app
from workers.resources import ResourceGuard

app = create_app(include=["workers.tasks"])
app.steps["consumer"].add(ResourceGuard)
