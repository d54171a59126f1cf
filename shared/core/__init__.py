"""The pure core: reading and validating configs, references, the dependency graph, content keys,
workflow scheduling, reconciling a run with its broker, and the run vocabulary. No I/O here (no
Redis, HTTP, files or environment): everything is tested without servers. The adapters that talk
to the world are in shared/adapters/ (Redis, Celery, Studio); the retry policy, metrics and
settings beside them in shared/; the workers' side in workers/."""
