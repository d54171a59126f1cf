"""shared.core.graph: waves, cycles and dependents, checked against brute-force oracles."""

from __future__ import annotations

import inspect
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.graph import CycleError, find_cycles, waves

HYPO = settings()


# --- strategies ----------------------------------------------------------------------------------


@st.composite
def dags(draw, max_nodes: int = 25):
    """Random DAG: node i may only depend on nodes j < i; then the names are shuffled, so
    nothing about the labels (or their sort order) reveals the topological order."""
    n = draw(st.integers(min_value=0, max_value=max_nodes))
    names = draw(st.permutations([f"n{i}" for i in range(n)]))
    deps: dict[str, list[str]] = {}
    for i in range(n):
        lower = draw(st.lists(st.integers(0, i - 1), max_size=4)) if i else []
        deps[names[i]] = [names[j] for j in lower]  # duplicates allowed on purpose
    items = draw(st.permutations(list(deps.items())))  # dict order must not matter either
    return dict(items)


@st.composite
def cyclic_graphs(draw):
    """A random DAG plus one explicit cycle of length k >= 1 (k == 1 is a self-loop)."""
    deps = draw(dags(max_nodes=15).filter(lambda d: len(d) >= 1))
    nodes = sorted(deps)
    cycle = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=len(nodes), unique=True))
    deps = {k: list(v) for k, v in deps.items()}
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=False):
        deps[a].append(b)
    return deps, cycle


# --- oracles -------------------------------------------------------------------------------------


def reachable(deps, start):
    """Nodes reachable from `start` following at least one edge."""
    seen, stack = set(), list(deps[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(deps[node])
    return seen


def longest_path_edges(deps):
    memo: dict[str, int] = {}

    def depth(node):
        if node not in memo:
            memo[node] = 1 + max((depth(d) for d in deps[node]), default=-1)
        return memo[node]

    return max((depth(n) for n in deps), default=-1)


def check_waves(deps, result):
    where = {}
    for k, wave in enumerate(result):
        assert wave, "no empty waves"
        assert wave == sorted(wave), "each wave is sorted (stable output)"
        for node in wave:
            assert node not in where, f"{node} is in more than one wave"
            where[node] = k
    assert set(where) == set(deps), "every node is in exactly one wave"
    for node, ds in deps.items():
        for d in ds:
            assert where[d] < where[node], f"{node} depends on {d} but is not in a later wave"
        if where[node] == 0:
            assert not list(ds)
        else:
            assert any(where[d] == where[node] - 1 for d in ds), f"{node} could run a wave earlier"
    return where


# --- waves ---------------------------------------------------------------------------------------


def test_waves_small_example():
    deps = {"team": ["agent", "term"], "agent": ["model", "tool"], "model": [], "tool": [], "term": []}
    assert waves(deps) == [["model", "term", "tool"], ["agent"], ["team"]]


def test_waves_of_empty_graph():
    assert waves({}) == []
    assert find_cycles({}) == []


def test_duplicate_dependencies_count_once():
    assert waves({"a": ["b", "b"], "b": []}) == [["b"], ["a"]]


def test_waves_accept_any_iterables_of_deps():
    assert waves({"a": ("b",), "b": set(), "c": frozenset({"a", "b"})}) == [["b"], ["a"], ["c"]]


@HYPO
@given(deps=dags())
def test_waves_respect_every_edge_and_are_minimal(deps):
    result = waves(deps)
    check_waves(deps, result)
    assert len(result) == longest_path_edges(deps) + 1


@HYPO
@given(deps=dags())
def test_dag_has_no_cycles(deps):
    assert find_cycles(deps) == []


@HYPO
@given(deps=dags(), data=st.data())
def test_waves_do_not_depend_on_input_order(deps, data):
    shuffled = dict(data.draw(st.permutations(list(deps.items()))))
    shuffled = {k: data.draw(st.permutations(v)) for k, v in shuffled.items()}
    assert waves(shuffled) == waves(deps)


# --- cycles --------------------------------------------------------------------------------------


def test_two_node_cycle():
    deps = {"a": ["b"], "b": ["a"], "c": ["a"], "d": []}
    assert find_cycles(deps) == [["a", "b"]]
    with pytest.raises(CycleError) as info:
        waves(deps)
    assert info.value.cycles == [["a", "b"]]
    assert "a -> b -> a" in str(info.value)


def test_self_loop_is_a_cycle():
    deps = {"a": ["a"], "b": []}
    assert find_cycles(deps) == [["a"]]
    with pytest.raises(CycleError, match="a -> a"):
        waves(deps)


def test_cycle_error_is_a_value_error():
    with pytest.raises(ValueError):
        waves({"a": ["b"], "b": ["a"]})


@HYPO
@given(graph=cyclic_graphs())
def test_cycles_are_reported_exactly(graph):
    deps, cycle = graph
    with pytest.raises(CycleError) as info:
        waves(deps)
    found = find_cycles(deps)
    assert info.value.cycles == found
    # The explicit cycle's nodes are all in one reported component.
    containing = [c for c in found if cycle[0] in c]
    assert len(containing) == 1
    assert set(cycle) <= set(containing[0])
    # Exactly the nodes that can reach themselves are reported, each once.
    on_a_cycle = {n for n in deps if n in reachable(deps, n)}
    reported = [n for c in found for n in c]
    assert len(reported) == len(set(reported))
    assert set(reported) == on_a_cycle
    # Each component is strongly connected, and distinct components are not mutually reachable.
    for comp in found:
        assert comp == sorted(comp)
        for a in comp:
            assert set(comp) <= reachable(deps, a)
    for i, c1 in enumerate(found):
        for c2 in found[i + 1 :]:
            assert not (c2[0] in reachable(deps, c1[0]) and c1[0] in reachable(deps, c2[0]))
    for node in cycle:
        assert node in str(info.value)


# --- deep graphs: no recursion ---------------------------------------------------------------------


N = 5000


def chain():
    return {f"n{i:05d}": [f"n{i - 1:05d}"] if i else [] for i in range(N)}


def test_deep_chain_does_not_overflow():
    deps = chain()
    result = waves(deps)
    assert result == [[f"n{i:05d}"] for i in range(N)]
    assert find_cycles(deps) == []


def test_deep_chain_closed_into_a_cycle():
    deps = chain()
    deps["n00000"] = [f"n{N - 1:05d}"]
    assert find_cycles(deps) == [sorted(deps)]
    with pytest.raises(CycleError):
        waves(deps)


def test_deep_chain_under_a_low_recursion_limit():
    limit = sys.getrecursionlimit()
    depth = len(inspect.stack(0))
    sys.setrecursionlimit(depth + 100)  # far below the chain's 5000
    try:
        deps = chain()
        assert len(waves(deps)) == N
        assert find_cycles(deps) == []
    finally:
        sys.setrecursionlimit(limit)
