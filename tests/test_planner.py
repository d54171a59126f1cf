"""producer.planner.make_plan: what a sync must do, given a tree and the cache."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.planner import MIN_BATCHES_PER_WAVE, gallery_members, make_plan, split, tree_gallery_key
from shared.core.errors import ConfigError
from shared.core.tree import build_tree

HYPO = settings()


def comp(label, ctype, **config):
    return {"provider": f"pkg.{ctype}", "component_type": ctype, "label": label, "config": config}


def ref(label):
    return {"$ref": label}


def docs():
    return {
        "models/m.yaml": comp("m", "model"),
        "tools/t.yaml": comp("t", "tool"),
        "terminations/x.yaml": comp("x", "termination"),
        "workbenches/w.yaml": comp("w", "workbench", tools=[ref("t")]),
        "agents/a.yaml": comp("a", "agent", model_client=ref("m"), workbench=ref("w")),
        "teams/team.yaml": comp("team", "team", participants=[ref("a")], termination_condition=ref("x")),
    }


def plan(tree, cached=(), gallery_cached=False, last_keys=None, batch_size=50):
    cached_map = cached if isinstance(cached, dict) else {lbl: {"id": i} for i, lbl in enumerate(cached)}
    return make_plan(
        tree,
        tree_name="t",
        gallery_name="g",
        cached=cached_map,
        gallery_cached=gallery_cached,
        last_keys=last_keys or {},
        batch_size=batch_size,
    )


def flat_waves(p):
    return [sorted(lbl for batch in wave for lbl in batch) for wave in p.waves]


def test_nothing_cached_runs_everything_in_dependency_waves():
    p = plan(build_tree(docs(), {}))
    assert flat_waves(p) == [["m", "t", "x"], ["w"], ["a"], ["team"]]
    assert sorted(p.to_run) == ["a", "m", "t", "team", "w", "x"]
    assert all(st.status == "pending" for st in p.states.values())
    assert set(p.changes.values()) == {"new"}
    assert p.has_work


def test_cached_nodes_are_not_in_waves():
    p = plan(build_tree(docs(), {}), cached=["m", "t", "x"])
    assert not {"m", "t", "x"} & set(p.to_run)
    for lbl in ("m", "t", "x"):
        assert p.states[lbl].status == "cached"
        assert p.changes[lbl] == "unchanged"


def test_changed_node_wave_placement_ignores_cached_deps():
    tree = build_tree(docs(), {})
    p = plan(tree, cached=["m", "t", "x", "w"])
    # a depends on m and w, both cached: it can run at once; team follows.
    assert flat_waves(p) == [["a"], ["team"]]
    p = plan(tree, cached=["m", "t", "x", "w", "a"])
    assert flat_waves(p) == [["team"]]
    p = plan(tree, cached=["team", "a", "w", "x"])
    # a cached dependent does not pull anything after it
    assert flat_waves(p) == [["m", "t"]]


def test_everything_cached_means_no_waves():
    tree = build_tree(docs(), {})
    p = plan(tree, cached=list(tree.valid), gallery_cached=True)
    assert p.waves == [] and p.to_run == []
    assert not p.gallery_needed
    assert not p.has_work


def test_cached_state_carries_the_cached_result():
    tree = build_tree(docs(), {})
    p = plan(tree, cached={"m": {"gallery_id": 42, "status": "bogus"}, "t": None})
    assert p.states["m"].to_dict() == {
        "type": "model",
        "path": "models/m.yaml",
        "gallery_id": 42,
        "status": "cached",
        "outcome": "unchanged",
    }
    assert p.states["t"].status == "cached"


def test_new_versus_changed_by_last_keys():
    tree = build_tree(docs(), {})
    p = plan(tree, last_keys={"a": "old-key", "team": "old"})
    assert p.changes["a"] == "changed"
    assert p.changes["team"] == "changed"
    assert p.changes["m"] == "new"


def test_gallery_needed_unless_cached():
    tree = build_tree(docs(), {})
    assert plan(tree).gallery_needed
    assert plan(tree, cached=list(tree.valid)).gallery_needed
    assert not plan(tree, gallery_cached=True).gallery_needed
    assert plan(tree, cached=list(tree.valid)).has_work


def test_gallery_members_are_the_valid_standalone_kinds():
    tree = build_tree(docs(), {})
    p = plan(tree)
    assert p.gallery_members == gallery_members(tree) == ["a", "m", "t", "x"]
    assert p.gallery_key == tree_gallery_key(tree, "g")
    assert p.gallery_key != tree_gallery_key(tree, "other-gallery")


def test_gallery_key_follows_member_keys():
    base = plan(build_tree(docs(), {})).gallery_key
    changed = docs()
    changed["models/m.yaml"]["config"]["model"] = "new"
    assert plan(build_tree(changed, {})).gallery_key != base
    team_only = docs()
    team_only["teams/team.yaml"]["description"] = "teams are not gallery members"
    assert plan(build_tree(team_only, {})).gallery_key == base


def test_no_gallery_without_members():
    tree = build_tree({"w.yaml": comp("w", "workbench"), "c.yaml": comp("c", "chat_completion_context")}, {})
    p = plan(tree)
    assert p.gallery_members == [] and p.gallery_key is None
    assert not p.gallery_needed


def test_invalid_skipped_and_broken_files_get_states_and_no_work():
    d = docs()
    d["models/m.yaml"]["config"]["key"] = "${MISSING}"
    d["agents/bad.yaml"] = ConfigError(path="agents/bad.yaml", message="malformed YAML at line 1, column 1: x")
    tree = build_tree(d, {})
    p = plan(tree)
    assert p.states["m"].status == "failed"
    assert "MISSING" in p.states["m"].error
    assert p.states["a"].status == "skipped"
    assert "'m'" in p.states["a"].reason
    assert p.states["team"].status == "skipped"
    assert p.states["agents/bad.yaml"].to_dict() == {
        "status": "failed",
        "type": None,
        "path": "agents/bad.yaml",
        "error": "malformed YAML at line 1, column 1: x",
    }
    assert p.changes["m"] == "invalid" and p.changes["a"] == "skipped"
    assert p.changes["agents/bad.yaml"] == "invalid"
    assert flat_waves(p) == [["t", "x"], ["w"]]
    assert "m" not in p.gallery_members and "a" not in p.gallery_members


def test_batches_split_a_wave():
    tree = build_tree({f"t{i:02d}.yaml": comp(f"t{i:02d}", "tool") for i in range(40)}, {})
    p = plan(tree, batch_size=3)
    (wave,) = p.waves
    assert all(1 <= len(b) <= 3 for b in wave)
    assert [lbl for b in wave for lbl in b] == sorted(tree.valid)


@HYPO
@given(labels=st.lists(st.text(min_size=1, max_size=3), max_size=200, unique=True), batch_size=st.integers(1, 100))
def test_split_properties(labels, batch_size):
    batches = split(labels, batch_size)
    assert [x for b in batches for x in b] == labels
    assert all(1 <= len(b) <= batch_size for b in batches)
    # Never bigger than needed to give MIN_BATCHES_PER_WAVE batches: a small wave is spread out.
    assert all(len(b) <= max(1, math.ceil(len(labels) / MIN_BATCHES_PER_WAVE)) for b in batches)
    if len(labels) <= MIN_BATCHES_PER_WAVE:
        assert batches == [[x] for x in labels]
    assert len({len(b) for b in batches[:-1]}) <= 1


@st.composite
def trees_and_cache(draw):
    n = draw(st.integers(1, 12))
    d, deps = {}, {}
    for i in range(n):
        lower = sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
        deps[f"c{i}"] = [f"c{j}" for j in lower]
        ctype = draw(st.sampled_from(["model", "tool", "agent", "team"]))
        d[f"c{i}.yaml"] = comp(f"c{i}", ctype, refs=[ref(f"c{j}") for j in lower])
    cached = draw(st.sets(st.sampled_from(sorted(deps))))
    return build_tree(d, {}), deps, cached


@HYPO
@given(data=trees_and_cache(), batch_size=st.integers(1, 5))
def test_plan_runs_exactly_the_uncached_nodes_in_minimal_waves(data, batch_size):
    tree, deps, cached = data
    p = plan(tree, cached=sorted(cached), batch_size=batch_size)
    assert sorted(p.to_run) == sorted(set(deps) - cached)
    assert len(p.to_run) == len(set(p.to_run))
    where = {lbl: k for k, wave in enumerate(p.waves) for batch in wave for lbl in batch}
    for wave in p.waves:
        assert all(1 <= len(batch) <= batch_size for batch in wave)
    for lbl, k in where.items():
        run_deps = [d for d in deps[lbl] if d in where]
        assert all(where[d] < k for d in run_deps)
        assert k == 0 or any(where[d] == k - 1 for d in run_deps)


def test_a_resident_plan_takes_again_the_first_states_decided_alike_and_makes_the_rest():
    """A watch's next plan: the same objects (and JSON) where label and fields are the same; a
    state whose cache entry changed is made anew, equal to what a plan with no memory makes."""
    tree = build_tree(docs(), {})
    entries = {lbl: {"outcome": "created", "team_id": None} for lbl in ("m", "t", "x", "w")}
    first = make_plan(
        tree,
        tree_name="t",
        gallery_name="g",
        cached=entries,
        gallery_cached=False,
        last_keys={},
        batch_size=50,
        known={},
    )
    entries["w"] = {"outcome": "created", "team_id": 7}
    again = dict(tree_name="t", gallery_name="g", cached=entries, gallery_cached=False, last_keys={}, batch_size=50)
    second = make_plan(tree, **again, known=first.first_states)
    assert second.states == make_plan(tree, **again).states  # as if made afresh
    assert {lbl for lbl in second.states if second.states[lbl] is first.states[lbl]} == {"m", "t", "x", "a", "team"}
    assert second.settled["w"].json == second.states["w"].to_json() and second.settled["w"].state is second.states["w"]
    assert len(second.first_states) == len(second.states)  # the last plan's only: it does not grow
