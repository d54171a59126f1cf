"""Drift, prune candidates and the secret-blind content hash: pure, no server."""

from __future__ import annotations

from typing import Any

from shared.core.drift import WrittenRow, drifted, gone, prune_candidates
from shared.core.secrets import content_hash, is_secret_field, mask_secrets, secret_fields


def _team(label: str, message: str = "hi", key: str = "sk-secret-1") -> dict[str, Any]:
    model = {"provider": "OpenAIChatCompletionClient", "config": {"model": "m", "api_key": key, "max_tokens": 5}}
    agent = {"provider": "AssistantAgent", "config": {"system_message": message, "model_client": model}}
    return {"provider": "RoundRobinGroupChat", "label": label, "config": {"participants": [agent]}}


def _row(row_id: int, component: dict[str, Any]) -> dict[str, Any]:
    return {"id": row_id, "component": component, "updated_at": "2026-11-24T00:00:00"}


def _written(
    label: str, row_id: int, component: dict[str, Any], created: bool = True, path: str | None = None
) -> WrittenRow:
    return WrittenRow(label, row_id, content_hash(component), "/tree", path or f"teams/{label}.yaml", created)


def test_secret_fields_are_named_fields_only() -> None:
    assert is_secret_field("api_key") and is_secret_field("OPENAI_API_KEY") and is_secret_field("client_secret")
    assert not is_secret_field("max_tokens") and not is_secret_field("model")
    team = _team("t")
    assert [path for path, _ in secret_fields(team)] == ["config.participants[0].config.model_client.config.api_key"]
    assert "sk-secret-1" not in str(mask_secrets(team))


def test_content_hash_sees_every_edit_but_no_secret() -> None:
    assert content_hash(_team("t", key="one")) == content_hash(_team("t", key="two"))
    assert content_hash(_team("t")) != content_hash(_team("t", message="edited"))
    assert "sk-secret-1" not in content_hash(_team("t"))


def test_drift_is_an_edit_or_relabel_of_a_row_still_there() -> None:
    written = {
        "a": _written("a", 1, _team("a")),
        "b": _written("b", 2, _team("b")),
        "c": _written("c", 3, _team("c")),
        "d": _written("d", 4, _team("d")),
    }
    rows = {1: _row(1, _team("a")), 2: _row(2, _team("b", message="edited")), 3: _row(3, _team("renamed"))}
    found = drifted(written, rows)
    assert set(found) == {"b", "c"}
    assert "edited in Studio" in found["b"].reason and "renamed" in found["c"].reason
    assert gone(written, rows) == {"d"}


def test_prune_takes_only_created_rows_whose_label_is_gone_and_whose_file_was_read() -> None:
    written = {
        "kept": _written("kept", 1, _team("kept")),
        "removed": _written("removed", 2, _team("removed")),
        "adopted": _written("adopted", 3, _team("adopted"), created=False),
        "broken": _written("broken", 4, _team("broken")),
        "already-gone": _written("already-gone", 5, _team("already-gone")),
        "edited": _written("edited", 6, _team("edited")),
    }
    rows = {i: _row(i, _team(w.label)) for i, w in enumerate(written.values(), start=1) if w.row_id != 5}
    rows[6] = _row(6, _team("edited", message="theirs now"))
    drift = drifted(written, rows)
    unreadable = {"teams/broken.yaml"}
    chosen = prune_candidates(written, rows, {"kept"}, unreadable, drift)
    assert [w.label for w in chosen] == ["removed"]
    forced = prune_candidates(written, rows, {"kept"}, unreadable, {})
    assert [w.label for w in forced] == ["edited", "removed"]


def test_no_row_is_pruned_whose_file_was_in_a_folder_that_could_not_be_read() -> None:
    """A folder's link that leads nowhere (a submodule not checked out), or one leaving the tree:
    its files' labels are missing from the tree, but they are not gone."""
    written = {
        label: _written(label, i, _team(label), path=path)
        for i, (label, path) in enumerate((("a", "teams/a.yaml"), ("b", "teams/deep/b.yaml"), ("c", "other/c.yaml")), 1)
    }
    rows = {w.row_id: _row(w.row_id, _team(w.label)) for w in written.values()}
    assert [w.label for w in prune_candidates(written, rows, set(), {"teams"}, {})] == ["c"]
    assert [w.label for w in prune_candidates(written, rows, set(), {"teams/"}, {})] == ["c"]
    assert [w.label for w in prune_candidates(written, rows, set(), {"team"}, {})] == ["a", "b", "c"]
    assert prune_candidates(written, rows, set(), {"."}, {}) == []  # the root could not be listed


def test_written_rows_round_trip_as_json() -> None:
    record = _written("a", 7, _team("a"), created=False)
    assert WrittenRow.from_json(record.to_json()) == record


def test_an_unchanged_timestamp_needs_no_hash_and_a_same_content_resave_is_brought_up_to_date() -> None:
    from dataclasses import replace

    from shared.core.drift import touched

    record = replace(_written("a", 1, _team("a")), updated_at="t1")
    same_time = {1: {**_row(1, _team("a", message="edited")), "updated_at": "t1"}}
    assert drifted({"a": record}, same_time) == {}  # the timestamp says nobody wrote it
    resaved = {1: {**_row(1, _team("a")), "updated_at": "t2"}}
    assert drifted({"a": record}, resaved) == {}
    assert [w.updated_at for w in touched({"a": record}, resaved)] == ["t2"]
    edited = {1: {**_row(1, _team("a", message="edited")), "updated_at": "t2"}}
    assert set(drifted({"a": record}, edited)) == {"a"} and touched({"a": record}, edited) == []
