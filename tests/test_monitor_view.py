"""What `producer monitor` makes of the exporter's metrics, without servers (producer/monitor.py)."""

from __future__ import annotations

from producer.monitor import _workers, parse_metrics


def test_a_worker_the_exporter_has_not_heard_from_is_not_shown_up() -> None:
    """After the exporter restarted, a worker lost meanwhile was known only by its heartbeat in
    Redis (kept a minute), and was shown up, with no WorkerGone alert."""
    text = (
        "# TYPE celery_worker_up gauge\n"
        'celery_worker_up{hostname="w1@a"} 1.0\n'
        "# TYPE agentq_worker_throttled gauge\n"
        'agentq_worker_throttled{worker="w1@a"} 0.0\n'
        'agentq_worker_throttled{worker="w3@c"} 1.0\n'
    )
    workers = _workers(parse_metrics(text))
    assert workers["w1@a"]["up"] is True and workers["w1@a"]["throttled"] is False
    assert workers["w3@c"]["up"] is False and workers["w3@c"]["throttled"] is True


def test_redis_out_of_the_exporters_reach_and_no_worker_are_alerts_of_their_own() -> None:
    """Redis down used to read as the exporter unreachable; no worker at all, as nothing wrong."""
    from producer.monitor import Monitor

    text = (
        "# TYPE agentq_redis_up gauge\nagentq_redis_up 0.0\n"
        "# TYPE celery_active_worker_count gauge\ncelery_active_worker_count 0.0\n"
    )
    snap = Monitor("http://127.0.0.1:9")._snapshot(0.0, parse_metrics(text))
    assert [a["name"] for a in snap.alerts] == ["RedisDown", "NoWorkers"]
    assert snap.redis_up is False and snap.worker_count == 0
    healthy = "agentq_redis_up 1.0\ncelery_active_worker_count 2.0\n"
    assert Monitor("http://127.0.0.1:9")._snapshot(0.0, parse_metrics(healthy)).alerts == []


def test_a_task_received_before_its_sent_event_is_counted_on_its_queue() -> None:
    """A worker's "received" can reach the exporter before the producer's "sent" (15% here)."""
    from prometheus_client import CollectorRegistry

    from monitoring.exporter import CeleryEvents

    registry = CollectorRegistry()
    events = CeleryEvents(registry)
    events.on_event({"type": "task-received", "uuid": "u1", "name": "agentq.run_tasks", "hostname": "w1@a"})
    events.on_event({"type": "task-sent", "uuid": "u1", "name": "agentq.run_tasks", "hostname": "gen1@p"})
    labels = {"name": "agentq.run_tasks", "hostname": "w1@a", "queue_name": "models"}
    assert registry.get_sample_value("celery_task_received_total", labels) == 1.0
    sent = {**labels, "hostname": "producer"}
    assert registry.get_sample_value("celery_task_sent_total", sent) == 1.0


def test_no_answer_from_the_exporter_is_no_rate_not_a_rate_of_zero() -> None:
    from producer.monitor import Monitor

    watcher = Monitor("http://127.0.0.1:9")  # nothing listens there
    watcher.poll()
    snap = watcher.poll()
    assert snap.tasks_per_second is None and snap.failure_ratio is None
    assert snap.alerts[0]["name"] == "ExporterUnreachable"
