"""The Studio server stops in the middle of a sync, then comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from producer import embedded
from tests.conftest import Cli, wait_for

pytestmark = pytest.mark.integration

TEAMS = 150


def _write_tree(root: Path, teams: int = TEAMS) -> None:
    (root / "teams").mkdir(parents=True)
    (root / "model.yaml").write_text(
        "provider: autogen_ext.models.openai.OpenAIChatCompletionClient\ncomponent_type: model\nlabel: m\nversion: 1\n"
        "config: {model: gpt-4o-mini, api_key: not-a-real-key}\n"
    )
    (root / "agent.yaml").write_text(
        "provider: autogen_agentchat.agents.AssistantAgent\ncomponent_type: agent\nlabel: a\nversion: 1\n"
        "config: {name: a, description: d, reflect_on_tool_use: false, tool_call_summary_format: '{result}',"
        " model_client: {$ref: m}}\n"
    )
    for i in range(teams):
        (root / "teams" / f"t{i:03}.yaml").write_text(
            "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\nversion: 1\n"
            f"label: team-{i:03}\nconfig:\n  participants: [{{$ref: a}}]\n"
        )


def test_studio_stopped_mid_sync_then_back(cli: Cli, own_studio, tmp_path: Path, redis_url: str) -> None:
    url, state, restart = own_studio
    cli.studio_url = cli.view_url = url
    tree = tmp_path / "tree"
    # enough teams that Studio stops mid-sync: with validation on the workers, 150 are written in about 1 s
    teams = 600
    _write_tree(tree, teams)

    started = cli.run("sync", str(tree), "--no-wait", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    view = cli.studio()
    wait_for(lambda: any(lbl.startswith("team-") for lbl in view.teams_by_label()), 60, "the first team in Studio")
    embedded.stop(state["proc"])  # SIGTERM, mid-sync

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_for(
        lambda: json.loads(r.get(f"agentq:run:{run_id}:meta"))["state"] == "finished",
        120,
        "the run to finish",
        interval=0.2,
    )
    status = cli.run("status", run_id, "--json")
    report = json.loads(status.stdout)
    assert report["state"] == "finished"
    assert status.returncode == 1
    failed = [s for s in report["nodes"].values() if s["status"] == "failed"]
    assert failed, "stopping Studio mid-sync should fail the teams not yet written"
    assert all("Studio unreachable" in s["error"] or "Studio answered 5" in s["error"] for s in failed), failed[:3]
    assert all(s.get("retryable") for s in failed), failed[:3]  # what `producer watch` tries again
    created_before = sum(1 for s in report["nodes"].values() if s.get("outcome") == "created")
    assert 1 <= created_before < teams + 2

    restart()
    rc, report, err = cli.sync(tree)
    assert rc == 0, err
    assert report["counts"]["failed"] == 0
    rows = cli.studio().teams_by_label()
    for i in range(teams):
        assert len(rows.get(f"team-{i:03}", [])) == 1, f"team-{i:03}: {len(rows.get(f'team-{i:03}', []))} rows"


def test_a_studio_that_stops_answering_mid_sync_is_named_as_what_holds_it_up(cli: Cli, proxy, tmp_path: Path) -> None:
    """Studio accepting connections but answering nothing: the run waited on its workers' retries
    for minutes, and the producer's "no progress" line, and the error it gave up with, named only
    the nodes and the workers, not Studio."""
    import threading

    tree = tmp_path / "tree"
    _write_tree(tree, teams=3)
    silent, back = threading.Event(), threading.Event()

    def hang(method: str, path: str, body: bytes | None) -> None:
        if method == "POST" and path.startswith("/api/teams"):
            silent.set()  # from the workers' first write on, nothing is answered until `back`
        if silent.is_set():
            back.wait(120)

    proxy.before = hang
    proc = cli.start("sync", str(tree), "--json", STUCK_SECONDS="2", STALL_SECONDS="12")
    said: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: said.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        line = wait_for(
            lambda: next((s for s in said if "no progress" in s and "health check" in s), None),
            60,
            "the stuck line naming Studio",
            interval=0.2,
        )
        assert f"AutoGen Studio at {proxy.url}" in line and "did not answer its health check within" in line, line
        proc.wait(timeout=120)
        reader.join(10)
        given_up = "".join(said).strip().splitlines()[-1]
        assert proc.returncode == 4 and "no node ended for 12 s (STALL_SECONDS)" in given_up, given_up
        assert f"AutoGen Studio at {proxy.url} did not answer its health check" in given_up, given_up
    finally:
        back.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unchanged_tree_synced_while_studio_is_down_is_not_reported_unchanged(
    cli: Cli, own_studio, tmp_path: Path
) -> None:
    """Nothing to enqueue, every result cached: but a cached result counts only while Studio holds
    it, and Studio could not be asked. The sync said `unchanged` for every component and exited 0
    (a warning aside); it fails in one line naming Studio, exit 3, as a sync with work does."""
    url, state, restart = own_studio
    cli.studio_url = cli.view_url = url
    tree = tmp_path / "tree"
    _write_tree(tree, teams=3)
    rc, _, err = cli.sync(tree)
    assert rc == 0, err
    embedded.stop(state["proc"])
    down = cli.run("sync", str(tree), "--json")
    assert down.returncode == 3, (down.stdout, down.stderr)
    assert url in down.stderr and "Traceback" not in down.stderr, down.stderr
    assert json.loads(down.stdout)["exit_code"] == 3
    restart()
    rc, report, err = cli.sync(tree)
    assert rc == 0 and report["counts"]["unchanged"] == 5, (report["counts"], err)  # 3 teams, the model, the agent
