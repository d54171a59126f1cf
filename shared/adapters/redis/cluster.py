"""The cluster's own state in Redis: its metrics' totals, the model limits' queues, the workers'
heartbeats and throttle thresholds, and the messages each is running (producer/recovery.py,
workers/resources.py, the exporter)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

from shared.adapters.redis import keys
from shared.adapters.redis.metrics import flush, read_counters, read_histograms
from shared.adapters.redis.part import RedisPart
from shared.core.records import HostReading
from shared.metrics import Metrics


class ClusterState(RedisPart):
    def flush(self, metrics: Metrics) -> None:
        """Add a process's metrics to the cluster's totals (shared/metrics.py)."""
        flush(self.r, metrics)

    def counters(self) -> dict[tuple[str, tuple[str, ...]], float]:
        """The cluster's counters so far: (name, labels) -> total (the exporter)."""
        return read_counters(self.r)

    def histograms(self) -> dict[tuple[str, tuple[str, ...]], list[float]]:
        """The cluster's latency histograms so far (shared/metrics.py), for the exporter and benchmarks."""
        return read_histograms(self.r)

    def limit_queues(self) -> dict[str, tuple[int, int]]:
        """Each cluster-wide limit (semaphore.py): (slots held, tasks waiting), for benchmarks."""
        names = sorted(keys.limit_of_waiters(str(k)) for k in self.r.scan_iter(keys.LIMIT_WAITERS, count=1000))
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.zcard(keys.limit_part(name, "holders"))
            pipe.zcard(keys.limit_part(name, "waiters"))
        counts = pipe.execute()
        return {name: (int(counts[2 * i]), int(counts[2 * i + 1])) for i, name in enumerate(names)}

    # ---- workers' heartbeats and the messages each is running (producer/recovery.py) -------------
    def host_readings(self) -> dict[str, HostReading]:
        """Worker node name -> its last resource reading: host, cpu, memory, disk, throttled, ts."""
        return {str(name): json.loads(raw) for name, raw in self.r.hgetall(keys.HOSTS).items()}

    def heartbeats(self) -> dict[str, float]:
        """Worker node name -> when it last reported (workers/resources.py), or when Redis could hear
        it again after an outage, if later (heard_at)."""
        return self.heard_at({name: float(beat.get("ts", 0.0)) for name, beat in self.host_readings().items()})

    def take_turn(self, what: str, seconds: float) -> bool:
        """True for one caller of the cluster per `seconds` (a chore one worker does for all). The
        turn holds a token of this call's own, as a claim does (Store.claim): a SET sent again after
        its answer was lost finds it set by this very call."""
        key, token = keys.TURN + what, uuid.uuid4().hex
        return bool(self.r.set(key, token, nx=True, px=max(1, int(seconds * 1000)))) or self.r.get(key) == token

    def full(self) -> str | None:
        """Why Redis refuses writes when it is full (maxmemory reached under `noeviction`: workers
        die on their next write), or None when it is not."""
        memory = self.r.info("memory")
        limit, used = int(memory.get("maxmemory", 0) or 0), int(memory.get("used_memory", 0) or 0)
        if not limit or used < 0.95 * limit or memory.get("maxmemory_policy") != "noeviction":
            return None
        return (
            f"Redis is full: {used / 2**20:.1f} MiB used of its maxmemory {limit / 2**20:.1f} MiB (policy "
            "noeviction), so workers cannot write their results: free memory or raise maxmemory"
        )

    def worker_starts(self) -> dict[str, float]:
        """Worker node name -> when the process now reporting under it started (0: not said): what
        a name's in-flight record holds from before was an earlier process's, one that died."""
        return {name: float(beat.get("started", 0.0)) for name, beat in self.host_readings().items()}

    def broker_reconnects(self) -> dict[str, float]:
        """Worker node name -> when its consumer last connected again after losing its broker (0:
        never since its process started): what that connection had delivered and not started was
        dropped, and stays unacknowledged in Redis (shared/requeue.py)."""
        return {name: float(beat.get("reconnected", 0.0)) for name, beat in self.host_readings().items()}

    def live_workers(self, fresh_within: float) -> dict[str, list[str] | None]:
        """Workers that reported within `fresh_within` seconds -> the queues each takes (None: a
        worker of an earlier version, which does not say)."""
        now, live, readings = time.time(), {}, self.host_readings()
        heard = self.heard_at({name: float(beat.get("ts", 0.0)) for name, beat in readings.items()})
        for name, beat in readings.items():
            if now - heard[name] <= fresh_within:
                queues = beat.get("queues")
                live[name] = [str(q) for q in queues] if isinstance(queues, list) else None
        return live

    def running_messages(self) -> dict[str, dict[str, float]]:
        """Worker node name -> the Celery task ids it is running -> since when."""
        out: dict[str, dict[str, float]] = {}
        for key in self.r.scan_iter(keys.IN_FLIGHT + "*", count=1000):
            out[str(key).removeprefix(keys.IN_FLIGHT)] = {str(t): float(ts) for t, ts in self.r.hgetall(key).items()}
        return out

    def report_reading(self, nodename: str, reading: Mapping[str, object]) -> None:
        """A worker's resource reading: its "ts" is the worker's heartbeat."""
        self.r.hset(keys.HOSTS, nodename, json.dumps(reading))

    def forget_gone_hosts(self, before: float) -> None:
        """Drop the heartbeats, and the in-flight records, of workers silent since `before`: a worker
        started under a new name each time (the embedded one) must not grow the hash forever."""
        gone = [str(name) for name, beat in self.host_readings().items() if float(beat.get("ts", 0)) < before]
        if gone:
            pipe = self.r.pipeline(transaction=False)
            pipe.hdel(keys.HOSTS, *gone)
            pipe.delete(*(keys.in_flight_key(name) for name in gone))
            pipe.execute()

    def thresholds(self, nodename: str, memory_percent: float, cpu_percent: float) -> tuple[float, float]:
        """(memory %, cpu %): the given ones (settings), overridden at run time from Redis
        (cluster-wide, then per worker)."""
        values = {"memory_percent": memory_percent, "cpu_percent": cpu_percent}
        for key in (keys.THROTTLE, keys.throttle_key(nodename)):  # hashes: memory_percent / cpu_percent
            for field, value in self.r.hgetall(key).items():
                if field in values:
                    values[field] = float(value)
        return values["memory_percent"], values["cpu_percent"]

    def message_started(self, worker: str, task_id: str) -> None:
        self.r.hset(keys.in_flight_key(worker), task_id, time.time())

    def messages_ended(self, worker: str, *task_ids: str) -> None:
        if task_ids:
            self.r.hdel(keys.in_flight_key(worker), *task_ids)
