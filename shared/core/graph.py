"""The dependency graph: cycles, transitive dependents and waves. Pure functions, no I/O.

`deps` maps each node to the nodes it depends on; every dependency must itself be a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from shared.core.exceptions import InvalidInput


class CycleError(InvalidInput, ValueError):
    def __init__(self, cycles: list[list[str]]) -> None:
        super().__init__("dependency cycle: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles))
        self.cycles = cycles


def find_cycles(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components that form a cycle (size > 1, or a node depending on itself).

    Iterative Tarjan, so a deep chain cannot overflow the stack.
    """
    tarjan = _Tarjan(deps)
    for root in sorted(deps):
        if root not in tarjan.index:
            tarjan.visit(root)
    return tarjan.cycles


class _Tarjan:
    """One run of Tarjan's algorithm: each node's index and low link, the stack of open nodes."""

    def __init__(self, deps: Mapping[str, Iterable[str]]) -> None:
        self.deps = deps
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.on_stack: set[str] = set()
        self.stack: list[str] = []
        self.cycles: list[list[str]] = []
        self.work: list[tuple[str, Iterator[str]]] = []  # the depth-first path, each with its children left

    def visit(self, root: str) -> None:
        self._open(root)
        while self.work:
            node, children = self.work[-1]
            if not self._descend(node, children):
                self._finish(node)

    def _open(self, node: str) -> None:
        self.index[node] = self.low[node] = len(self.index)
        self.stack.append(node)
        self.on_stack.add(node)
        self.work.append((node, iter(sorted(self.deps[node]))))

    def _descend(self, node: str, children: Iterator[str]) -> bool:
        """Open the next child not yet visited (True); lower `node`'s link by those on the stack."""
        for child in children:
            if child not in self.index:
                self._open(child)
                return True
            if child in self.on_stack:
                self.low[node] = min(self.low[node], self.index[child])
        return False

    def _finish(self, node: str) -> None:
        self.work.pop()
        if self.work:
            parent = self.work[-1][0]
            self.low[parent] = min(self.low[parent], self.low[node])
        if self.low[node] == self.index[node]:
            self._component(node)

    def _component(self, node: str) -> None:
        """Pop `node`'s component off the stack; keep it when it is a cycle."""
        component = []
        while True:
            member = self.stack.pop()
            self.on_stack.discard(member)
            component.append(member)
            if member == node:
                break
        if len(component) > 1 or node in self.deps[node]:
            self.cycles.append(sorted(component))


def waves(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Split nodes into groups where each group depends only on earlier ones.

    Each node sits in the earliest group its dependencies allow (1 + the deepest dependency),
    so the number of groups is the length of the longest dependency path: the minimum.
    Not graphlib's TopologicalSorter: its CycleError names one cycle, where a tree's errors name
    every cycle (find_cycles, Tarjan's) and every node on one.
    """
    remaining = {node: len(set(ds)) for node, ds in deps.items()}
    dependents = dependents_of(deps)
    current = sorted(n for n, count in remaining.items() if count == 0)
    result: list[list[str]] = []
    placed = 0
    while current:
        result.append(current)
        placed += len(current)
        current = _next_wave(current, dependents, remaining)
    if placed != len(deps):
        raise CycleError(find_cycles(deps))
    return result


def dependents_of(deps: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Each node's dependents, in the order of `deps`, each once (a dependency may be listed twice)."""
    dependents: dict[str, list[str]] = {node: [] for node in deps}
    for node, ds in deps.items():
        for d in dict.fromkeys(ds):
            dependents[d].append(node)
    return dependents


def _next_wave(current: list[str], dependents: dict[str, list[str]], remaining: dict[str, int]) -> list[str]:
    """The nodes whose last dependency is in `current` (`remaining` counts down what each waits for)."""
    following = []
    for node in current:
        for dependent in dependents[node]:
            remaining[dependent] -= 1
            if remaining[dependent] == 0:
                following.append(dependent)
    return sorted(following)
