"""The dependency graph: cycles, transitive dependents and waves. Pure functions, no I/O.

`deps` maps each node to the nodes it depends on; every dependency must itself be a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.core.exceptions import InvalidInput


class CycleError(InvalidInput, ValueError):
    def __init__(self, cycles: list[list[str]]) -> None:
        super().__init__("dependency cycle: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles))
        self.cycles = cycles


def find_cycles(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components that form a cycle (size > 1, or a node depending on itself).

    Iterative Tarjan, so a deep chain cannot overflow the stack.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(deps):
        if root in index:
            continue
        work = [(root, iter(sorted(deps[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(deps[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in deps[node]:
                    cycles.append(sorted(component))
    return cycles


def waves(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Split nodes into groups where each group depends only on earlier ones.

    Each node sits in the earliest group its dependencies allow (1 + the deepest dependency),
    so the number of groups is the length of the longest dependency path: the minimum.
    """
    remaining = {node: len(set(ds)) for node, ds in deps.items()}
    dependents: dict[str, list[str]] = {node: [] for node in deps}
    for node, ds in deps.items():
        for d in set(ds):
            dependents[d].append(node)
    current = sorted(n for n, count in remaining.items() if count == 0)
    result: list[list[str]] = []
    placed = 0
    while current:
        result.append(current)
        placed += len(current)
        following = []
        for node in current:
            for dependent in dependents[node]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    following.append(dependent)
        current = sorted(following)
    if placed != len(deps):
        raise CycleError(find_cycles(deps))
    return result
