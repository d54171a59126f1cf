"""No change, no work: an unchanged tree is answered from the last clean sync's record and one
Redis round trip; any change that could alter the outcome goes through the full sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from producer import nochange
from shared.adapters.redis.resp import redis_call
from shared.core.gallery_answer import without_components
from tests.conftest import Cli
from tests.test_studio_outage import _write_tree

TEAMS = 6


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    _write_tree(tree, TEAMS)
    # a variable the tree uses: its being set is part of what decides the outcome
    model = tree / "model.yaml"
    model.write_text(model.read_text().replace("api_key: not-a-real-key", "api_key: '${AGENTQ_TEST_SECRET}'"))
    return tree


def test_an_unchanged_tree_is_answered_without_a_run_and_any_change_runs_again(cli: Cli, tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    env: dict[str, str] = {}
    rc, first, err = cli.sync(tree, **env)
    assert rc == 0 and first["counts"]["created"] == TEAMS + 2, err

    rc, again, err = cli.sync(tree, **env)
    assert rc == 0, err
    assert again["no_change"] and again["run_id"] is None and again["last_run_id"] == first["run_id"]
    assert again["counts"]["unchanged"] == TEAMS + 2 and again["studio_requests"] == {}
    assert isinstance(again["seconds"], float) and again["tree"] == first["tree"]
    assert set(again["nodes"]) == set(first["nodes"])
    human = cli.run("sync", str(tree), **env)
    assert human.returncode == 0 and "no change since the last sync" in human.stdout

    # one team changed: a run, that writes that team only
    team = tree / "teams" / "t001.yaml"
    team.write_text(team.read_text() + "description: edited\n")
    rc, edited, err = cli.sync(tree, **env)
    assert rc == 0 and "no_change" not in edited, err
    assert edited["counts"]["updated"] == 1 and edited["counts"]["unchanged"] == TEAMS + 1
    assert cli.sync(tree, **env)[1].get("no_change")

    # a flag: the full path decides
    assert "no_change" not in cli.sync(tree, "--force", **env)[1]
    # a broken file: an unclean sync forgets the record; once fixed, a clean one writes it again
    (tree / "broken.yaml").write_text("label: [unclosed\n")
    rc, broken, _ = cli.sync(tree, **env)
    assert rc == 1 and "no_change" not in broken
    assert "no_change" not in cli.sync(tree, **env)[1]
    (tree / "broken.yaml").unlink()
    assert "no_change" not in cli.sync(tree, **env)[1]
    assert cli.sync(tree, **env)[1].get("no_change")

    # an ignore file that does not parse: said as the full path says it (exit 2), not a traceback
    (tree / ".producerignore").write_text("a\\\n")
    proc = cli.run("sync", str(tree), "--json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert ".producerignore" in json.loads(proc.stdout)["error"]
    (tree / ".producerignore").unlink()
    assert cli.sync(tree, **env)[1].get("no_change")  # the tree is as the last clean sync left it

    # the cache lost its root (flushed, expired): the full path runs, and finds every entry it still has
    r = redis.Redis.from_url(cli.redis_url)
    for key in r.scan_iter("agentq:root:*"):
        r.delete(key)
    rc, rebuilt, err = cli.sync(tree, **env)
    assert rc == 0 and "no_change" not in rebuilt and rebuilt["counts"]["unchanged"] == TEAMS + 2, err


def test_a_touched_file_or_a_new_one_is_a_change(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    names = ["REDIS_URL", "STUDIO_URL"]
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "STUDIO_URL": "http://127.0.0.1:9"}
    before = nochange.fingerprint(tree, names, ["V"], env)
    assert nochange.fingerprint(tree, names, ["V"], env) == before
    assert nochange.fingerprint(tree, names, ["V"], {**env, "V": "set"}) != before
    assert nochange.fingerprint(tree, names, ["V"], {**env, "STUDIO_URL": "http://127.0.0.1:8"}) != before
    team = tree / "teams" / "t000.yaml"
    stamp = team.stat().st_mtime_ns + 1_000_000
    os.utime(team, ns=(stamp, stamp))
    touched = nochange.fingerprint(tree, names, ["V"], env)
    assert touched != before
    (tree / "teams" / "new.yaml").write_text("label: new\n")
    assert nochange.fingerprint(tree, names, ["V"], env) != touched
    (tree / ".producerignore").write_text("teams/new.yaml\n")
    assert nochange.fingerprint(tree, names, ["V"], env) == touched


def test_file_names_that_are_not_utf8_are_synced_named_and_answered(cli: Cli, tmp_path: Path) -> None:
    """Linux allows any bytes in a name. A valid component in such a file is synced; a broken one
    is named in the report; neither the record, Redis nor the no-change answer stumbles on it."""
    tree = _tree(tmp_path)
    odd = os.fsencode(tree / "model.yaml").replace(b"model.yaml", b"m\xffodel-copy.yaml")
    Path(os.fsdecode(odd)).write_text((tree / "model.yaml").read_text().replace("label: ", "label: copy-of-", 1))
    rc, first, err = cli.sync(tree)
    assert rc == 0 and first["counts"]["created"] == TEAMS + 3, err
    rc, again, err = cli.sync(tree)
    assert rc == 0 and again.get("no_change"), err

    broken = os.fsdecode(os.fsencode(tree) + b"/br\xfbken.yaml")
    Path(broken).write_text("label: [unclosed\n")
    rc, report, err = cli.sync(tree)
    assert rc == 1 and "Traceback" not in err, err
    assert report["nodes"]["br\udcfbken.yaml"]["status"] == "failed"
    # printed as the bytes it is, also where the locale would have Python refuse it
    human = subprocess.run(
        [sys.executable, "-m", "producer.cli", "sync", str(tree)],
        env=cli.env(PYTHONIOENCODING="ascii:strict"),
        capture_output=True,
        timeout=120,
    )
    assert human.returncode == 1 and b"Traceback" not in human.stderr, human.stderr
    assert b"br\xfbken.yaml" in human.stdout


def test_the_resp_client_reads_a_key_with_auth_and_db(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    key = f"agentq:test:{time.monotonic_ns()}"
    r.set(key, b"value\r\nwith crlf")
    assert redis_call(redis_url, ["GET", key]) == b"value\r\nwith crlf"
    assert redis_call(redis_url, ["GET", key + ":missing"]) is None
    assert redis_call(redis_url, ["EXISTS", key]) == 1
    r.delete(key)


def test_studios_listing_for_the_fast_path_is_bounded_in_time_size_and_depth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that drips its answer, sends one too big, or JSON nested too deeply: the fast path
    leaves the sync to the full one (which says what is wrong) instead of hanging or crashing."""
    import socket
    import threading

    answers = {
        "drip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "big": b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{",
    }
    deep = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answers["deep"] = f"HTTP/1.1 200 OK\r\nContent-Length: {len(deep)}\r\n\r\n".encode() + deep
    server = socket.create_server(("127.0.0.1", 0))
    kind = {"now": "drip"}

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # the test closed the server: it is over
                return
            conn.recv(65536)
            conn.sendall(answers[kind["now"]])
            while kind["now"] == "drip" and not stop.is_set():  # a byte at a time, never ending
                conn.sendall(b"1\r\n \r\n")
                time.sleep(0.05)
            conn.close()

    stop = threading.Event()
    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(nochange, "STUDIO_SECONDS", 1.0)
    root, cache = tmp_path / "tree", tmp_path / "cache"
    root.mkdir()
    studio = [f"http://127.0.0.1:{server.getsockname()[1]}", "me"]
    last = nochange.LastSync(
        nochange.fingerprint(root, [], [], {}), "d", [], [], "t", 1, {}, studio, {"1": ["h", "s"]}, []
    )
    for now in ("big", "deep"):
        kind["now"] = now
        assert nochange._rows_as_written(last, {}) is False, now
    kind["now"] = "drip"
    nochange.save(nochange.record_path(root, cache), last, {"tree": "t", "nodes": {}})
    started = time.monotonic()
    assert nochange.answer(root, "redis://127.0.0.1:1/0", cache, {}) is None
    assert time.monotonic() - started < 5
    stop.set()
    server.close()


