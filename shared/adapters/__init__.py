"""The adapters behind the ports (shared/ports.py): Redis (run state, result cache, model limits,
metrics, the broker's lists), Celery (configuration and dispatch) and AutoGen Studio. Only these
and the workers import redis-py, kombu or Celery."""
