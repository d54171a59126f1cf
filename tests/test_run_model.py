"""The run records' one JSON codec: what Redis holds of a run and of a node, and how they change."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.core.run_model import NodeState, RunKind, RunMeta, RunState, Status


def test_a_node_state_writes_only_the_fields_it_was_given_and_reads_back_the_same() -> None:
    state = NodeState(status=Status.FAILED, type=None, path="agents/br\udcfbken.yaml", error="malformed")
    text = state.to_json()
    assert json.loads(text) == {
        "status": "failed",
        "type": None,
        "path": "agents/br\udcfbken.yaml",
        "error": "malformed",
    }
    text.encode()  # valid UTF-8 for Redis: the lone surrogate is escaped
    again = NodeState.from_json(text)
    assert again == state and again.to_json() == text
    assert again.outcome is None and again.drifted is False  # never given: the defaults


def test_updates_are_copies_and_a_later_state_lays_only_its_own_fields_over() -> None:
    running = NodeState(status=Status.RUNNING, type="agent", path="a.yaml", worker="w1")
    ended = NodeState(status=Status.DONE, outcome="validated", seconds=0.5)
    merged = running.merged(ended)
    assert merged.to_dict() == {
        "status": "done",
        "type": "agent",
        "path": "a.yaml",
        "worker": "w1",
        "outcome": "validated",
        "seconds": 0.5,
    }
    assert running.status == Status.RUNNING  # unchanged: records are frozen
    with pytest.raises(ValidationError):
        running.status = Status.DONE  # type: ignore[misc]


def test_a_run_meta_needs_its_id_state_clock_and_size_and_keeps_its_long_lists_apart() -> None:
    with pytest.raises(ValidationError):
        RunMeta.model_validate({"kind": "sync"})
    meta = RunMeta(run_id="r1", state=RunState.RUNNING, created=10.0, total=2, kind=RunKind.WORKFLOW, order=("a", "b"))
    assert json.loads(meta.to_json(without=("order",))) == {
        "run_id": "r1",
        "state": "running",
        "created": 10.0,
        "total": 2,
        "kind": "workflow",
    }
    ended = RunMeta.from_json(meta.to_json()).ended(12.5, error="cancelled", cancelled=True)
    assert ended.is_finished and ended.said_state == RunState.CANCELLED and ended.seconds() == 2.5
    assert ended.order == ("a", "b") and meta.state == RunState.RUNNING


def test_a_node_says_its_outcome_as_reports_count_it() -> None:
    said = {
        NodeState(status=Status.DONE).outcome_said(),
        NodeState(status=Status.DONE, outcome="updated").outcome_said(),
        NodeState(status=Status.CACHED).outcome_said(),
        NodeState(status=Status.SKIPPED, drifted=True).outcome_said(),
        NodeState(status=Status.SKIPPED).outcome_said(),
        NodeState(status=Status.RUNNING).outcome_said(),
    }
    assert said == {"created", "updated", "unchanged", "drifted", "skipped", "pending"}
