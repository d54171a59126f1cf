"""What the workers ask of Redis through the adapters, on a real Redis: the lock held while a Studio
row is created (workers/registration.py), and a worker's own host, its thresholds, heartbeat and
the forgetting of workers long gone (workers/resources.py); the exporter's event stream
(shared/adapters/celery_events.py)."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.adapters.redis import keys
from shared.adapters.redis.store import Store
from shared.core.run_model import NodeState, Status

pytestmark = pytest.mark.integration


def _store(redis_url: str) -> Store:
    return Store.from_url(redis_url, cache_ttl=60, run_ttl=60)


def _new_run(store: Store, nodes: dict[str, NodeState]) -> str:
    """A run written as a command writes it: every node's first state."""
    from producer.launch import new_run
    from shared.core.records import NewRun
    from shared.core.run_model import RunMeta

    meta = RunMeta(**new_run(), total=len(nodes))
    store.create_run(NewRun(meta, nodes, {}))
    return meta.run_id


def test_a_create_lock_is_tried_without_blocking_and_let_go_quietly_once_expired(redis_url: str) -> None:
    store, ns = _store(redis_url), f"test-{uuid.uuid4().hex[:8]}"
    first = store.create_lock(ns, "team:a")
    assert first.acquire()
    started = time.monotonic()
    assert not store.create_lock(ns, "team:a").acquire()  # held: answered at once
    assert time.monotonic() - started < 1.0
    assert store.create_lock(ns, "team:b").acquire()  # one lock per row
    first.release()
    second = store.create_lock(ns, "team:a", seconds=0.1)
    assert second.acquire()  # free again once released
    time.sleep(0.3)
    assert store.create_lock(ns, "team:a").acquire()  # it expired: another took it
    second.release()  # no error: the lock is no longer its own


def test_a_create_lock_held_by_a_worker_gone_silent_is_taken_over_at_once(redis_url: str) -> None:
    """A worker killed mid-create leaves its lock for 30 s; once its heartbeat is older than
    WORKER_DEAD_SECONDS (the producer requeues its messages then), the next create takes it over."""
    import json

    from tests.conftest import wait_for

    store, ns = _store(redis_url), f"test-{uuid.uuid4().hex[:8]}"
    dead, alive, unknown = (f"{name}-{uuid.uuid4().hex[:6]}@host" for name in ("dead", "alive", "unknown"))
    # silent for 5 s while Redis could hear it (a heartbeat from before Redis started says nothing)
    wait_for(lambda: time.time() - store.heard_since() > 6, 10, "Redis up for 6 s")
    store.r.hset(
        keys.HOSTS, mapping={dead: json.dumps({"ts": time.time() - 5}), alive: json.dumps({"ts": time.time()})}
    )
    try:
        for holder, taken_over in ((dead, True), (alive, False), (unknown, False)):
            what = f"team:{holder}"
            assert store.create_lock(ns, what, holder=holder, dead_after=3).acquire()
            survivor = store.create_lock(ns, what, holder="survivor@host", dead_after=3)
            assert survivor.acquire() is taken_over, holder
            survivor.release()
        assert not store.create_lock(ns, f"team:{alive}", holder="survivor@host", dead_after=3).acquire()
    finally:
        store.r.hdel(keys.HOSTS, dead, alive)


def test_a_workers_thresholds_come_from_settings_then_the_cluster_then_the_worker(redis_url: str) -> None:
    store, node = _store(redis_url), f"test-{uuid.uuid4().hex[:8]}@host"
    assert store.thresholds(node, 90.0, 95.0) == (90.0, 95.0)
    # the cluster-wide hash is left alone: the other tests' workers read it
    store.r.hset(keys.throttle_key(node), mapping={"cpu_percent": "50", "unknown": "1"})
    try:
        assert store.thresholds(node, 90.0, 95.0) == (90.0, 50.0)
    finally:
        store.r.delete(keys.throttle_key(node))


