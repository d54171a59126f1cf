"""The producer: scans a config tree, plans the work and enqueues it on the workers.

`from producer import plan, sync, run_workflow` is its Python API (producer/api.py); the
`producer` command is producer/cli.py. Names are loaded on first use, so the CLI stays quick.
"""

from __future__ import annotations

from typing import Any

__all__ = ["plan", "sync", "run_workflow"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from producer import api

        return getattr(api, name)
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
