"""shared.core.tree.build_tree and the Merkle keys of shared.core.hashing, from plain dicts."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.scanner import scan
from shared.core import components
from shared.core.errors import ConfigError
from shared.core.hashing import canonical_json, node_key
from shared.core.refs import substitute_variables
from shared.core.tree import build_tree

HYPO = settings()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def comp(label, ctype="agent", **config):
    return {
        "provider": f"pkg.{ctype.title()}",
        "component_type": ctype,
        "version": 1,
        "component_version": 1,
        "label": label,
        "description": f"the {label}",
        "config": config,
    }


def ref(label):
    return {"$ref": label}


def basic_docs():
    return {
        "models/m.yaml": comp("m", "model", model="gpt"),
        "tools/t.yaml": comp("t", "tool", name="t"),
        "agents/a.yaml": comp("a", "agent", model_client=ref("m"), tools=[ref("t")]),
        "terminations/x.yaml": comp("x", "termination", max_messages=3),
        "teams/team.yaml": comp("team", "team", participants=[ref("a")], termination_condition=ref("x")),
    }


def errors_for(tree, path):
    return [e for e in tree.errors if e.path == path]


# --- a valid tree ---------------------------------------------------------------------------------


def test_valid_tree():
    tree = build_tree(basic_docs(), {})
    assert tree.errors == []
    assert tree.invalid == {} and tree.skipped == {} and tree.broken_files == {}
    assert tree.valid == ["a", "m", "t", "team", "x"]
    assert tree.nodes["a"].deps == ["m", "t"]
    assert tree.nodes["team"].deps == ["a", "x"]
    assert tree.nodes["a"].path == "agents/a.yaml"
    assert tree.nodes["a"].component_type == "agent"
    assert sorted(tree.nodes["a"].refs) == [("config.model_client", "m"), ("config.tools[0]", "t")]
    keys = [n.key for n in tree.nodes.values()]
    assert all(len(k) == 64 for k in keys)
    assert len(set(keys)) == len(keys)


def test_resolved_inlines_recursively_and_keeps_specs_unresolved():
    docs = basic_docs()
    original = copy.deepcopy(docs)
    tree = build_tree(docs, {})
    team = tree.resolved("team")
    assert team["config"]["participants"][0]["label"] == "a"
    agent = team["config"]["participants"][0]
    assert agent["config"]["model_client"] == original["models/m.yaml"]
    assert agent["config"]["tools"] == [original["tools/t.yaml"]]
    assert team["config"]["termination_condition"] == original["terminations/x.yaml"]
    assert "$ref" not in canonical_json(team)
    assert tree.nodes["team"].spec == original["teams/team.yaml"]
    assert docs == original


def test_resolved_shares_one_dependency_used_twice():
    docs = {
        "m.yaml": comp("m", "model"),
        "a.yaml": comp("a", model_client=ref("m"), backup=ref("m")),
    }
    resolved = build_tree(docs, {}).resolved("a")
    assert resolved["config"]["model_client"] == resolved["config"]["backup"] == docs["m.yaml"]


def test_a_reference_to_a_component_of_another_type_is_explained_by_file_field_and_types():
    """AutoGen says only "Expected type does not match": the tree says which field of which file
    names what, for the node and for each node it takes in (a team's participant)."""
    docs = basic_docs()
    docs["agents/a.yaml"] = comp("a", "agent", model_client=ref("t"), tools=[ref("t")])
    docs["teams/team.yaml"] = comp("team", "team", participants=[ref("a"), ref("m")], termination_condition=ref("x"))
    tree = build_tree(docs, {})
    assert tree.errors == [], "AutoGen judges by class: nothing is refused for it here"
    wrong_client = "agents/a.yaml: config.model_client refers to 't' (tools/t.yaml), a tool; it holds a model"
    assert [m.said for m in tree.mistyped("a")] == [wrong_client]
    assert {m.said for m in tree.mistyped("team")} == {
        "teams/team.yaml: config.participants[1] refers to 'm' (models/m.yaml), a model; it holds an agent",
        wrong_client,
    }
    assert {m.at: m.holds for m in tree.mistyped("team")} == {
        "config.participants[0].config.model_client": ("model",),  # where the worker finds it to load
        "config.participants[1]": ("agent",),
    }
    assert build_tree(basic_docs(), {}).mistyped("team") == []
    # one written inline in a team's file, and a reference made from inside it
    inline = comp("inline", "agent", model_client=ref("t"))
    del inline["label"]
    docs["teams/team.yaml"] = comp("team", "team", participants=[inline], termination_condition=ref("a"))
    assert {m.said for m in build_tree(docs, {}).mistyped("team")} == {
        "teams/team.yaml: config.participants[0].config.model_client refers to 't' (tools/t.yaml), a tool; it holds a model",
        "teams/team.yaml: config.termination_condition refers to 'a' (agents/a.yaml), an agent; it holds a termination",
        wrong_client,
    }


# --- each error kind names the file (and the field) --------------------------------------------------


def test_parse_error_is_kept_and_file_marked_broken():
    err = ConfigError(path="agents/bad.yaml", message="malformed YAML at line 3, column 1: oops")
    docs = basic_docs() | {"agents/bad.yaml": err}
    tree = build_tree(docs, {})
    assert tree.errors == [err]
    assert tree.broken_files == {"agents/bad.yaml": err.message}
    assert tree.valid == ["a", "m", "t", "team", "x"]


def test_spec_error_names_file_and_field():
    doc = comp("m", "model")
    del doc["provider"]
    tree = build_tree({"models/m.yaml": doc}, {})
    (err,) = tree.errors
    assert err.path == "models/m.yaml"
    assert err.field == "provider"
    assert "m" in tree.invalid
    assert "models/m.yaml: provider: required field is missing" in tree.invalid["m"]
    assert tree.valid == []


def test_unknown_component_type_names_file_and_field():
    tree = build_tree({"x/y.yaml": comp("y", "agnet")}, {})
    (err,) = tree.errors
    assert (err.path, err.field) == ("x/y.yaml", "component_type")
    assert "agnet" in err.message


def test_file_without_usable_label_is_broken():
    doc = comp("", "model")
    tree = build_tree({"models/nolabel.yaml": doc}, {})
    assert [(e.path, e.field) for e in tree.errors] == [("models/nolabel.yaml", "label")]
    assert "models/nolabel.yaml" in tree.broken_files
    assert "label" in tree.broken_files["models/nolabel.yaml"]
    assert tree.nodes == {}


def test_dependents_of_a_spec_invalid_file_are_skipped_naming_it():
    docs = basic_docs()
    del docs["models/m.yaml"]["provider"]
    tree = build_tree(docs, {})
    assert [(e.path, e.field) for e in tree.errors] == [("models/m.yaml", "provider")]
    assert "m" in tree.invalid
    assert "m" not in tree.broken_files
    assert tree.skipped["a"] == "depends on 'm' (models/m.yaml) which is invalid"
    assert tree.skipped["team"] == "depends on 'a' (agents/a.yaml) which was skipped"
    assert tree.valid == ["t", "x"]


def test_duplicate_labels_name_both_files():
    docs = basic_docs() | {"models/other.yaml": comp("m", "model", model="other")}
    tree = build_tree(docs, {})
    dup = [e for e in tree.errors if e.field == "label"]
    assert {e.path for e in dup} == {"models/m.yaml", "models/other.yaml"}
    by_path = {e.path: e.message for e in dup}
    assert "duplicate label 'm'" in by_path["models/m.yaml"]
    assert "models/other.yaml" in by_path["models/m.yaml"]
    assert "models/m.yaml" in by_path["models/other.yaml"]
    assert "m" in tree.invalid
    assert "duplicate label" in tree.invalid["m"]
    # the file whose node the label is not is reported by its path: a report lists both
    assert tree.nodes["m"].path == "models/m.yaml"
    assert tree.broken_files == {"models/other.yaml": f"label: {by_path['models/other.yaml']}"}
    assert "a" in tree.skipped and "'m'" in tree.skipped["a"]
    assert "team" in tree.skipped
    assert tree.valid == ["t", "x"]


def test_unknown_reference_names_file_field_and_label():
    docs = basic_docs()
    docs["teams/team.yaml"]["config"]["participants"].append(ref("ghost"))
    tree = build_tree(docs, {})
    (err,) = tree.errors
    assert err.path == "teams/team.yaml"
    assert err.field == "config.participants[1]"
    assert "unknown reference 'ghost'" in err.message
    assert "team" in tree.invalid
    assert tree.nodes["team"].deps == ["a", "x"]
    assert tree.valid == ["a", "m", "t", "x"]


def test_bad_ref_mapping_names_file_and_field():
    docs = basic_docs()
    docs["agents/a.yaml"]["config"]["model_client"] = {"$ref": "m", "temperature": 0}
    tree = build_tree(docs, {})
    (err,) = tree.errors
    assert (err.path, err.field) == ("agents/a.yaml", "config.model_client")
    assert "only key" in err.message
    assert "a" in tree.invalid
    assert tree.skipped == {"team": "depends on 'a' (agents/a.yaml) which is invalid"}


def test_missing_env_var_names_file_field_and_variable():
    docs = basic_docs()
    docs["models/m.yaml"]["config"]["api_key"] = "${OPENAI_API_KEY}"
    tree = build_tree(docs, {})
    (err,) = tree.errors
    assert (err.path, err.field) == ("models/m.yaml", "config.api_key")
    assert "OPENAI_API_KEY" in err.message
    assert "m" in tree.invalid
    assert set(tree.skipped) == {"a", "team"}
    assert tree.valid == ["t", "x"]
    # Set, it is fine; with a default it is never required.
    assert build_tree(docs, {"OPENAI_API_KEY": "set"}).errors == []
    docs["models/m.yaml"]["config"]["api_key"] = "${OPENAI_API_KEY:-none}"
    assert build_tree(docs, {}).errors == []


def test_invalid_variable_name_names_file_and_field():
    docs = {"m.yaml": comp("m", "model", url="${1BAD}")}
    tree = build_tree(docs, {"1BAD": "set"})
    (err,) = tree.errors
    assert (err.path, err.field) == ("m.yaml", "config.url")
    assert "invalid variable name ${1BAD} (for the text itself, write $${1BAD})" in err.message


def test_a_default_holding_another_variable_is_an_error_naming_the_field():
    """`${A:-${B}}` sent the text `${B}` when A was unset (the first `}` ends the default), even
    with B unset, while `pull` listed both as variables to set."""
    docs = {"m.yaml": comp("m", "model", url="${A_UNSET:-${B_UNSET}}"), "n.yaml": comp("n", "model", url="${A:-x}")}
    tree = build_tree(docs, {})
    (err,) = tree.errors
    assert (err.path, err.field) == ("m.yaml", "config.url")
    assert "${A_UNSET:-${B_UNSET}}: a default cannot hold another variable" in err.message
    assert "n" in tree.valid  # a plain default is fine


def test_a_variable_in_a_label_is_an_error_even_when_set():
    docs = {"m.yaml": {**comp("m", "model"), "label": "${HOME}"}}
    tree = build_tree(docs, {"HOME": "set"})
    (err,) = tree.errors
    assert (err.path, err.field) == ("m.yaml", "label") and "cannot hold a variable" in err.message


def test_cycle_names_every_file_and_skips_dependents():
    docs = basic_docs() | {
        "agents/p.yaml": comp("p", handoff=ref("q")),
        "agents/q.yaml": comp("q", handoff=ref("p")),
        "teams/pq.yaml": comp("pq", "team", participants=[ref("p"), ref("a")]),
    }
    tree = build_tree(docs, {})
    cyc = [e for e in tree.errors if "reference cycle" in e.message]
    assert {e.path for e in cyc} == {"agents/p.yaml", "agents/q.yaml"}
    for e in cyc:
        assert "p (agents/p.yaml)" in e.message and "q (agents/q.yaml)" in e.message
    assert {"p", "q"} <= set(tree.invalid)
    assert tree.skipped == {"pq": "depends on 'p' (agents/p.yaml) which is invalid"}
    assert tree.valid == ["a", "m", "t", "team", "x"]


def test_self_reference_is_a_cycle():
    tree = build_tree({"a.yaml": comp("a", sub=ref("a"))}, [])
    (err,) = tree.errors
    assert err.path == "a.yaml"
    assert "reference cycle: a (a.yaml) -> a (a.yaml)" in err.message
    assert "a" in tree.invalid


def test_str_of_errors_names_file_and_field():
    docs = basic_docs()
    docs["agents/a.yaml"]["config"]["tools"] = [ref("nope")]
    (err,) = build_tree(docs, {}).errors
    assert str(err).startswith("agents/a.yaml: config.tools[0]: unknown reference 'nope'")


def test_independent_nodes_stay_valid_with_unchanged_keys():
    good = build_tree(basic_docs(), {})
    docs = basic_docs()
    docs["agents/a.yaml"]["config"]["tools"] = [ref("nope")]
    bad = build_tree(docs, {})
    assert bad.valid == ["m", "t", "x"]
    for lbl in ("m", "t", "x"):
        assert bad.nodes[lbl].key == good.nodes[lbl].key
    assert bad.nodes["a"].key == "" and bad.nodes["team"].key == ""


def test_skips_propagate_transitively_with_reasons():
    docs = {
        "1.yaml": comp("base", "model", key="${MISSING}"),
        "2.yaml": comp("mid", model_client=ref("base")),
        "3.yaml": comp("top", "team", participants=[ref("mid")]),
        "4.yaml": comp("side", "tool"),
    }
    tree = build_tree(docs, {})
    assert tree.skipped == {
        "mid": "depends on 'base' (1.yaml) which is invalid",
        "top": "depends on 'mid' (2.yaml) which was skipped",
    }
    assert tree.valid == ["side"]


# --- hashing: Merkle keys ---------------------------------------------------------------------------


def keys(tree):
    return {lbl: n.key for lbl, n in tree.nodes.items()}


def test_changing_a_leaf_changes_exactly_its_transitive_dependents():
    before = keys(build_tree(basic_docs(), {}))
    docs = basic_docs()
    docs["tools/t.yaml"]["config"]["name"] = "renamed"
    after = keys(build_tree(docs, {}))
    assert {lbl for lbl in before if before[lbl] != after[lbl]} == {"t", "a", "team"}


def test_description_change_changes_key():
    docs = basic_docs()
    docs["terminations/x.yaml"]["description"] = "other"
    after = keys(build_tree(docs, {}))
    before = keys(build_tree(basic_docs(), {}))
    assert {lbl for lbl in before if before[lbl] != after[lbl]} == {"x", "team"}


def test_file_path_does_not_change_keys():
    docs = {("moved/" + p): d for p, d in basic_docs().items()}
    assert keys(build_tree(docs, {})) == keys(build_tree(basic_docs(), {}))


def reorder(value):
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def test_key_does_not_depend_on_dict_key_order():
    docs = {p: reorder(d) for p, d in reversed(list(basic_docs().items()))}
    assert list(docs["agents/a.yaml"]) != list(basic_docs()["agents/a.yaml"])
    assert keys(build_tree(docs, {})) == keys(build_tree(basic_docs(), {}))


def test_list_order_does_change_the_key():
    docs = basic_docs()
    docs["agents/a.yaml"]["config"]["tools"] = [ref("t"), {"inline": 1}]
    swapped = basic_docs()
    swapped["agents/a.yaml"]["config"]["tools"] = [{"inline": 1}, ref("t")]
    assert build_tree(docs, {}).nodes["a"].key != build_tree(swapped, {}).nodes["a"].key


def test_env_var_values_do_not_change_keys():
    docs = basic_docs()
    docs["models/m.yaml"]["config"]["api_key"] = "${OPENAI_API_KEY}"
    one = build_tree(docs, {"OPENAI_API_KEY": "sk-one"})
    two = build_tree(docs, {"OPENAI_API_KEY": "sk-two", "UNRELATED": "x"})
    assert one.errors == two.errors == []
    assert keys(one) == keys(two)
    # ...but the variable's name, as written, is part of the key.
    docs["models/m.yaml"]["config"]["api_key"] = "${OTHER_KEY}"
    three = build_tree(docs, {"OTHER_KEY": "sk-one"})
    assert three.nodes["m"].key != one.nodes["m"].key
    assert three.nodes["team"].key != one.nodes["team"].key


def test_node_key_is_independent_of_dependency_order_and_sensitive_to_each_key():
    spec = "hash-of-a-spec"
    assert node_key(spec, [("x", "1"), ("y", "2")]) == node_key(spec, [("y", "2"), ("x", "1")])
    assert node_key(spec, [("x", "1")]) != node_key(spec, [("x", "2")])
    assert node_key(spec, [("x", "1")]) != node_key(spec, [])
    assert node_key(spec, []) != node_key("hash-of-another-spec", [])


def dependents_of(deps, roots):
    """Oracle: every node that reaches one of `roots` through dependency edges."""
    found, frontier = set(), list(roots)
    while frontier:
        node = frontier.pop()
        for other, ds in deps.items():
            if node in ds and other not in found:
                found.add(other)
                frontier.append(other)
    return found - set(roots)


@st.composite
def component_dags(draw):
    n = draw(st.integers(1, 12))
    docs = {}
    deps = {}
    for i in range(n):
        lower = sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
        deps[f"c{i}"] = [f"c{j}" for j in lower]
        docs[f"dir/c{i}.yaml"] = comp(f"c{i}", "agent", refs=[ref(f"c{j}") for j in lower], n=i)
    return docs, deps


@HYPO
@given(graph=component_dags(), data=st.data())
def test_a_change_changes_the_keys_of_exactly_the_node_and_its_dependents(graph, data):
    docs, deps = graph
    before = keys(build_tree(docs, {}))
    changed = data.draw(st.sampled_from(sorted(deps)))
    edited = copy.deepcopy(docs)
    edited[f"dir/{changed}.yaml"]["config"]["n"] = -1
    after = keys(build_tree(edited, {}))
    differing = {lbl for lbl in before if before[lbl] != after[lbl]}
    assert differing == {changed} | dependents_of(deps, [changed])


# --- the examples tree ----------------------------------------------------------------------------


def test_examples_tree_is_valid_and_covers_every_component_type():
    tree = build_tree(scan(EXAMPLES).documents, os.environ)
    assert tree.errors == []
    assert tree.invalid == {} and tree.skipped == {} and tree.broken_files == {}
    assert sorted(tree.nodes) == tree.valid
    assert {n.component_type for n in tree.nodes.values()} == set(components.component_types())
    for label in tree.valid:
        assert tree.nodes[label].key
        resolved = tree.resolved(label)
        assert "$ref" not in canonical_json(resolved)
        substitute_variables(resolved, {})  # every placeholder in the examples has a default


def test_examples_tree_needs_no_environment():
    tree = build_tree(scan(EXAMPLES).documents, {})
    assert tree.errors == []
    assert keys(tree) == keys(build_tree(scan(EXAMPLES).documents, os.environ))


@pytest.mark.parametrize("team", ["research-team", "review-team", "solo-researcher"])
def test_example_teams_depend_on_agents_and_terminations(team):
    tree = build_tree(scan(EXAMPLES).documents, {})
    types = {tree.nodes[d].component_type for d in tree.nodes[team].deps}
    assert types == {"agent", "termination"}


def test_a_component_too_big_once_inlined_is_an_error_and_its_users_are_skipped() -> None:
    from shared.core.tree import TreeLimits

    docs = {"m.yaml": comp("m", "model", text="x" * 300)}
    docs |= {f"a{i}.yaml": comp(f"a{i}", model=[{"$ref": "m"}] * 4) for i in range(3)}
    docs["t.yaml"] = comp("t", "team", participants=[{"$ref": f"a{i}"} for i in range(3)])
    docs["u.yaml"] = comp("u", "team", participants=[{"$ref": "t"}])
    limits = TreeLimits(max_request_bytes=3000)
    tree = build_tree(docs, {}, limits=limits)
    size_a = tree.nodes["a0"].resolved_size
    assert size_a > 4 * 300 and size_a < 3000 and "a0" in tree.valid
    assert "MAX_REQUEST_BYTES" in tree.invalid["t"] and "t.yaml" in tree.invalid["t"]
    assert "u" in tree.skipped
    assert build_tree(docs, {}, limits=TreeLimits(max_request_bytes=10**6)).valid == ["a0", "a1", "a2", "m", "t", "u"]


def test_a_team_with_too_many_participants_is_an_error_naming_the_field() -> None:
    from shared.core.tree import TreeLimits

    docs = {"t.yaml": comp("t", "team", participants=[{"name": f"p{i}"} for i in range(11)])}
    tree = build_tree(docs, {}, limits=TreeLimits(max_participants=10))
    [error] = tree.errors
    assert error.field == "config.participants" and "MAX_PARTICIPANTS" in error.message
    assert build_tree(docs, {}, limits=TreeLimits(max_participants=11)).valid == ["t"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"config": {"api_key": "${KEY}"}}, "config.api_key"),
        ({"config": {"participants": [{"config": {"x": ["ok", "a ${KEY} b"]}}]}}, "config.participants[0].config.x[1]"),
        ([["${KEY}"]], "[0][0]"),
    ],
)
def test_a_missing_variable_names_its_field(doc, field):
    from shared.core.refs import MissingVariable

    with pytest.raises(MissingVariable) as raised:
        substitute_variables(doc, {"OTHER": "x"})
    assert (raised.value.name, raised.value.field) == ("KEY", field)
    assert substitute_variables(doc, {"KEY": "v"}) != doc  # and with it set, it is replaced


