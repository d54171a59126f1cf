"""Every Redis key name and prefix the project uses, in one place (README, "Redis keys").

Standard library only: the no-change sync reads a root key before redis-py or pydantic are
imported (producer/nochange.py).
"""

from __future__ import annotations

PREFIX = "agentq"

# ---- run state: agentq:run:<id>:<part>, expiring with the run (RUN_TTL_SECONDS) --------------------
RUN_PREFIX = f"{PREFIX}:run:"
RUNS = f"{PREFIX}:runs"  # the newest runs by when they were made (RUNS_KEPT, expiring as a run does)
RUNS_KEPT = 1000
META = "meta"  # the run's metadata (JSON), read with every message and every poll
NODES = "nodes"  # label or task id -> its node state (JSON)
COUNTS = "counts"  # status -> how many nodes have it
SPECS = "specs"  # label or task id -> what a worker needs to do it (JSON)
LISTS = "lists"  # the meta's long lists, kept apart (shared/core/run_model.py RUN_LISTS)
OPEN = "open"  # workflow task -> inputs not yet ended
LEFT = "left"  # workflow tasks still to end
OUTBOX = "outbox"  # workflow tasks released and not yet published
OUTPUTS = "outputs"  # workflow task -> its output
TRANSCRIPTS = "transcripts"  # workflow task -> its transcript (JSON)
ENDED = "ended"  # workflow tasks that ended (end_task.lua ends a task once)
RETRIES = "retries"  # a run's retries by cause
REQUESTS = "requests"  # a run's Studio requests by endpoint
FINISHED = "finished"  # a list pushed once the run finished: wakes whoever waits for it
STUDIO_VERSION = "studio-version"  # a sync's Studio release, asked once by the producer before it enqueues
STUDIO_TEAMS = "studio-teams"  # a sync's listing of Studio's team rows by label, made once per run


def run_key(run_id: str, part: str) -> str:
    return f"{RUN_PREFIX}{run_id}:{part}"


def wave(index: int) -> str:
    """The run part holding a sync wave's batches."""
    return f"wave:{index}"


def claim(step: str) -> str:
    """The run part taken once per run for `step` (shared/core/reconcile.py names them)."""
    return f"claim:{step}"


# ---- the result cache (CACHE_TTL_SECONDS) -----------------------------------------------------------
ROOT_PREFIX = f"{PREFIX}:root:"  # + a sync's Merkle root over its cache keys -> the run that wrote it


def task_cache_key(key: str) -> str:
    """Workflow task results: keyed by content only (the endpoint is part of the key)."""
    return f"{PREFIX}:wf:{key}"


# ---- one Studio + user namespace's keys: agentq:<ns>:<part>[:<name>] ----------------------------------
# the result cache, per namespace (CACHE_TTL_SECONDS)
NODE = "node"  # + node key: a synced component's result
GALLERY = "gallery"  # + gallery key: a written gallery entry's result
SPEC = "spec"  # + node key: a gallery member's spec, for the entry's writes after the run that synced it
# what the syncs of a namespace wrote to Studio (no expiry: one entry per label, tree, gallery)
LABELS = "labels"  # + tree: label -> the node key it was last synced with
TEAMS = "teams"  # label -> its team row's id
WRITTEN = "written"  # label -> the record of the team row the sync wrote (shared/core/drift.py)
TEMPLATES = "templates"  # label -> its component as the file said it, ${VAR}s unresolved (producer pull)
GALLERIES = "galleries"  # gallery name -> its row's id
GALLERY_WRITTEN = "gallery-written"  # gallery name -> the content hash of the config last written there
# gallery name -> {"key", "tree"}: the cache key of the entry the sync last wrote there, and whose tree
GALLERY_KEYS = "gallery-keys"
OWNED_GALLERIES = "owned-galleries"  # gallery name -> the row id and tree of an entry the sync created
GALLERY_TREES = "gallery-trees"  # gallery name -> the tree named so whose sync claimed it first
ROOTS = "roots"  # tree -> the root of its last clean sync (voided when another tree takes a row of it over)
CREATING = "creating"  # + what: the lock held while the Studio row `what` is created (30 s)


def ns_key(ns: str, part: str, name: str | None = None) -> str:
    """The key of a namespace's `part` (one of the names above), and of `name` in it when it has one."""
    return f"{PREFIX}:{ns}:{part}" if name is None else f"{PREFIX}:{ns}:{part}:{name}"


# ---- the cluster-wide model limits (semaphore.py) -----------------------------------------------------
LIMIT_PREFIX = f"{PREFIX}:limit:"  # + a model's limit key
LIMIT_PARTS = ("holders", "waiters", "owners", "beats", "swept")
LIMIT_WAITERS = f"{LIMIT_PREFIX}*:waiters"  # every limit's waiters (benchmarks read the queues)


def limit_name(key: str) -> str:
    """The name a model's limit key gives its keys."""
    return f"{LIMIT_PREFIX}{key}"


def limit_part(name: str, part: str) -> str:
    return f"{name}:{part}"


def limit_of_waiters(waiters_key: str) -> str:
    """The limit's name, from its waiters' key."""
    return waiters_key.removesuffix(":waiters")


def limit_keys(name: str, process: str) -> list[str]:
    """A limit's keys as acquire.lua takes them: holders, waiters, owners, beats, swept, and the
    waiters of one process."""
    return [*(limit_part(name, part) for part in LIMIT_PARTS), f"{name}:mine:{process}"]


# ---- metrics, heartbeats, throttling (no expiry: one field per metric, worker) -------------------------
COUNTERS = f"{PREFIX}:metrics:counters"  # field: JSON [name, labels] -> total (shared/metrics.py)
HISTOGRAMS = f"{PREFIX}:metrics:histograms"  # field: JSON [name, labels, bucket] -> count
HOSTS = f"{PREFIX}:hosts"  # node name -> its latest resource reading; its "ts" is the worker's heartbeat
IN_FLIGHT = f"{PREFIX}:inflight:"  # + node name: hash of the Celery task ids it is running -> since when
THROTTLE = f"{PREFIX}:throttle"  # hash: memory_percent / cpu_percent, for every worker (set by you)


TURN = f"{PREFIX}:turn:"  # + a chore: set while one worker of the cluster does it (requeue: the gone workers' messages)


def in_flight_key(nodename: str) -> str:
    return IN_FLIGHT + nodename


def throttle_key(nodename: str) -> str:
    """One worker's throttle overrides."""
    return f"{THROTTLE}:{nodename}"


# ---- Celery's queues, and kombu's names for them on the Redis broker ------------------------------------
PRIORITY_SEP = "\x06\x16"  # a priority p > 0 of queue q lives in the list q + PRIORITY_SEP + p
UNACKED = "unacked"  # kombu's Redis transport's hash of delivered, unacknowledged messages (unacked_key)
UNACKED_INDEX = "unacked_index"  # its sorted set of when each was delivered (unacked_index_key)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists of a queue with priorities (kombu's priority steps 0..9)."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in range(1, 10))]
