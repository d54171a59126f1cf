"""docker-compose.yml, the Dockerfile and the Grafana files agree with the project (no Docker engine here)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from monitoring.exporter import CeleryEvents
from shared.core.task_names import MODELS_QUEUE, STUDIO_QUEUE
from shared.metrics import COUNTER_HELP, HISTOGRAM_HELP
from shared.settings import Settings
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_service_is_there_and_workers_scale_per_queue() -> None:
    assert {"redis", "worker-studio", "worker-models", "flower", "exporter", "prometheus", "grafana", "studio"} <= set(
        SERVICES
    )
    for name, queue in (("worker-studio", STUDIO_QUEUE), ("worker-models", MODELS_QUEUE)):
        worker = SERVICES[name]
        assert "ports" not in worker and "container_name" not in worker  # --scale worker-models=4
        assert worker["command"][:4] == ["celery", "-A", "workers", "worker"]
        assert worker["command"][worker["command"].index("-Q") + 1] == queue
    assert SERVICES["studio"]["profiles"] == ["studio"]
    assert "--appendonly" in SERVICES["redis"]["command"]


def test_services_are_healthchecked_started_in_order_and_not_exposed() -> None:
    for name, svc in SERVICES.items():
        assert "healthcheck" in svc, name
        for dep, how in (svc.get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"} and "healthcheck" in SERVICES[dep], (name, dep)
        assert all(str(port).startswith("127.0.0.1:") for port in svc.get("ports", [])), name
    assert SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_celery_routes_studio_and_model_work_to_their_queues() -> None:
    import workers.tasks  # noqa: F401  (registers the tasks)
    from workers.celery_app import app

    queue_of = {name: app.amqp.router.route({}, name)["queue"].name for name in app.tasks if name.startswith("agentq.")}
    assert queue_of["agentq.sync_batch"] == queue_of["agentq.finalize"] == STUDIO_QUEUE
    assert queue_of["agentq.run_tasks"] == MODELS_QUEUE
    assert {q.name for q in app.conf.task_queues} == {STUDIO_QUEUE, MODELS_QUEUE}  # a worker without -Q takes both


def test_commands_are_the_projects_own() -> None:
    assert SERVICES["flower"]["command"][:4] == ["celery", "-A", "workers", "flower"]
    assert SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    exporter = SERVICES["exporter"]["command"]
    assert exporter[:3] == ["python", "-m", "monitoring.exporter"] and (ROOT / "monitoring/exporter.py").exists()
    port = exporter[exporter.index("--port") + 1]
    assert f"127.0.0.1:{port}:{port}" in SERVICES["exporter"]["ports"] and port == str(Settings().exporter_port)
    flower_port = re.search(r"--port=(\d+)", " ".join(SERVICES["flower"]["command"])).group(1)
    assert f"127.0.0.1:{flower_port}:{flower_port}" in SERVICES["flower"]["ports"]


def test_mounted_files_exist_and_point_at_each_other() -> None:
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    prom = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"exporter:{Settings().exporter_port}"]
    assert prom["rule_files"] == ["alerts.yml"]
    assert "/etc/prometheus/alerts.yml" in " ".join(SERVICES["prometheus"]["volumes"])
    datasource = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/agentq.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in " ".join(SERVICES["grafana"]["volumes"])


def test_dockerfile_installs_the_project_and_its_packages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("producer", "workers", "shared", "monitoring"):
        assert f"COPY {package} {package}" in text
        assert text.index("pip install --no-cache-dir .") < text.index(
            f"COPY {package} {package}"
        )  # dependencies first
    assert "USER" in text and "HEALTHCHECK" in text


def test_a_counter_the_exporter_does_not_serve_is_refused_where_it_is_counted() -> None:
    """A misspelt name, or a label left out, was counted in Redis and never exported."""
    from shared.metrics import Metrics

    metrics = Metrics()
    metrics.inc("agentq_cache_requests_total", ["team", "hit"])
    with pytest.raises(KeyError):
        metrics.inc("agentq_cache_request_total", ["team", "hit"])
    with pytest.raises(ValueError, match="takes the labels"):
        metrics.inc("agentq_cache_requests_total", ["team"])
    assert metrics.counter_fields() == {'["agentq_cache_requests_total", ["team", "hit"]]': 1.0}


def test_dashboard_queries_only_metrics_the_exporter_serves() -> None:
    served = set(COUNTER_HELP) | {f"{n}_{s}" for n in HISTOGRAM_HELP for s in ("bucket", "sum", "count")}
    served |= {f"celery_task_{e}_total" for e in CeleryEvents.TASK_EVENTS}
    served |= {f"celery_task_runtime_{s}" for s in ("bucket", "sum", "count")}
    served |= {f"celery_task_queue_wait_time_{s}" for s in ("bucket", "sum", "count")}
    served |= {
        "celery_worker_up",
        "celery_worker_tasks_active",
        "celery_active_worker_count",
        "celery_queue_length",
        "agentq_host_cpu_percent",
        "agentq_host_memory_percent",
        "agentq_host_disk_percent",
        "agentq_worker_throttled",
        "agentq_studio_up",
        "agentq_studio_probe_seconds",
    }
    recorded = {
        r["record"]
        for g in yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/agentq.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(?:celery|agentq)[a-z0-9_:]*", target["expr"]))
    assert used and used <= served | recorded, used - served - recorded


def test_monitor_reads_the_thresholds_prometheus_alerts_on(tmp_path) -> None:
    from monitoring.thresholds import thresholds

    assert thresholds() == {
        "cpu": 80.0,
        "memory": 85.0,
        "disk": 90.0,
        "studio_p95_warning": 1.0,
        "studio_p95_critical": 5.0,
        "queue_backlog": 100.0,
        "failure_ratio": 0.1,
    }
    changed = tmp_path / "alerts.yml"
    changed.write_text((ROOT / "monitoring/alerts.yml").read_text().replace("expr: vector(80)", "expr: vector(70)"))
    assert thresholds(changed)["cpu"] == 70.0


def test_the_workers_get_the_variables_of_the_example_tree_and_their_settings() -> None:
    """The ${VAR}s of components are resolved on the workers: in compose they had none of them, nor
    any setting but a few (WORKER_CONCURRENCY, MODEL_* ... never reached a worker container)."""
    env = SERVICES["worker-models"]["environment"]
    assert env == SERVICES["worker-studio"]["environment"]
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", "".join(p.read_text() for p in (ROOT / "examples").rglob("*.*"))))
    assert used and used <= set(env), used - set(env)
    settings = {f.alias or name.upper() for name, f in Settings.model_fields.items()}
    passed = {k for k, v in env.items() if v is None}  # from the shell when set there, else unset
    assert {"WORKER_CONCURRENCY", "MODEL_MAX_CONCURRENCY", "TASK_TIMEOUT_SECONDS"} <= passed
    assert passed - used - {"CELERY_CONFIG_MODULE", "AZURE_OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= settings