def test_a_broken_file_says_the_field_its_parse_found_at_fault() -> None:
    from shared.core.loader import parse_document
    from shared.core.tree import build_tree

    doc = parse_document("n.yaml", b"provider: x.y\ncomponent_type: tool\nlabel: n\nconfig: {max_messages: .nan}\n")
    tree = build_tree({"n.yaml": doc}, {})
    assert tree.broken_files["n.yaml"] == "config.max_messages: NaN and infinity cannot be represented in JSON"


def test_a_variable_that_is_no_secret_is_keyed_by_its_value_a_secret_by_its_name_only():
    """`${MODEL}` under another value is another component (Studio must get it, a cached task must
    not answer for it); a key rotated under the same name is not (no value of a secret is hashed)."""
    model = comp("m", "model", model="${MODEL:-llama3.2}", api_key="${OPENAI_API_KEY}")
    docs = {"m.yaml": model, "a.yaml": comp("a", "agent", model_client=ref("m"))}

    def keys_with(**env: str) -> dict[str, str]:
        tree = build_tree(docs, {"OPENAI_API_KEY": "sk-one-two-three", **env})
        assert tree.errors == []
        return {label: node.key for label, node in tree.nodes.items()}

    base = keys_with()
    assert keys_with(MODEL="llama3.2") == base  # the default, written out
    assert keys_with(OPENAI_API_KEY="sk-rotated-key-value") == base
    other = keys_with(MODEL="qwen2.5")
    assert other["m"] != base["m"] and other["a"] != base["a"]  # and what embeds it


def test_an_unknown_reference_names_the_broken_file_named_after_it():
    docs = {
        "agents/writer.yaml": ConfigError(path="agents/writer.yaml", message="not a regular file"),
        "teams/t.yaml": comp("t", "team", participants=[ref("writer")]),
    }
    (err,) = [e for e in build_tree(docs, {}).errors if e.path == "teams/t.yaml"]
    assert "unknown reference 'writer'" in err.message and "its file may be agents/writer.yaml" in err.message
