"""`producer watch` against real Redis, workers and AutoGen Studio: edits reach Studio in place
and quickly, a burst of saves is one or two syncs, broken files and a Studio outage are lived
through, Ctrl-C ends it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from producer import embedded
from tests.conftest import ROOT, Cli, StudioView, wait_for
from tests.studio_proxy import StudioProxy

pytestmark = pytest.mark.integration

WRITER = "agents/writer.yaml"
USERS_OF_WRITER = {"research-team", "review-team"}


class Watch:
    """A `producer watch DIR --json` process; its lines are read as they come."""

    def __init__(
        self, cli: Cli, directory: Path, *args: str, env: dict[str, str] | None = None, nohup: bool = False
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "watch", str(directory), "--json", *args],
            env=env or cli.env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as `nohup` starts it: SIGHUP ignored
            preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None,
        )
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True).start()

    def _read(self, stream: Any, is_json: bool) -> None:
        for raw in stream:
            if is_json:
                self.lines.append(json.loads(raw))
            else:
                self.stderr.append(raw)

    def wait_line(self, condition: Any, timeout: float, message: str, after: int = 0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"watch exited {self.proc.returncode}: {''.join(self.stderr)}"
            return next((line for line in self.lines[after:] if condition(line)), None)

        return wait_for(found, timeout, f"{message}; lines: {self.lines}; stderr: {''.join(self.stderr)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


@contextmanager
def watching(cli: Cli, directory: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Watch]:
    watch = Watch(cli, directory, *args, env=env)
    try:
        watch.wait_line(lambda line: True, 120, "the first sync")
        yield watch
    finally:
        watch.stop()


def _clean(line: dict[str, Any]) -> bool:
    return not line["error"] and not line["counts"].get("failed") and not line["problems"]


def _set_message(directory: Path, message: str) -> None:
    path = directory / WRITER
    lines = [
        f"  system_message: {message}" if ln.startswith("  system_message:") else ln
        for ln in path.read_text().splitlines()
    ]
    # saved as editors save safely (a whole new file renamed over the old one), so that no sync
    # can read it half-written
    tmp = path.with_name(f".{path.name}.saving")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _writer_messages(view: StudioView) -> dict[str, str]:
    """The writer's system message in each team that holds it."""
    out = {}
    for label, rows in view.teams_by_label().items():
        for p in rows[0]["component"]["config"]["participants"]:
            if p["config"].get("name") == "writer":
                out[label] = p["config"]["system_message"]
    return out


def test_an_edited_agent_reaches_the_teams_that_use_it_in_place_within_seconds(cli: Cli, examples: Path) -> None:
    view = cli.studio()
    with watching(cli, examples) as watch:
        assert _clean(watch.lines[0]), watch.lines[0]
        before = {label: rows for label, rows in view.teams_by_label().items()}
        assert set(before) >= USERS_OF_WRITER
        seen = len(watch.lines)

        written = time.monotonic()
        _set_message(examples, "Edited while watching.")
        wait_for(
            lambda: set(_writer_messages(view).values()) == {"Edited while watching."},
            30,
            "the edit in Studio",
            interval=0.02,
        )
        latency = time.monotonic() - written
        line = watch.wait_line(lambda line: True, 30, "the sync's line", after=seen)

    after = view.teams_by_label()
    # (about 0.5 s here; how fast is benchmarks/bench_watch.py's to say, this bound only that it is no wait)
    assert latency < 5.0, f"the edit took {latency:.2f} s to reach Studio"
    assert _clean(line), line
    # the teams that embed the writer, and the writer itself, written into the gallery entry
    assert line["counts"]["updated"] == len(USERS_OF_WRITER) + 1 and line["counts"]["created"] == 0, line
    for label, rows in after.items():
        assert len(rows) == 1 and rows[0]["id"] == before[label][0]["id"], f"{label} not updated in place"
        if label not in USERS_OF_WRITER:
            assert rows[0]["updated_at"] == before[label][0]["updated_at"], f"{label} was written"
    assert set(_writer_messages(view)) == USERS_OF_WRITER


def test_an_edit_of_a_file_the_tree_reads_through_a_symlink_is_synced(cli: Cli, examples: Path) -> None:
    """The writer kept in a hidden folder, linked into agents/: its edits were not synced (the
    watch passes over hidden folders), until another change came."""
    hidden = examples / ".shared"
    hidden.mkdir()
    os.replace(examples / WRITER, hidden / "writer.yaml")
    (examples / WRITER).symlink_to(Path("../.shared/writer.yaml"))
    view = cli.studio()
    with watching(cli, examples) as watch:
        assert _clean(watch.lines[0]), watch.lines[0]
        seen = len(watch.lines)
        path = hidden / "writer.yaml"
        path.write_text(path.read_text().replace("system_message:", "system_message: Edited through the link."))
        line = watch.wait_line(lambda line: line["counts"].get("updated"), 30, "the edit's sync", after=seen)
        assert _clean(line), line
    assert set(_writer_messages(view).values()) == {"Edited through the link. You write short, clear summaries."}


