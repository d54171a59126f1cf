"""A real Prometheus scrapes the real exporter while real workers run a sync into a real Studio."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from producer import embedded
from tests.conftest import ROOT, WORKER_ENV, Cli, wait_for
from tests.studio_proxy import StudioProxy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="prometheus not installed (scripts/install.sh installs it)"
    ),
]


def test_promtool_checks_config_rules_and_rule_unit_tests() -> None:
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        proc = subprocess.run(["promtool", *args], cwd=ROOT / "monitoring", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    covered = {
        t["alertname"]
        for case in yaml.safe_load((ROOT / "monitoring/alerts_test.yml").read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    alerts = {
        r["alert"]
        for g in yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert alerts == covered, f"alerts without a firing unit test: {alerts - covered}"


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> float | None:
        data = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, want: float, timeout: float = 60) -> float:
        """`expr`'s value once it equals `want`; fails loudly, with the last value seen, if it never does."""
        wait_for(lambda: self.query(expr) == want, timeout, f"{expr} == {want:g}", interval=0.5)
        return want

    def firing(self) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


@pytest.fixture
def stack(tmp_path: Path, studio_url: str) -> Iterator[dict]:
    """Own Redis, worker, exporter and Prometheus (metrics are cluster-wide: counts must be this test's)."""
    with embedded.LocalServices() as services:
        redis_url, proc = embedded.start_redis(tmp_path / "redis")
        services.add_process(proc)
        services.add_process(
            embedded.start_worker(
                redis_url, env={**WORKER_ENV, "RESOURCE_INTERVAL_SECONDS": "1"}, log_path=tmp_path / "worker.log"
            )
        )
        proxy = StudioProxy(studio_url)
        services.callback(proxy.close)
        exporter_port = embedded.free_port()
        services.add_process(
            embedded.start_exporter(
                redis_url,
                exporter_port,
                env={
                    "STUDIO_URL": proxy.url,
                    "STUDIO_PROBE_INTERVAL_SECONDS": "1",
                    "EXPORTER_QUEUES": "studio,models,bulk",
                },
                log_path=tmp_path / "exporter.log",
            )
        )
        rules = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"  # the real expressions, without the waiting
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "agentq", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_port = embedded.free_port()
        prom = embedded.spawn(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        services.add_process(prom)
        url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: _ready(f"{url}/-/ready"), 60, "Prometheus to be ready", interval=0.2)
        cli = Cli(redis_url, proxy.url, f"prom-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        yield {"prom": Prom(url), "cli": cli, "proxy": proxy, "redis_url": redis_url}


def test_prometheus_sees_tasks_queue_cache_and_studio_latency(stack: dict, examples: Path) -> None:
    prom, cli = stack["prom"], stack["cli"]
    # the exporter hears the worker's events before the run: none of its task events is missed (a
    # sync over before the exporter listened counted fewer batches on a loaded machine)
    prom.wait_for("celery_active_worker_count", 1)
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    rc, again, err = cli.sync(examples)
    assert rc == 0 and again["counts"]["unchanged"] == 15

    # validation happens on the workers (same AutoGen as Studio): the team writes are Studio's requests
    assert "POST /validate/" not in report["studio_requests"]
    writes = report["studio_requests"]["POST /teams/"]
    assert prom.wait_for('sum(agentq_cache_requests_total{result="miss"})', 15) == 15
    assert prom.wait_for('sum(agentq_cache_requests_total{result="hit"})', 15) == 15
    assert (
        prom.wait_for('sum(agentq_studio_request_duration_seconds_count{endpoint="/teams/",method="POST"})', writes)
        == writes
    )
    assert prom.wait_for('sum(agentq_sync_outcomes_total{component_type="team",outcome="created"})', 3) == 3
    assert prom.wait_for('sum(agentq_sync_outcomes_total{component_type="team",outcome="unchanged"})', 3) == 3
    batches = prom.wait_for('sum(celery_task_succeeded_total{name="agentq.sync_batch"})', 15)
    assert batches == 15  # one node per batch: every wave is smaller than 8 nodes
    assert prom.query('celery_queue_length{queue_name="studio"}') == 0
    assert prom.wait_for("celery_active_worker_count", 1) == 1
    assert prom.wait_for("agentq_studio_up", 1) == 1
    assert (prom.query("agentq_host_memory_percent") or 0) > 0
    p95 = prom.query("histogram_quantile(0.95, sum by (le) (agentq_studio_request_duration_seconds_bucket))")
    assert p95 is not None and 0 < p95 < 2.0
    assert "StudioLatencyHigh" not in prom.firing()

    # messages waiting in the priority lists count too (a queue no worker consumes from)
    import redis as redis_lib

    r = redis_lib.Redis.from_url(stack["redis_url"])
    r.rpush("bulk", "a")
    r.rpush("bulk\x06\x163", "x", "y")
    r.rpush("bulk\x06\x169", "z")
    assert prom.wait_for('celery_queue_length{queue_name="bulk"}', 4) == 4


def test_a_slow_studio_fires_the_latency_alert(stack: dict, examples: Path) -> None:
    prom, cli, proxy = stack["prom"], stack["cli"], stack["proxy"]
    proxy.delay = 1.3
    rc, report, err = cli.sync(examples)
    assert rc == 0, err
    wait_for(lambda: "StudioLatencyHigh" in prom.firing(), 60, "StudioLatencyHigh to fire", interval=0.5)
    assert "StudioLatencyCritical" not in prom.firing()
    assert 1.0 < prom.query("agentq:studio_request_duration_seconds:p95") < 5.0


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_exporter_says_redis_out_of_reach_at_once_and_forgets_a_worker_stopped_on_purpose(
    tmp_path: Path,
) -> None:
    """A scrape waited out REDIS_OUTAGE_SECONDS (60 s) and then answered 500, so Prometheus saw the
    exporter down and every series stale; a worker shut down cleanly stayed `celery_worker_up 0`."""
    import time

    with embedded.LocalServices() as services:
        redis_url, redis_proc = embedded.start_redis(tmp_path / "redis")
        services.add_process(redis_proc)
        worker = embedded.start_worker(redis_url, name="leaving", env=WORKER_ENV, log_path=tmp_path / "worker.log")
        services.add_process(worker)
        port = embedded.free_port()
        services.add_process(
            embedded.start_exporter(
                redis_url, port, env={"STUDIO_URL": "http://127.0.0.1:9"}, log_path=tmp_path / "e.log"
            )
        )
        url = f"http://127.0.0.1:{port}"

        def metrics() -> str:
            return httpx.get(f"{url}/metrics", timeout=30).text

        wait_for(lambda: 'celery_worker_up{hostname="leaving' in metrics(), 60, "the worker heard", interval=0.2)
        embedded.stop_worker(worker, grace=30)  # a warm shutdown: its offline event
        wait_for(lambda: "celery_worker_up{" not in metrics(), 30, "the series gone", interval=0.2)
        assert "agentq_redis_up 1.0" in metrics()

        embedded.stop(redis_proc)
        started = time.monotonic()
        text = metrics()
        assert time.monotonic() - started < 8, "a scrape waited out the outage"
        assert "agentq_redis_up 0.0" in text and "agentq_studio_up" in text, text
        started = time.monotonic()
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 503 and time.monotonic() - started < 5
