"""Faults injected in front of a real AutoGen Studio: a share of its answers are 500s (some after
it did the work) and 429s with Retry-After. Nothing is lost, nothing is written twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import Cli
from tests.studio_proxy import StudioProxy
from tests.test_studio_outage import TEAMS, _write_tree


def test_sync_survives_500s_lost_answers_and_429s(cli: Cli, proxy: StudioProxy, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree)
    proxy.fault_rate = 0.2
    rc, report, err = cli.sync(tree)
    kinds = Counter(kind for _, _, kind in proxy.faults)
    assert rc == 0, (report.get("error"), {k: v for k, v in report["nodes"].items() if v["status"] != "done"}, err)
    assert kinds["500"] and kinds["500-after"] and kinds["429"], kinds
    assert any(path.startswith("/api/teams") and method == "POST" for method, path, _ in proxy.faults)
    teams = cli.studio().teams_by_label()
    assert all(len(teams.get(f"team-{i:03}", [])) == 1 for i in range(TEAMS)), "every team exactly once"
    galleries = [g for g in cli.studio().galleries() if g["config"]["id"] == "agentq-tree"]
    assert len(galleries) == 1
    assert {c["label"] for c in galleries[0]["config"]["components"]["agents"]} == {"a"}