def test_a_burst_of_20_saves_is_at_most_2_syncs(cli: Cli, examples: Path) -> None:
    view = cli.studio()
    with watching(cli, examples) as watch:
        seen = len(watch.lines)
        for i in range(20):  # an editor saving on every keystroke
            _set_message(examples, f"Save {i}.")
            time.sleep(0.01)
        wait_for(lambda: set(_writer_messages(view).values()) == {"Save 19."}, 60, "the last save in Studio")
        # a marker edit elsewhere: once a sync that started after it has ended, no sync of the
        # burst is still to come (syncs run one at a time)
        marker_time = time.time()
        marker = examples / "teams/solo-team.json"
        marker.write_text(marker.read_text().replace("The researcher alone", "The researcher, alone"))
        watch.wait_line(lambda line: line["started"] >= marker_time, 60, "the marker's sync", after=seen)
    burst = [line for line in watch.lines[seen:] if line["started"] < marker_time]
    assert 1 <= len(burst) <= 2, f"{len(burst)} syncs for one burst of saves: {burst}"
    assert all(_clean(line) for line in watch.lines), [line for line in watch.lines if not _clean(line)]
    assert view.teams_by_label()["solo-researcher"][0]["component"]["description"].startswith("The researcher, alone")


def test_a_broken_file_is_reported_and_its_fix_synced(cli: Cli, examples: Path) -> None:
    view = cli.studio()
    with watching(cli, examples) as watch:
        seen = len(watch.lines)
        (examples / WRITER).write_text("provider: autogen_agentchat.agents.AssistantAgent\nconfig: [unclosed\n")
        broken = watch.wait_line(lambda line: line["problems"], 60, "the broken file's report", after=seen)
        assert any(WRITER in problem for problem in broken["problems"]), broken
        assert broken["counts"]["created"] == 0
        # what did not depend on the broken file is still in Studio, untouched
        assert "solo-researcher" in view.teams_by_label()

        seen = len(watch.lines)
        shutil.copy(ROOT / "examples" / WRITER, examples / WRITER)
        _set_message(examples, "Fixed.")
        fixed = watch.wait_line(_clean, 60, "a clean sync after the fix", after=seen)
    assert set(_writer_messages(view).values()) == {"Fixed."}, fixed
    assert set(_writer_messages(view)) == USERS_OF_WRITER


def test_a_file_name_that_is_not_utf8_is_reported_and_watching_goes_on(cli: Cli, examples: Path) -> None:
    """watchfiles cannot decode such a name: its watch ended in a traceback, and the watch with it."""
    odd = os.fsdecode(os.fsencode(examples / "agents") + b"/odd\xff.yaml")
    with watching(cli, examples) as watch:
        seen = len(watch.lines)
        Path(odd).write_text("label: [unclosed\n")
        broken = watch.wait_line(lambda line: line["problems"], 60, "the odd file's report", after=seen)
        assert any("odd\udcff.yaml" in problem for problem in broken["problems"]), broken
        assert any("Unable to decode path" in line for line in watch.stderr), watch.stderr

        seen = len(watch.lines)
        Path(odd).unlink()
        _set_message(examples, "Still watching.")
        watch.wait_line(_clean, 60, "a clean sync once it is gone", after=seen)
    assert set(_writer_messages(cli.studio()).values()) == {"Still watching."}


def test_an_edit_made_while_studio_is_down_arrives_when_it_is_back(cli: Cli, own_studio, examples: Path) -> None:
    url, state, restart = own_studio
    cli.studio_url = cli.view_url = url
    view = cli.studio()
    with watching(cli, examples) as watch:
        assert _clean(watch.lines[0]), watch.lines[0]
        embedded.stop(state["proc"])
        seen = len(watch.lines)
        _set_message(examples, "Written while Studio was down.")
        down = watch.wait_line(lambda line: line["retry"], 120, "the failed sync's report", after=seen)
        assert down["error"] or down["counts"]["failed"], down
        restart()
        seen = len(watch.lines)
        watch.wait_line(_clean, 120, "a clean sync once Studio is back", after=seen)
    assert set(_writer_messages(view).values()) == {"Written while Studio was down."}
    assert all(len(rows) == 1 for rows in view.teams_by_label().values())


