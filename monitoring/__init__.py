"""Monitoring. Today: Flower (`celery -A workers flower --basic-auth=user:pass`) shows every task
and serves Prometheus metrics at /metrics; workers send task events. The project's own exporter,
alert rules and dashboards are tracked as the observability issue."""
