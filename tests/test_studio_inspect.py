"""producer/studio_state.py's inspect and delete_rows against a Studio and a store made up here:
drift, a row edited to what the tree now sends, rows gone or to prune, the tree's own gallery
entry, a Studio that fails; the node states a prune leaves in the run."""

from __future__ import annotations

from typing import Any

import pytest

from producer import studio_state
from shared.core.drift import WrittenRow
from shared.core.secrets import content_hash
from shared.ports import StudioError
from shared.settings import Settings

TREE = "/trees/t"


def _team(row_id: int, label: str, text: str, updated_at: str) -> dict[str, Any]:
    return {"id": row_id, "component": {"label": label, "text": text}, "updated_at": updated_at}


def _written(label: str, row_id: int, text: str, created: bool = True) -> WrittenRow:
    return WrittenRow(label, row_id, content_hash({"label": label, "text": text}), TREE, f"{label}.json", created, "t0")


class FakeStore:
    def __init__(self, written: list[WrittenRow], owned: tuple[int, str] | None = None) -> None:
        self.written = {w.label: w for w in written}
        self.owned = owned
        self.recorded: list[WrittenRow] = []
        self.forgotten: list[str] = []
        self.disowned: list[str] = []

    def written_rows(self, ns: str, tree: str | None = None) -> dict[str, WrittenRow]:
        return {k: w for k, w in self.written.items() if tree is None or w.tree == tree}

    def owned_gallery(self, ns: str, name: str) -> tuple[int, str] | None:
        return self.owned

    def record_written(self, ns: str, row: WrittenRow) -> None:
        self.recorded.append(row)

    def forget_written(self, ns: str, label: str) -> None:
        self.forgotten.append(label)

    def disown_gallery(self, ns: str, name: str) -> None:
        self.disowned.append(name)


class FakeStudio:
    def __init__(self, teams: list[dict[str, Any]], galleries: dict[int, dict[str, Any]], fail: bool) -> None:
        self.teams, self.galleries, self.fail = teams, galleries, fail
        self.asked_gallery: list[int] = []
        self.user_id = "me"
        self.deleted: list[str] = []

    async def __aenter__(self) -> FakeStudio:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def list_teams(self) -> list[dict[str, Any]]:
        if self.fail:
            raise StudioError("GET", "/teams/", 503, "unavailable", retryable=True)
        return self.teams

    async def get_team(self, team_id: int) -> dict[str, Any] | None:
        return next((row for row in self.teams if row["id"] == team_id), None)

    async def request(self, method: str, path: str, **_: Any) -> None:
        if path == "/teams/5":
            raise StudioError(method, path, 500, "boom")
        self.deleted.append(f"{method} {path}")

    async def get_gallery(self, gallery_id: int) -> dict[str, Any] | None:
        self.asked_gallery.append(gallery_id)
        return self.galleries.get(gallery_id)


@pytest.fixture
def studio(monkeypatch: pytest.MonkeyPatch) -> FakeStudio:
    fake = FakeStudio([], {}, fail=False)
    monkeypatch.setattr(studio_state, "client", lambda settings, **_: fake)
    return fake


def _inspect(store: FakeStore, **kwargs: Any) -> studio_state.StudioView:
    args: dict[str, Any] = {"tree_labels": {"kept"}, "unreadable": set(), "gallery_empty": False, **kwargs}
    return studio_state.inspect(Settings(), store, "ns", TREE, gallery_name="g", **args)  # type: ignore[arg-type]


def test_a_tree_that_wrote_nothing_asks_studio_nothing(studio: FakeStudio) -> None:
    studio.fail = True  # it would say so
    assert _inspect(FakeStore([])) == studio_state.StudioView()


