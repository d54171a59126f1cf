"""Celery workers: `celery -A workers worker`."""

from workers import incarnation  # noqa: F401  # its clock starts first
from workers.celery_app import app

__all__ = ["app"]
