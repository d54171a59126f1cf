"""Monitoring: the Prometheus exporter (`python -m monitoring.exporter`), Prometheus alert rules,
Grafana provisioning and dashboard."""