def test_drift_rows_gone_and_rows_to_prune(studio: FakeStudio) -> None:
    store = FakeStore(
        [_written("kept", 1, "a"), _written("edited", 2, "b"), _written("deleted", 3, "c"), _written("old", 4, "d")]
    )
    studio.teams = [_team(1, "kept", "a", "t0"), _team(2, "edited", "B", "t1"), _team(4, "old", "d", "t0")]
    view = _inspect(store)
    assert list(view.drift) == ["edited"] and view.drift["edited"].row_id == 2
    assert view.gone == {"deleted"}
    assert [w.label for w in view.prune] == ["old"]  # "edited" drifted: not pruned unless forced
    assert [w.label for w in _inspect(store, force=True).prune] == ["edited", "old"]
    assert view.prune_gallery is None and view.error is None and studio.asked_gallery == []


def test_a_row_edited_to_what_the_tree_now_sends_has_not_drifted(studio: FakeStudio) -> None:
    store = FakeStore([_written("kept", 1, "a"), _written("same", 2, "s")])
    studio.teams = [_team(1, "kept", "A", "t1"), _team(2, "same", "s", "t2")]
    now = content_hash({"label": "kept", "text": "A"})
    view = _inspect(store, sends=lambda label: now if label == "kept" else None)
    assert view.drift == {}
    # the edited row's record takes its content; the row saved again unchanged, its timestamp
    assert [(w.label, w.hash, w.updated_at) for w in store.recorded] == [
        ("kept", now, "t1"),
        ("same", store.written["same"].hash, "t2"),
    ]


def test_the_trees_own_gallery_entry_is_pruned_only_when_the_tree_is_empty_and_it_is_there(
    studio: FakeStudio,
) -> None:
    studio.galleries = {7: {"id": 7}}
    assert _inspect(FakeStore([], owned=(7, TREE)), gallery_empty=True).prune_gallery == 7
    assert _inspect(FakeStore([], owned=(7, TREE)), gallery_empty=False).prune_gallery is None
    assert studio.asked_gallery == [7]  # a tree with components never asks for its (big) entry
    assert _inspect(FakeStore([], owned=(8, TREE)), gallery_empty=True).prune_gallery is None  # gone
    assert _inspect(FakeStore([], owned=(7, "/other")), gallery_empty=True) == studio_state.StudioView()


def test_a_studio_that_fails_leaves_drift_unknown(studio: FakeStudio) -> None:
    studio.fail = True
    view = _inspect(FakeStore([_written("kept", 1, "a")]))
    assert view.error is not None and "could not read Studio's teams" in view.error and view.drift == {}


def test_a_prune_leaves_a_node_state_for_each_row_it_deleted_skipped_or_failed(studio: FakeStudio) -> None:
    store = FakeStore([])
    studio.teams = [_team(4, "old", "d", "t0"), _team(6, "renamed", "x", "t1"), _team(5, "stuck", "s", "t0")]
    prune = [
        _written("old", 4, "d"),
        _written("gone", 3, "c"),
        _written("relabelled", 6, "x"),
        _written("stuck", 5, "s"),
    ]
    view = studio_state.StudioView(prune=prune, prune_gallery=7)
    states = studio_state.delete_rows(Settings(), store, "ns", view, "g")  # type: ignore[arg-type]
    assert {label: state.to_json() for label, state in states.items()} == {
        "old": '{"status":"done","type":"team","path":"old.json","outcome":"deleted","team_id":4}',
        "gone": '{"status":"skipped","type":"team","path":"gone.json","reason":"no longer in Studio","team_id":3}',
        "relabelled": '{"status":"skipped","type":"team","path":"relabelled.json","reason":"no longer in Studio",'
        '"team_id":6}',
        "stuck": '{"status":"failed","type":"team","path":"stuck.json","error":"could not delete: Studio answered 500 '
        'on DELETE /teams/5: boom","team_id":5}',
        "gallery:g": '{"status":"done","type":"gallery","outcome":"deleted"}',
    }
    assert studio.deleted == ["DELETE /teams/4", "DELETE /gallery/7"]
    assert store.forgotten == ["old", "gone", "relabelled"] and store.disowned == ["g"]