def test_a_heartbeat_is_read_back_and_a_worker_long_silent_is_forgotten(redis_url: str) -> None:
    store, tag = _store(redis_url), uuid.uuid4().hex[:8]
    gone, live = f"gone-{tag}@host", f"live-{tag}@host"
    store.report_reading(gone, {"cpu": 1.0, "ts": 1.0})
    store.report_reading(live, {"cpu": 2.0, "ts": time.time()})
    store.message_started(gone, "task-1")
    assert store.host_readings()[gone] == {"cpu": 1.0, "ts": 1.0}
    store.forget_gone_hosts(before=2.0)  # only what is older than any worker of the test session
    readings = store.host_readings()
    assert gone not in readings and live in readings
    assert gone not in store.running_messages()
    store.r.hdel(keys.HOSTS, live)


def test_a_node_two_workers_took_is_ended_once_and_the_counts_stay_exact(redis_url: str) -> None:
    """A redelivered batch beside a partitioned worker's late copy: both ended the same nodes, and
    the counts went past the run's total (done 500 of 401, running -100), the report changing after
    the command had ended. A state is written only over the status its writer read."""
    store, labels = _store(redis_url), ["a", "b"]
    # a file name that is not UTF-8 puts a lone surrogate in the state's JSON, which cjson refuses
    run_id = _new_run(store, {lbl: NodeState(status=Status.PENDING, path="m\udcffodel.yaml") for lbl in labels})
    first = {lbl: NodeState(status=Status.RUNNING, worker="w1") for lbl in labels}
    store.set_states(run_id, first, {lbl: Status.PENDING for lbl in labels})
    second = {lbl: NodeState(status=Status.RUNNING, worker="w2") for lbl in labels}
    store.set_states(run_id, second, {lbl: Status.RUNNING for lbl in labels})  # it read w1's RUNNING
    ended = {lbl: NodeState(status=Status.DONE, worker="w2", outcome="updated") for lbl in labels}
    store.set_states(run_id, ended, {lbl: Status.RUNNING for lbl in labels})
    late = {lbl: NodeState(status=Status.DONE, worker="w1", outcome="unchanged") for lbl in labels}
    store.set_states(run_id, late, {lbl: Status.RUNNING for lbl in labels})  # w1, back: what it read is gone
    assert {k: v for k, v in store.counts(run_id).items() if v} == {"done": 2}
    assert {lbl: (st.worker, st.outcome) for lbl, st in store.node_states(run_id, labels).items()} == {
        "a": ("w2", "updated"),
        "b": ("w2", "updated"),
    }
    # a write over the status it read (a gallery write that failed, over a done member) lands
    store.set_states(run_id, {"a": NodeState(status=Status.FAILED, error="x")}, {"a": Status.DONE})
    assert {k: v for k, v in store.counts(run_id).items() if v} == {"done": 1, "failed": 1}


def test_a_run_gone_from_redis_while_waited_for_is_said_as_a_service_failure(redis_url: str) -> None:
    """Redis restarted without its data mid-run: `run` and `sync` ended in a LookupError traceback."""
    from producer.run_wait import wait
    from shared.core.exceptions import ServiceUnavailable

    with pytest.raises(ServiceUnavailable, match="gone from Redis while it ran"):
        wait(_store(redis_url), f"test-{uuid.uuid4().hex[:8]}", timeout=5)


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), SystemExit(143)])
def test_a_run_whose_command_is_interrupted_before_its_start_is_sent_is_ended(
    redis_url: str, interruption: BaseException
) -> None:
    """Ctrl-C or SIGTERM between writing the run and publishing its start: no worker will ever get
    it, so it is ended saying so, not left running for `producer runs` forever."""
    from producer.launch import INTERRUPTED, launch, new_run
    from shared.core.records import NewRun
    from shared.core.run_model import RunMeta, RunState
    from shared.metrics import Metrics

    class Interrupted:
        def start_run(self, run_id: str, queue: str) -> None:
            raise interruption

    store = _store(redis_url)
    meta = RunMeta(**new_run(), total=0)
    with pytest.raises(type(interruption)):
        launch(store, meta, lambda m: store.create_run(NewRun(m, {}, {}, [], {})), Metrics(), Interrupted())  # type: ignore[arg-type]
    ended = store.meta(meta.run_id)
    assert ended is not None and ended.state != RunState.RUNNING and ended.error == INTERRUPTED


