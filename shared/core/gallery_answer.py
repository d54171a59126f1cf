"""Studio's answer about a gallery entry, read without the entry's components: they are megabytes
for a big tree, and reading them would double the time of a caller that needs only the row's id,
its timestamp and its config's id (the no-change path's check, a write's answer). Standard
library only: producer/nochange.py runs before anything heavy is imported."""

from __future__ import annotations

import json
from typing import Any

COMPONENTS = b',"components":'


def without_components(body: bytes) -> Any:
    """The answer, its `data.config.components` left out when Studio wrote them last (the text
    before them, closed, is the rest of the answer); any other layout is read whole."""
    cut = body.find(COMPONENTS)
    try:
        head = json.loads(body[:cut] + b"}}}") if cut > 0 else None
    except ValueError:
        head = None
    data = head.get("data") if isinstance(head, dict) else None
    config = data.get("config") if isinstance(data, dict) else None
    if isinstance(config, dict) and "updated_at" in data and "id" in config:  # type: ignore[operator]
        return head
    return json.loads(body)