def test_ctrl_c_stops_the_watch_and_the_services_it_started(cli: Cli, examples: Path, tmp_path: Path) -> None:
    """The embedded default: no REDIS_URL, so the watch starts its own Redis and worker."""
    env = {k: v for k, v in cli.env(AGENTQ_CACHE_DIR=str(tmp_path / "own-cache")).items() if k != "REDIS_URL"}
    view = cli.studio()
    watch = Watch(cli, examples, env=env)
    try:
        first = watch.wait_line(lambda line: True, 180, "the first sync")
        assert _clean(first), (first, watch.stderr)
        started = psutil.Process(watch.proc.pid).children(recursive=True)
        assert started, "the embedded default should run its own Redis and worker"
        assert set(view.teams_by_label()) >= USERS_OF_WRITER
    finally:
        code = watch.stop()
    assert code == 0, "".join(watch.stderr)
    gone, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"still running after the watch ended: {alive}"


def test_redis_going_away_is_reported_and_the_watch_resumes_when_it_is_back(
    studio_url: str, proxy: StudioProxy, tmp_path: Path
) -> None:
    port = embedded.free_port()
    url, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)
    worker = embedded.start_worker(url, concurrency=2, name="watch-redis", log_path=tmp_path / "worker.log")
    cli = Cli(url, proxy.url, f"watch-redis-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
    tree = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", tree)
    try:
        # a few seconds of outage ridden out, not the default minute, before the watch says so
        with watching(cli, tree, env=cli.env(REDIS_OUTAGE_SECONDS="3")) as watch:
            assert _clean(watch.lines[0]), watch.lines[0]
            embedded.stop(redis_proc)
            seen = len(watch.lines)
            _set_message(tree, "Written while Redis was away.")
            down = watch.wait_line(lambda line: line["error"], 120, "the sync's report of Redis", after=seen)
            assert "Redis" in down["error"] and down["retry"], down
            _, redis_proc = embedded.start_redis(tmp_path / "redis", port=port)  # back, empty
            seen = len(watch.lines)
            watch.wait_line(_clean, 120, "a clean sync once Redis is back", after=seen)
        assert set(_writer_messages(cli.studio()).values()) == {"Written while Redis was away."}
        assert all(len(rows) == 1 for rows in cli.studio().teams_by_label().values())
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)


def test_a_sync_beside_a_watch_of_the_tree_is_handed_to_it_and_only_when_it_can_be_trusted(
    cli: Cli, examples: Path
) -> None:
    """`producer sync DIR` next to `producer watch DIR` waits for a sync the watch starts after it
    asked and prints that sync's report as its own (a command that asks while the watch syncs the
    tree as the command sees it gets that sync's: benchmarks/bench_resync.py); another version of
    agentq, other settings or another tree are refused, and without a watch the command syncs alone."""
    import socket

    from producer.handoff import code_digest, socket_path

    view = cli.studio()
    # a long debounce: the command asks before the watch's own sync of the edit would start
    with watching(cli, examples, "--debounce", "60000") as watch:
        _set_message(examples, "Handed over.")
        rc, report, err = cli.sync(examples)
        assert rc == 0, err
        assert f"Synced by the watch of this tree (pid {watch.proc.pid})" in err, err
        assert report["counts"]["updated"] == len(USERS_OF_WRITER) + 1, report["counts"]
        assert set(_writer_messages(view).values()) == {"Handed over."}
        watch.wait_line(lambda line: line["run_id"] == report["run_id"], 30, "the watch's line for that sync")

        # the watch left the no-change record a plain sync leaves: the next sync is answered at once
        rc, again, err = cli.sync(examples)
        assert rc == 0 and again.get("no_change") and "Synced by the watch" not in err, (again, err)

        # other settings: a sync of its own
        _set_message(examples, "Not handed over.")
        rc, alone, err = cli.sync(examples, SYNC_BATCH_SIZE="7")
        assert rc == 0 and "Synced by the watch" not in err, err
        assert alone["counts"]["updated"] == len(USERS_OF_WRITER) + 1

        def ask(**changes: object) -> dict[str, Any]:
            request = {"v": 1, "root": str(examples.resolve()), "code": code_digest(), "environ": cli.env(), **changes}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(socket_path(examples.resolve(), cli.cache_dir, cli.env())))
                conn.sendall(json.dumps(request).encode() + b"\n")
                return json.loads(conn.makefile().readline())

        assert ask(code="0" * 32) == {"ok": False, "why": "another version of agentq"}
        assert ask(root="/elsewhere") == {"ok": False, "why": "another tree"}
        assert ask(environ={**cli.env(), "STUDIO_URL": "http://127.0.0.1:1"})["why"] == "other settings: STUDIO_URL"

        # a file name that is not UTF-8 comes back in the handed report as the bytes it is
        odd = Path(os.fsdecode(os.fsencode(examples / "agents") + b"/odd\xff.yaml"))
        odd.write_text("label: [unclosed\n")
        rc, broken, err = cli.sync(examples)
        assert rc == 1 and "Synced by the watch" in err, err
        assert any("odd\udcff.yaml" in label for label in broken["nodes"]), list(broken["nodes"])
        odd.unlink()
        # a watch stopped (Ctrl-Z) answers nothing: the command gives up on it and syncs alone
        os.kill(watch.proc.pid, signal.SIGSTOP)
        try:
            _set_message(examples, "Watch stopped.")
            rc, alone, err = cli.sync(examples)
            assert rc == 0 and "Synced by the watch" not in err, err
            assert alone["counts"]["updated"] == len(USERS_OF_WRITER) + 1
        finally:
            os.kill(watch.proc.pid, signal.SIGCONT)
    path = socket_path(examples.resolve(), cli.cache_dir, cli.env())
    assert not path.exists()  # gone with the watch

    # a killed watch's socket, nobody listening behind it: the command syncs alone
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    _set_message(examples, "No watch.")
    rc, report, err = cli.sync(examples)
    assert rc == 0 and "Synced by the watch" not in err and report["counts"]["updated"] == len(USERS_OF_WRITER) + 1
    path.unlink()

    # something of ours listening there, answering what no watch answers: the command syncs alone
    import threading

    for i, answer in enumerate(
        (
            b'{"ok": true}\n',
            b'{"ok": true, "report": {"run_id": "FAKE"}, "warnings": "abc", "succeeded": true, "pid": 1}\n',
        )
    ):
        impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        impostor.bind(str(path))
        impostor.listen()

        def serve(server: socket.socket = impostor, said: bytes = answer) -> None:
            conn, _ = server.accept()
            conn.makefile("rb").readline()
            conn.sendall(said)
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        _set_message(examples, f"Impostor {i}.")
        rc, report, err = cli.sync(examples)
        assert rc == 0 and "Synced by the watch" not in err and "warning: a" not in err, err
        assert report["counts"]["updated"] == len(USERS_OF_WRITER) + 1
        impostor.close()
        path.unlink()