def test_a_full_redis_is_said_so(tmp_path) -> None:
    """maxmemory reached under noeviction: every worker dies on its next write, and the waiting
    producer says why rather than only that no worker runs."""
    import redis as redis_py

    from producer import embedded

    url, proc = embedded.start_redis(tmp_path / "redis")
    try:
        store, r = _store(url), redis_py.Redis.from_url(url)
        assert store.full() is None
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) + 2**20))
        with pytest.raises(redis_py.exceptions.ResponseError, match="maxmemory"):
            for i in range(10_000):
                r.set(f"filler:{i}", "x" * 4096)
        said = store.full()
        assert said is not None and "Redis is full" in said and "noeviction" in said, said
    finally:
        embedded.stop(proc)


def test_the_event_stream_is_kept_while_no_event_comes(tmp_path) -> None:
    """The exporter's stream was left and taken again at each second without an event; a worker's
    offline event or heartbeat published meanwhile was lost (a worker stopped on purpose stayed
    `celery_worker_up 0`, a live one showed down under load)."""
    import threading

    import redis as redis_py
    from celery import Celery

    from producer import embedded
    from shared.adapters.celery_events import Event, receive_events
    from tests.conftest import wait_for

    url, proc = embedded.start_redis(tmp_path / "redis")
    stop = threading.Event()
    try:
        app, r = Celery(broker=url), redis_py.Redis.from_url(url)
        heard: list[Event] = []
        idle: list[float] = []
        thread = threading.Thread(
            target=receive_events(app, heard.append, lambda: idle.append(time.monotonic())), args=(stop,)
        )
        thread.start()

        def subscribers() -> set[str]:
            return {c["id"] for c in r.client_list() if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0}

        first = wait_for(subscribers, 10, "the stream subscribed")
        wait_for(lambda: len(idle) >= 4, 15, "four idle seconds said to the exporter")
        assert subscribers() == first, "the stream was left and taken again while no event came"
        with app.events.default_dispatcher(hostname="leaving@host") as dispatcher:
            dispatcher.send("worker-offline")
        wait_for(lambda: any(e["type"] == "worker-offline" for e in heard), 10, "the offline event heard")
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "the stream did not end when told to"
    finally:
        stop.set()
        embedded.stop(proc)


def test_a_run_gone_from_redis_gets_no_key_that_would_never_expire(redis_url: str) -> None:
    """Redis restarted without its data mid-run: the workers' next writes made the run's keys again,
    with no expiry (they stayed in Redis for ever), and its tasks went on calling models. Only the
    cluster's metrics are counted."""
    import asyncio

    import redis as redis_py
    import redis.asyncio as aioredis

    from shared.adapters.redis.async_state import AsyncRunState, TaskEnd
    from shared.metrics import Metrics

    store, r = _store(redis_url), redis_py.Redis.from_url(redis_url)
    run_id = _new_run(store, {"t1": NodeState(status=Status.PENDING), "t2": NodeState(status=Status.PENDING)})
    ours = f"*{run_id}*"
    assert r.keys(ours) and all(r.ttl(k) > 0 for k in r.keys(ours))
    r.delete(*r.keys(ours))  # what a restart without persistence leaves of it
    store.set_states(run_id, {"t1": NodeState(status=Status.RUNNING, worker="w")}, {"t1": Status.PENDING})

    async def end() -> tuple[int, bool]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            metrics = Metrics()
            metrics.inc("agentq_workflow_tasks_total", ["done"])
            done = NodeState(status=Status.DONE, worker="w")
            ended = await AsyncRunState(client, store).end_task(
                run_id, TaskEnd("t1", done, "running", ["t2"], output="out"), metrics
            )
            return ended.left, ended.first
        finally:
            await client.aclose()

    async def cancelled() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncRunState(client, store).cancelled(run_id)
        finally:
            await client.aclose()

    assert asyncio.run(cancelled()), "a gone run's tasks would go on calling models"
    before = store.counters()
    assert asyncio.run(end()) == (-1, False)
    assert r.keys(ours) == [], "the gone run's keys were written again"
    assert sum(store.counters().values()) > sum(before.values())  # its metrics still count


