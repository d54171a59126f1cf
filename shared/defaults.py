"""Defaults the fast paths read without importing pydantic (producer/nochange.py, producer/handoff.py)
as well as the settings (shared/settings.py): standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def cache_dir(environ: Mapping[str, str]) -> Path:
    """AGENTQ_CACHE_DIR, or the default of Settings.cache_dir."""
    return Path(environ.get("AGENTQ_CACHE_DIR") or CACHE_DIR)


CACHE_DIR = Path.home() / ".cache" / "agentq"