def test_a_gallery_entrys_head_is_read_without_its_components_and_any_other_layout_whole() -> None:
    """The no-change path reads the entry's id and timestamp without parsing megabytes of members;
    what it reads is what parsing the whole answer gives."""
    members = {"agents": [{"label": f"a{i}", "config": {"components": {"x": i}}} for i in range(50)]}

    def answer(data: dict) -> bytes:
        return json.dumps({"message": "ok", "status": True, "data": data}, separators=(",", ":")).encode()

    row = {"version": "1", "updated_at": "2026-12-07T03:25:36", "id": 4, "user_id": "u"}
    config = {"id": "agentq-t", "name": "t", "metadata": {"components": {"nested": True}}}
    for body in (
        answer({**row, "config": {**config, "metadata": {}, "components": members}}),  # Studio's layout
        answer({**row, "config": {**config, "components": members}}),  # a key named so inside metadata
        answer({"config": {"components": members, **config}, **row}),  # components first
        answer({**row, "config": {**config, "components": members, "after": 1}}),  # not last
    ):
        whole = json.loads(body)
        head = without_components(body)
        assert head["data"]["updated_at"] == whole["data"]["updated_at"]
        assert head["data"]["config"]["id"] == whole["data"]["config"]["id"]
        assert head["data"]["id"] == whole["data"]["id"]
