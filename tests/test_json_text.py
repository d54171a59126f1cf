"""JSON text as run state, caches and reports carry it: what json.loads reads back is what went in,
including what orjson refuses (a config file may hold any of these)."""

from __future__ import annotations

import json

import pytest

from shared.core.json_text import dumps


def _nested(depth: int) -> dict[str, object]:
    root: dict[str, object] = {}
    node = root
    for _ in range(depth):
        child: dict[str, object] = {}
        node["a"] = child
        node = child
    return root


@pytest.mark.parametrize(
    "value",
    [
        {"label": "agent-1", "config": {"temperature": 0.1, "seed": 7, "stop": None, "tools": [True, "é"]}},
        {"seed": 2**70, "negative": -(2**100)},  # past 64 bits: orjson refuses them
        {"text": "\ud800 lone surrogate"},  # orjson refuses it; Redis must still get valid UTF-8
        _nested(300),  # past orjson's 254 levels
        {1: "an int key", "status": "done"},
        [1e-05, 1e22, 0.1, -0.0],
    ],
)
def test_what_is_read_back_is_what_was_written(value: object) -> None:
    expected = json.loads(json.dumps(value))
    for indent in (False, True):
        text = dumps(value, indent=indent)
        text.encode("utf-8")  # no lone surrogate left raw
        assert json.loads(text) == expected


def test_an_indented_report_reads_as_the_standard_library_writes_it() -> None:
    report = {"seconds": None, "counts": {"created": 2}, "nodes": {"a": {"status": "done", "error": None}}}
    assert dumps(report, indent=True) == json.dumps(report, indent=2)