def test_a_long_debounce_holds_back_the_watchs_own_syncs_only(cli: Cli, examples: Path) -> None:
    """With --debounce 20000 a sync handed to the watch took 38 s and SIGTERM waited for the
    debounce: the watch woke only once a debounce."""
    with watching(cli, examples, "--debounce", "20000") as watch:
        _set_message(examples, "Handed over at once.")
        started = time.monotonic()
        rc, report, err = cli.sync(examples)
        assert rc == 0 and "Synced by the watch" in err, err
        assert time.monotonic() - started < 15, "the hand-off waited for the debounce"
        watch.proc.send_signal(signal.SIGTERM)
        watch.proc.wait(timeout=10)
    proc = cli.run("watch", str(examples), "--debounce", "600001")
    assert proc.returncode == 2 and "--debounce" in proc.stderr and "Traceback" not in proc.stderr


def test_a_tree_swapped_for_another_folder_at_its_path_is_watched_there(cli: Cli, examples: Path) -> None:
    """A deploy's atomic swap: the watch went on hearing the old folder, and never synced an edit
    of the new one."""
    new = examples.with_name("examples.new")
    shutil.copytree(examples, new)
    with watching(cli, examples) as watch:
        examples.rename(examples.with_name("examples.old"))
        new.rename(examples)
        seen = len(watch.lines)
        watch.wait_line(lambda line: True, 30, "a sync of the swapped-in folder", after=seen)
        _set_message(examples, "After the swap.")
        view = cli.studio()
        wait_for(lambda: set(_writer_messages(view).values()) == {"After the swap."}, 30, "the edit synced")
        assert watch.proc.poll() is None


def test_a_watch_whose_tree_is_moved_away_ends_saying_so(cli: Cli, examples: Path) -> None:
    """It said 'synced' for an empty tree and went on watching nothing."""
    with watching(cli, examples) as watch:
        examples.rename(examples.with_name("moved"))
        assert watch.proc.wait(timeout=60) == 2
        said = "".join(watch.stderr)
        assert f"{examples}: the tree's folder is gone" in said and "Traceback" not in said, said
        assert not [line for line in watch.lines[1:] if line.get("counts")], watch.lines  # no sync of nothing


def test_a_watch_started_under_nohup_outlives_the_hangup(cli: Cli, examples: Path) -> None:
    """`nohup producer watch DIR &` then logging out: the watch goes on (a plain one ends as on Ctrl-C)."""
    watch = Watch(cli, examples, nohup=True)
    try:
        watch.wait_line(lambda line: True, 120, "the first sync")
        seen = len(watch.lines)
        watch.proc.send_signal(signal.SIGHUP)
        _set_message(examples, "Edited after the hangup.")
        line = watch.wait_line(lambda line: True, 60, "a sync after the hangup", after=seen)
        assert line["counts"]["updated"] >= 1, line
    finally:
        assert watch.stop() in (0, 130)
