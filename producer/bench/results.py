"""Result sets: what `producer bench workflow|studio` writes, and the one place that reads one back.

A result set is a folder holding `result.json`: the parameters, the versions, the machine, one list
of values per measure (one per iteration), the samples behind the distributions, resource use over
time, and the facts the recommendations are computed from (stats.py). `load` returns a ResultSet or
raises InvalidInput naming the file and what is wrong with it; `compare` and `report` read nothing
else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from producer.bench.stats import Change, compare, regressions, summary
from shared.core.exceptions import InvalidInput

RESULT = "result.json"

# what each kind of result set measures, as a refusal to compare two kinds says it
KINDS = {"workflow": "workflow runs on the workers", "studio": "a Studio and a tree"}

SAMPLE = ("t", "rss_mb", "cpu_percent")  # what a resources sample holds

HIGHER_IS_BETTER = ("_per_second", "availability", "hit_rate")


@dataclass(frozen=True)
class ResultSet:
    """One result set as `load` found it valid; `data` is the whole file (recommendations read it)."""

    path: Path  # as given: the folder, or the file
    file: Path  # its result.json
    kind: str  # a key of KINDS
    measures: dict[str, list[float]]
    task_seconds: dict[str, list[float]] = field(default_factory=dict)
    request_latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[dict[str, float]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The folder's name: how tables and charts call the set."""
        return (self.path if self.path.is_dir() else self.path.parent).resolve().name or str(self.path)


def save(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT).write_text(json.dumps(result, indent=2))


def load(path: Path) -> ResultSet:
    """The result set at `path` (its folder or its result.json), or InvalidInput naming the file
    and what is wrong: missing, empty, not JSON, binary, or JSON that no benchmark wrote."""
    file = _file_of(path)
    data = _json_of(file)
    problem = _problem(data)
    if problem:
        raise InvalidInput(f"{file}: not a result set of producer bench: {problem}")
    return ResultSet(
        path=path,
        file=file,
        kind=data["kind"],
        measures=data["measures"],
        task_seconds=_object(data, "task_seconds"),
        request_latency=_object(data, "request_latency"),
        resources=data.get("resources") or [],
        machine=_object(data, "machine"),
        data=data,
    )


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at `key`; an empty one where there is none (or null)."""
    return data.get(key) or {}


def _file_of(path: Path) -> Path:
    """The result.json of `path`: the folder's, or the file itself."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such folder or file (a result set is a folder holding {RESULT}, or that file)")
    file = path / RESULT if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise InvalidInput(f"{path}: no {RESULT} in this folder: it holds no result set of producer bench")
    return file


def _json_of(file: Path) -> dict[str, Any]:
    """The file's JSON object; InvalidInput when it cannot be read, or holds no JSON object."""
    raw = _bytes_of(file)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file}: not a result set: a binary file, not JSON text") from exc
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidInput(f"{file}: not a result set: not JSON ({exc.msg} at {where})") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{file}: not a result set: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{file}: not a result set: a JSON {_json_type(data)}, where producer bench writes an object "
            "with kind and measures"
        )
    return data


