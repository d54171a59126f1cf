"""The layout shows the architecture: the pure core (shared/core) imports nothing that does I/O,
and nothing below the producer imports the producer."""

from __future__ import annotations

import ast
from pathlib import Path

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
    "urllib",
    "openai",
    "autogen_agentchat",
    "autogen_ext",
    "producer",
    "workers",
    "monitoring",
    "shared.store",
    "shared.studio",
    "shared.semaphore",
    "shared.metrics",
    "shared.settings",
    "shared.run_metrics",
    "os",
    "pathlib",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _hits(names: set[str], banned: set[str]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


def test_the_core_does_no_io() -> None:
    found = {str(p.relative_to(ROOT)): _hits(_imports(p), IO) for p in (ROOT / "shared" / "core").glob("*.py")}
    assert len(found) >= 10
    assert not {k: v for k, v in found.items() if v}, found


def test_layers_never_import_upwards() -> None:
    for layer, above in (("shared", {"producer", "workers", "monitoring"}), ("workers", {"producer", "monitoring"})):
        for path in (ROOT / layer).rglob("*.py"):
            assert not _hits(_imports(path), above), (path, _hits(_imports(path), above))