def test_a_redis_restart_is_no_silence_of_the_workers(tmp_path) -> None:
    """Redis restarted (with its data) after an outage: every heartbeat was older than
    WORKER_DEAD_SECONDS, so the first worker back took the others for dead and requeued what they
    were running; it ran twice. A worker is silent only while Redis could hear it."""
    import threading

    from producer import embedded
    from shared.requeue import lost_messages
    from tests.conftest import wait_for

    url, proc = embedded.start_redis(tmp_path / "redis", persist=True)
    try:
        store, long_ago = _store(url), time.time() - 100
        store.report_reading("w1", {"ts": long_ago, "started": long_ago, "host": "h"})
        store.r.hset(keys.in_flight_key("w1"), "task-1", long_ago)
        embedded.stop(proc)
        url, proc = embedded.start_redis(
            tmp_path / "redis", port=int(url.rsplit(":", 1)[1].split("/")[0]), persist=True
        )
        assert store.heartbeats()["w1"] > long_ago + 90  # as heard since Redis came back
        assert lost_messages(store, 5.0) == {}, "a worker taken for dead because Redis was away"
        assert "w1" in store.live_workers(5.0)
        # still silent once Redis has heard everyone for WORKER_DEAD_SECONDS: gone
        wait_for(lambda: lost_messages(store, 1.0) == {"w1": ["task-1"]}, 15, "the silent worker found")
    finally:
        embedded.stop(proc)

    # a client that got through again after an outage says since when (a partition of its own host)
    from shared.adapters.redis.conn import heard_again, sync_client

    port = embedded.free_port()
    client = sync_client(f"redis://127.0.0.1:{port}/0", outage=30)
    answered: list[bool] = []
    asking = threading.Thread(target=lambda: answered.append(bool(client.ping())))
    asking.start()
    time.sleep(0.5)  # the ping fails meanwhile: Redis is not there yet (what is tested is that it was out)
    _, proc = embedded.start_redis(tmp_path / "later", port=port)
    try:
        asking.join(30)
        assert answered == [True] and time.time() - 30 < heard_again(client) <= time.time()
    finally:
        embedded.stop(proc)


def test_a_worker_back_from_a_cut_takes_nobodys_tasks_until_the_others_could_beat(redis_url: str) -> None:
    """The host of Redis and RabbitMQ cut off for 40 s: every heartbeat is 40 s old, and RabbitMQ,
    which closed every connection, hands their messages to the first worker back at once. That
    worker took the tasks the others were still running and called their models again. Counted
    from its own reconnect, the others' heartbeats are as young as the cut's end."""
    import asyncio
    import os

    import redis.asyncio as aioredis

    from shared.adapters.redis.async_state import AsyncRunState
    from tests.conftest import wait_for

    store = _store(redis_url)
    # a dead_after of 1 s, the heartbeat 3 s old, Redis up for longer (it heard everyone meanwhile)
    wait_for(lambda: int(store.r.info("server")["uptime_in_seconds"]) >= 4, 10, "Redis up for 4 s")
    now = time.time()
    store.report_reading("w1@h", {"ts": now - 3, "pid": 11, "host": "h"})
    running = {"t1": NodeState(status=Status.RUNNING, worker="w1@h", pid=11)}

    async def held(heard_since: float) -> set[str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncRunState(client, store).held_alive(running, ("w2@h", os.getpid()), 1.0, heard_since)
        finally:
            await client.aclose()

    assert asyncio.run(held(time.time() - 0.1)) == {"t1"}, "taken from a worker that could not beat"
    assert asyncio.run(held(0.0)) == set(), "a worker silent while Redis could hear it is gone"
    assert asyncio.run(held(time.time() - 2)) == set(), "still silent 1 s after the reconnect: gone"


def test_a_claim_whose_answer_was_lost_is_still_the_claimers(redis_url: str) -> None:
    """The store's client sends a command again when its answer does not come (a partition cut it):
    the SET NX ran the first time. Taken as someone else's claim, the claim of a run's `finished`
    left a run nobody would ever mark finished, its producer waiting until it stalled."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    store = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10)
    real, lost = store.r.parse_response, []

    def answer_lost(connection: object, command_name: object, **options: object) -> object:
        answer = real(connection, command_name, **options)  # type: ignore[arg-type]
        if command_name == "SET" and not lost:  # it ran, and set the key
            lost.append(answer)
            raise RedisTimeoutError("Timeout reading from socket")
        return answer

    store.r.parse_response = answer_lost  # type: ignore[method-assign]
    run_id = f"claim-{uuid.uuid4().hex[:8]}"
    assert store.claim(run_id, "finished") and lost == [True]
    assert not store.claim(run_id, "finished")  # once: the next claimer is refused


def test_a_release_sent_again_after_its_answer_was_lost_keeps_a_claim_made_since(redis_url: str) -> None:
    """A worker whose Studio listing failed gives up its claim so another may try. The release ran,
    its answer was lost, another worker claimed in between, then the client sent the release again:
    that must not give up the other's claim (two workers would list Studio at once)."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    store = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10)
    other = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10)
    run_id = f"release-{uuid.uuid4().hex[:8]}"
    mine = store.claim(run_id, "team-listing")
    assert mine
    real, taken = store.r.parse_response, list[str | None]()

    def answer_lost(connection: object, command_name: object, **options: object) -> object:
        answer = real(connection, command_name, **options)  # type: ignore[arg-type]
        if command_name in ("EVALSHA", "DEL") and not taken:  # it ran; before its resend, another claims
            taken.append(other.claim(run_id, "team-listing"))
            raise RedisTimeoutError("Timeout reading from socket")
        return answer

    store.r.parse_response = answer_lost  # type: ignore[method-assign]
    store.release(run_id, "team-listing", mine)
    assert taken[0]  # the release had freed it
    assert not store.claim(run_id, "team-listing")  # and the other worker's claim is still there