def _bytes_of(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{file}: cannot be read: {exc.strerror or exc}") from exc


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _numbers(value: object) -> bool:
    return isinstance(value, list) and all(_finite(x) for x in value)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _lists_of_numbers(data: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        return f"no {key} (an object of lists of numbers)" if value is None else f"{key} is not an object"
    bad = _first_not_numbers(value)
    return f"{key}[{bad!r}] is not a list of numbers" if bad is not None else None


def _first_not_numbers(lists: dict[str, object]) -> str | None:
    return next((name for name, values in lists.items() if not _numbers(values)), None)


def _histogram_problem(name: str, h: object) -> str | None:
    if not _histogram_shaped(h):
        return f"request_latency[{name!r}] is not a histogram (bounds, counts, sum)"
    if not _counts_fit(h):
        return f"request_latency[{name!r}] has {len(h['counts'])} counts for {len(h['bounds'])} bounds, or no sum"
    if h["bounds"] != sorted(h["bounds"]) or any(c < 0 for c in h["counts"]):
        return f"request_latency[{name!r}]: bounds out of order or a negative count"
    return None


def _histogram_shaped(h: object) -> TypeGuard[dict[str, Any]]:
    """An object of bounds and counts, numbers each."""
    return isinstance(h, dict) and _numbers(h.get("bounds")) and _numbers(h.get("counts"))


def _counts_fit(h: dict[str, Any]) -> bool:
    """A count per bucket and one for +Inf, and a sum."""
    return bool(h["bounds"]) and len(h["counts"]) == len(h["bounds"]) + 1 and _numbers([h.get("sum")])


def _problem(data: dict[str, Any]) -> str | None:
    """What keeps `data` from being a result set (None: nothing); each check counts on those before."""
    checks = (_kind_problem, _lists_problem, _latency_problem, _resources_problem, _objects_problem)
    return next((problem for problem in (check(data) for check in checks) if problem), None)


def _kind_problem(data: dict[str, Any]) -> str | None:
    kind = data.get("kind")
    if kind in KINDS:
        return None
    said = "no kind" if kind is None else f"kind {kind!r}"
    return f"{said}, where a result set says {' or '.join(map(repr, KINDS))}"


def _lists_problem(data: dict[str, Any]) -> str | None:
    """Measures (some) and the other samples: objects of lists of numbers."""
    for key in ("measures", "task_seconds", "model_requests", "studio_requests"):
        if problem := _lists_of_numbers(data, key, required=key == "measures"):
            return problem
    return None if data["measures"] else "it holds no measure"


def _latency_problem(data: dict[str, Any]) -> str | None:
    latency = data.get("request_latency") or {}
    if not isinstance(latency, dict):
        return "request_latency is not an object"
    return next((problem for name, h in latency.items() if (problem := _histogram_problem(name, h))), None)


def _resources_problem(data: dict[str, Any]) -> str | None:
    resources = data.get("resources") or []
    if isinstance(resources, list) and all(_sample(s) for s in resources):
        return None
    return f"resources is not a list of samples ({', '.join(SAMPLE)})"


def _sample(s: object) -> bool:
    return isinstance(s, dict) and _numbers([s.get(k) for k in SAMPLE])


def _objects_problem(data: dict[str, Any]) -> str | None:
    bad = next(
        (key for key in ("parameters", "machine", "facts", "versions") if not isinstance(data.get(key, {}), dict)), None
    )
    return None if bad is None else f"{bad} is not an object"


def same_kind(sets: list[ResultSet]) -> None:
    """InvalidInput unless every set measures the same thing (names the first of each kind)."""
    first = sets[0]
    other = next((s for s in sets if s.kind != first.kind), None)
    if other is not None:
        raise InvalidInput(
            f"{first.path} is a {first.kind} result set ({KINDS[first.kind]}) and {other.path} a {other.kind} "
            f"result set ({KINDS[other.kind]}): they measure different things; compare sets of one kind"
        )


def table_rows(measures: dict[str, list[float]]) -> list[tuple[str, dict[str, float]]]:
    """Each measure's summary, by name."""
    return [(name, summary(values)) for name, values in sorted(measures.items()) if values]


def compare_results(a: ResultSet, b: ResultSet) -> list[Change]:
    """Each measure both sets have, from A to B; InvalidInput for sets of two kinds, or with no
    measure in common (team sizes, modes or complexities that differ)."""
    same_kind([a, b])
    if not a.measures.keys() & b.measures.keys():
        raise InvalidInput(
            f"{a.path} and {b.path} have no measure in common: were they run with other team sizes, modes or complexities?"
        )
    return compare(a.measures, b.measures)


def regressions_over(changes: list[Change], percent: float) -> list[Change]:
    # times, CPU seconds, bytes and request counts: larger is worse; rates and availability: smaller is
    return regressions(changes, percent, {c.measure for c in changes if not c.measure.endswith(HIGHER_IS_BETTER)})
