"""Redis key names that code outside shared/store.py must spell: the no-change sync reads a root
key before redis-py or pydantic are imported (producer/nochange.py). Standard library only."""

PREFIX = "agentq"
ROOT_PREFIX = f"{PREFIX}:root:"  # + a sync's Merkle root over its cache keys -> the run that wrote it
COUNTERS = f"{PREFIX}:metrics:counters"  # field: JSON [name, labels] -> total (shared/metrics.py)
LIMIT_PREFIX = f"{PREFIX}:limit:"  # + a model's limit key: a cluster-wide limit's keys (shared/semaphore.py)
# the Celery queues (Redis lists): sync work and every run's start; workflow tasks (workers/celery_app.py)
STUDIO_QUEUE = "studio"
MODELS_QUEUE = "models"
# a sync run's part holding Studio's release, asked once by the producer before it enqueues
STUDIO_VERSION = "studio-version"