def _first_answer_lost(monkeypatch: pytest.MonkeyPatch, owner: type, command: str) -> list[object]:
    """`owner`'s first `command` runs on Redis, then its answer is lost (a partition cut it): the
    client sends it again (shared/adapters/redis/conn.py). The answers lost, as they came."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    real, lost = owner.parse_response, list[object]()  # type: ignore[attr-defined]

    def answer_lost(self: object, connection: object, command_name: object, **options: object) -> object:
        answer = real(self, connection, command_name, **options)
        if command_name == command and not lost:
            lost.append(answer)
            raise RedisTimeoutError("Timeout reading from socket")
        return answer

    monkeypatch.setattr(owner, "parse_response", answer_lost)
    return lost


def test_a_create_lock_whose_answer_was_lost_is_still_the_takers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SET NX of a create lock ran the first time; sent again, it found the key set (by this
    very call). Taken as another's lock (a live worker's: this one), the create waited for its
    own lock to expire, 30 s for every create behind it."""
    import redis

    store, ns = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10), f"test-{uuid.uuid4().hex[:8]}"
    lost = _first_answer_lost(monkeypatch, redis.Redis, "SET")
    mine = store.create_lock(ns, "team:a", holder="w1@host", dead_after=30.0, since=time.time())
    assert mine.acquire() and lost == [True]
    assert not store.create_lock(ns, "team:a").acquire()  # held: others wait
    mine.release()  # released as its own
    assert store.create_lock(ns, "team:a").acquire()


def test_a_run_written_again_after_its_answer_was_lost_has_each_batch_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline that writes a run ran the first time; sent again, its RPUSH appended each
    wave's batches a second time: every batch was dispatched twice (its nodes run twice)."""
    from redis.client import Pipeline

    from producer.launch import new_run
    from shared.core.records import NewRun
    from shared.core.run_model import RunMeta

    store = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10)
    lost = _first_answer_lost(monkeypatch, Pipeline, "RPUSH")
    nodes = {lbl: NodeState(status=Status.PENDING) for lbl in ("a", "b", "c")}
    meta = RunMeta(**new_run(), total=len(nodes), waves=2)
    store.create_run(NewRun(meta, nodes, {}, waves=[[["a", "b"]], [["c"]]]))
    assert lost == [1]
    assert [store.wave_size(meta.run_id, w) for w in (0, 1)] == [1, 1]
    assert store.batch(meta.run_id, 0, 0) == ["a", "b"] and store.batch(meta.run_id, 1, 0) == ["c"]


def test_a_turn_whose_answer_was_lost_is_still_the_takers(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's turn at a chore for the cluster (requeuing a dead worker's messages): its SET NX
    ran, the answer was lost and the command sent again. Taken as another's turn, nobody did the
    chore that round."""
    import redis

    store = Store.from_url(redis_url, cache_ttl=60, run_ttl=60, outage=10)
    lost = _first_answer_lost(monkeypatch, redis.Redis, "SET")
    what = f"chore-{uuid.uuid4().hex[:8]}"
    assert store.take_turn(what, 30) and lost == [True]
    assert not store.take_turn(what, 30)  # one caller per period: the next is refused
