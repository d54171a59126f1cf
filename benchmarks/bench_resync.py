"""Re-sync of a 10,000-file tree against `git status`, and an edited file's sync against the physical
floor of that edit (issue "Speed at the limit").

    python benchmarks/bench_resync.py [--files 10000] [--repeat 7] [--watch-edits 20] [--debounce 100]
                                      [--check-bodies] [--profile DIR] [--json]

A real redis-server, one celery worker and a real AutoGen Studio; the generated tree
(benchmarks/gen_tree.py), committed to a throwaway git repository. A first sync fills the cache and
a second writes the no-change record. Then, `--repeat` times, alternating so that all see the same
machine load, each a whole command (process start included):
- `git status --porcelain` on the tree, and `python -c pass` (this interpreter's start);
- `producer sync DIR --json` with nothing changed (target: at most 8x git status);
- one agent file edited (its description), then `producer sync DIR --json` (target: at most 2x
  the floor);
- the floor of that edit, right after it: the writes the edit needs, replayed by a raw client
  (httpx, no agentq code) against the same Studio: a POST /teams/ (update in place, with "id") for
  each team that embeds the edited agent, and the gallery entry's GET and PUT, with the bodies our
  sync sent. Which writes: the teams whose participants name the agent, checked against the
  requests the sync itself reports (`studio_requests`: every write it sent, each team POST and the
  gallery PUT, must be one the replay sends). The bodies: read back from Studio after the sync
  (it stores components and the row's `version` byte for byte, so its rows hold exactly what the
  sync sent), in the order and encoding our client sends (shared/core/json_text.py: compact, UTF-8).
  `--check-bodies` also runs one edited sync at the end through a recording proxy and compares the
  bytes it sent with the replay's (a proxy URL is another Studio to the cache, so that sync is a
  cold one; the timed syncs never go through it). The replay's teams and gallery go
  concurrently on one fresh connection pool: the lowest Studio can do, which serves one request
  at a time. Floor = replay + `python -c pass` (the one process start a command cannot avoid).
Then, unless `--watch-edits 0`: `producer watch DIR --json --debounce MS` on the same tree, and per
edit the time from the file write to the watch's line for that sync (the sync has ended; its
counts are checked), each followed by the same raw replay. Target: watch p95 at most 1.2x the
replay's median (the floor without the process start, which a resident watch does not pay).
After each watched edit, another edit and at once `producer sync DIR --json`, which hands its
sync to the watch (producer/handoff.py: its stderr says so, its counts are checked), against the
floor of its own replay plus the interpreter's start (target: 2x, as for the edited sync).
Ratios are of medians (p95 for the watch) over the same run.

`--profile DIR`, after the measurements: 5 more edited syncs, each run by a small harness that
times the steps of `producer sync` by wrapping them from outside (PHASES below: every module the
sync imports is imported first, so the steps exclude imports), with the worker's log of each
(celery's task lines: received, succeeded in N s); then 3 more sampled by py-spy (250 Hz, per
thread, not pausing the processes; py-spy must be installed): the worker and Studio (busy samples)
in all 3, the producer (wall clock, idle included) in the last (DIR/worker.raw, studio.raw,
sync.raw: collapsed stacks); then one under `python -X importtime` (DIR/importtime.txt).
DIR/summary.txt says where the seconds went; --json carries the step medians.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.server
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gen_tree import mixed_tree  # noqa: E402
from producer import embedded  # noqa: E402
from shared.core.drift import GALLERY_AUTHOR  # noqa: E402
from shared.core.json_text import dumps  # noqa: E402

USER = "bench"
TARGETS = {"no_change_over_git": 8.0, "edited_over_floor": 2.0, "watch_p95_over_replay": 1.2, "handed_over_floor": 2.0}


def _log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _timed(cmd: list[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - t0, proc


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def _encode(body: dict[str, Any]) -> bytes:
    """As shared/adapters/studio.py encodes a body (shared/core/json_text.py)."""
    return dumps(body).encode("utf-8")


@contextmanager
def _redis_and_worker(tmp: Path, concurrency: int) -> Iterator[tuple[str, int]]:
    """A private redis-server and one celery worker (as benchmarks/common.py starts them), stopped by
    PID; yields Redis's URL and the worker's PID."""
    with embedded.LocalServices() as services:
        url, proc = embedded.start_redis(tmp / "redis")
        services.add_process(proc)
        worker = embedded.start_worker(url, concurrency=concurrency, name="bench0", log_path=tmp / "worker0.log")
        services.add_process(worker)
        yield url, worker.pid


# --- the floor: the edit's writes, replayed by a raw client ----------------------------------------


@dataclass
class Writes:
    """The requests one edit needs: team updates in place, then the gallery entry's GET and PUT."""

    team_ids: list[int]
    gallery_id: int
    team_bodies: list[bytes] = field(default_factory=list)
    gallery_body: bytes = b""

    def read_back(self, client: httpx.Client) -> None:
        """The bodies our sync sent, from what Studio stored (outside the timing)."""
        self.team_bodies = []
        for team_id in self.team_ids:
            row = client.get(f"/api/teams/{team_id}", params={"user_id": USER}).raise_for_status().json()["data"]
            # shared/adapters/studio.py save_team: user_id, component, version, then id
            body = {"user_id": USER, "component": row["component"], "version": row["version"], "id": team_id}
            self.team_bodies.append(_encode(body))
        row = client.get(f"/api/gallery/{self.gallery_id}", params={"user_id": USER}).raise_for_status().json()
        self.gallery_body = _encode({"user_id": USER, "config": row["data"]["config"]})  # save_gallery's body

    def sizes(self) -> dict[str, Any]:
        return {"team_posts": [len(b) for b in self.team_bodies], "gallery_put": len(self.gallery_body)}


def replay(base_url: str, writes: Writes) -> float:
    """Seconds for Studio to take the writes, sent concurrently by plain httpx on a fresh pool."""
    headers = {"Content-Type": "application/json"}
    params = {"user_id": USER}

    async def run() -> float:
        async with httpx.AsyncClient(base_url=base_url + "/api", timeout=60, verify=False) as client:

            async def team(body: bytes) -> None:
                (await client.post("/teams/", content=body, headers=headers)).raise_for_status()

            async def gallery() -> None:
                got = await client.get(f"/gallery/{writes.gallery_id}", params=params)
                got.raise_for_status()  # the body is read whole (not parsed)
                put = await client.put(
                    f"/gallery/{writes.gallery_id}", params=params, content=writes.gallery_body, headers=headers
                )
                put.raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(gallery(), *(team(b) for b in writes.team_bodies))
            return time.perf_counter() - t0

    return asyncio.run(run())


def check_reported(requests: dict[str, int], writes: Writes) -> None:
    """Every write our sync reports sending is one the replay sends, and the other way round."""
    sent = {k: v for k, v in requests.items() if not k.startswith("GET ")}
    expected = {f"PUT /gallery/{writes.gallery_id}": 1}
    if writes.team_ids:
        expected["POST /teams/"] = len(writes.team_ids)
    assert sent == expected, f"the sync wrote {sent}; the replay sends {expected}"
    assert requests.get(f"GET /gallery/{writes.gallery_id}") == 1, requests


# --- --check-bodies: what our sync sends, recorded on the wire --------------------------------------


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = httpx.Client(base_url=upstream, timeout=120)
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen.append((self.command, self.path, body))
        keep = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        answer = self.server.upstream.request(self.command, self.path, content=body, headers=keep)
        self.send_response(answer.status_code)
        for name in ("content-type", "location"):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward


def check_bodies(sync: list[str], env: dict[str, str], studio_url: str, edit: Any, writes: Writes) -> dict[str, Any]:
    recorder = _Recorder(studio_url)
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    try:
        edit("recorded edit")
        proxied = {**env, "STUDIO_URL": f"http://127.0.0.1:{recorder.server_address[1]}"}
        _, proc = _timed(sync, env=proxied, timeout=7200, cwd=ROOT)
        report = json.loads(proc.stdout)
        assert not report["counts"]["failed"], report["counts"]
    finally:
        recorder.shutdown()
        recorder.upstream.close()
    with httpx.Client(base_url=studio_url) as client:
        writes.read_back(client)
    sent_teams = sorted(b for m, p, b in recorder.seen if m == "POST" and p.startswith("/api/teams/"))
    sent_gallery = [b for m, p, b in recorder.seen if m == "PUT" and p.startswith(f"/api/gallery/{writes.gallery_id}")]
    same_teams = sent_teams == sorted(writes.team_bodies)
    same_gallery = sent_gallery == [writes.gallery_body]
    out = {
        "recorded": [f"{m} {p.split('?')[0]} {len(b)} B" for m, p, b in recorder.seen if m != "GET"],
        "team_bodies_identical": same_teams,
        "gallery_body_identical": same_gallery,
        "replay_sizes": writes.sizes(),
    }
    assert same_teams and same_gallery, out
    return out


# --- the run ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000, help="files in the generated tree (default 10000)")
    ap.add_argument("--repeat", type=int, default=7, help="measured rounds, at least 5 (default 7)")
    ap.add_argument("--watch-edits", type=int, default=20, help="edits under `producer watch` (0: none; default 20)")
    ap.add_argument("--debounce", type=int, default=100, help="--debounce of producer watch, ms (default 100)")
    ap.add_argument("--check-bodies", action="store_true", help="compare the replay's bodies with a recorded sync's")
    ap.add_argument(
        "--profile", metavar="DIR", help="time the edited sync step by step and sample it with py-spy, into DIR"
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    args = ap.parse_args()
    if args.repeat < 5:
        ap.error("--repeat must be at least 5: the ratios are of medians over at least 5 runs")
    if args.profile:
        _py_spy()  # found before the measured rounds, not after them
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        tree = tmp / "tree"
        mixed_tree(tree, args.files)
        git = ["git", "-C", str(tree)]
        subprocess.run(git + ["init", "-q"], check=True)
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(
            git + ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "tree"], check=True
        )
        # the agent edited: one a team embeds (agent-3 in a 10,000-file tree, as before)
        teams = sorted((tree / "teams").glob("*.json"))
        agent_label = f"agent-{min(3, len(teams) - 1)}"
        agent_file = tree / "agents" / f"a{agent_label.split('-')[1]}.json"
        users = sorted(
            json.loads(p.read_text())["label"]
            for p in teams
            if {"$ref": agent_label} in json.loads(p.read_text())["config"]["participants"]
        )

        def edit(text: str) -> None:
            spec = json.loads(agent_file.read_text())
            spec["config"]["description"] = text
            agent_file.write_text(json.dumps(spec))

        with _redis_and_worker(tmp, concurrency=8) as (redis_url, worker_pid):
            studio_url, studio = embedded.start_studio(tmp / "studio", binary=os.environ.get("AUTOGENSTUDIO_BIN"))
            try:
                env = {
                    **os.environ,
                    "REDIS_URL": redis_url,
                    "STUDIO_URL": studio_url,
                    "STUDIO_USER_ID": USER,
                    "AGENTQ_CACHE_DIR": str(tmp / "cache"),
                }
                result = measure(args, tree, env, studio_url, agent_label, users, edit, tmp / "worker0.log")
                if args.profile:
                    pids = {"worker": worker_pid, "studio": studio.pid}
                    result["profile"] = profile(Path(args.profile), tree, env, edit, pids, tmp / "worker0.log")
                writes = result.pop("_writes")
                if args.check_bodies:
                    sync = [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json"]
                    result["check_bodies"] = check_bodies(sync, env, studio_url, edit, writes)
                return result
            finally:
                embedded.stop(studio)


def measure(
    args: argparse.Namespace,
    tree: Path,
    env: dict[str, str],
    studio_url: str,
    agent_label: str,
    users: list[str],
    edit: Any,
    worker_log: Path,
) -> dict[str, Any]:
    cli = [sys.executable, "-m", "producer.cli"]
    sync = [*cli, "sync", str(tree), "--json"]
    wall, first = _timed(sync, env=env, timeout=7200, cwd=ROOT)
    assert first.returncode == 0 and first.stdout, first.stderr[-2000:]
    first_counts = json.loads(first.stdout)["counts"]
    _log(f"first sync of {args.files} files: {wall:.1f} s, counts {first_counts}")
    _timed(sync, env=env, timeout=600, cwd=ROOT)  # the first re-sync writes the no-change record

    with httpx.Client(base_url=studio_url, timeout=60) as client:
        rows = client.get("/api/teams/", params={"user_id": USER}).json()["data"]
        team_ids = sorted(r["id"] for r in rows if r["component"].get("label") in users)
        galleries = client.get("/api/gallery/", params={"user_id": USER}).json()["data"]
        ours = [g for g in galleries if (g.get("config") or {}).get("metadata", {}).get("author") == GALLERY_AUTHOR]
        assert len(team_ids) == len(users) and len(ours) == 1, (users, team_ids, len(ours))
        writes = Writes(team_ids, int(ours[0]["id"]))

    samples: dict[str, list[float]] = {
        k: [] for k in ("git_status", "interpreter", "no_change", "edited", "replay", "floor", "edited_run")
    }
    timelines: list[dict[str, float]] = []  # the worker's log of each edited sync
    tail = LogTail(worker_log)
    reported: dict[str, int] = {}
    for i in range(args.repeat):
        wall, _ = _timed(["git", "-C", str(tree), "status", "--porcelain"])
        samples["git_status"].append(wall)
        wall, _ = _timed([sys.executable, "-c", "pass"])
        samples["interpreter"].append(wall)
        wall, proc = _timed(sync, env=env, timeout=600, cwd=ROOT)
        report = json.loads(proc.stdout)
        assert report["counts"]["unchanged"] == args.files and not report["studio_requests"], report["counts"]
        samples["no_change"].append(wall)

        edit(f"edit {i}")
        tail.new()
        wall, proc = _timed(sync, env=env, timeout=600, cwd=ROOT)
        report = json.loads(proc.stdout)
        assert report["counts"]["updated"] == 1 + len(users) and not report["counts"]["failed"], report["counts"]
        check_reported(report["studio_requests"], writes)
        samples["edited"].append(wall)
        samples["edited_run"].append(float(report["seconds"]))
        reported = report["studio_requests"]
        time.sleep(0.2)  # the worker's last log line
        timelines.append(worker_timeline(tail.new()))

        with httpx.Client(base_url=studio_url, timeout=60) as client:
            writes.read_back(client)
        samples["replay"].append(replay(studio_url, writes))
        samples["floor"].append(samples["replay"][-1] + samples["interpreter"][-1])
        _log(
            f"round {i + 1}/{args.repeat}: git status {samples['git_status'][-1]:.3f} s, "
            f"no change {samples['no_change'][-1]:.3f} s, edited {samples['edited'][-1]:.3f} s "
            f"(run {samples['edited_run'][-1]:.3f} s), floor {samples['floor'][-1]:.3f} s "
            f"(Studio {samples['replay'][-1]:.3f} + start {samples['interpreter'][-1]:.3f})"
        )
        _timed(sync, env=env, timeout=600, cwd=ROOT)  # back to a recorded no-change state

    watched = measure_watch(args, tree, env, cli, studio_url, users, edit, writes) if args.watch_edits else {}

    med = {k: statistics.median(v) for k, v in samples.items()}
    ratios: dict[str, Any] = {
        "no_change_over_git": med["no_change"] / med["git_status"],
        "edited_over_floor": med["edited"] / med["floor"],
    }
    watch: dict[str, Any] | None = None
    if watched:
        watch = {
            "debounce_ms": args.debounce,
            "edits": len(watched["watched"]),
            "median": statistics.median(watched["watched"]),
            "p95": _p95(watched["watched"]),
            "max": max(watched["watched"]),
            "replay_median": statistics.median(watched["replay"]),
            "sync_seconds_median": statistics.median(watched["syncs"]),  # the watch's own timing of each sync
            "handed_median": statistics.median(watched["handed"]),  # `producer sync` handed to the watch
            "handed_replay_median": statistics.median(watched["handed_replay"]),
            "samples": watched["watched"],
            "sync_seconds": watched["syncs"],
            "replay_samples": watched["replay"],
            "handed_samples": watched["handed"],
        }
        ratios["watch_p95_over_replay"] = watch["p95"] / watch["replay_median"]
        # the floor of a command: the replay plus one interpreter start, as for the edited sync
        ratios["handed_over_floor"] = watch["handed_median"] / (watch["handed_replay_median"] + med["interpreter"])
    return {
        "params": {
            "files": args.files,
            "repeat": args.repeat,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        },
        "edit": {"agent": agent_label, "teams_using_it": users},
        "first_sync": {"seconds": round(wall, 3), "counts": first_counts},
        "writes": {"reported_by_sync": reported, **writes.sizes()},
        "samples": samples,
        "medians": med,
        "worker_tasks_median": {
            key: statistics.median(t.get(key, 0.0) for t in timelines)
            for key in dict.fromkeys(k for t in timelines for k in t)
        },
        "watch": watch,
        "ratios": ratios,
        "targets": TARGETS,
        "check_bodies": None,
        "_writes": writes,  # for check_bodies, last (its sync leaves the rows drifted for this namespace)
    }


def measure_watch(
    args: argparse.Namespace,
    tree: Path,
    env: dict[str, str],
    cli: list[str],
    studio_url: str,
    users: list[str],
    edit: Any,
    writes: Writes,
) -> dict[str, list[float]]:
    """Per round: an edit, timed to the watch's line for the sync of that edit; then another edit
    followed at once by `producer sync DIR --json`, which hands its sync to the watch
    (producer/handoff.py), timed as a whole command; each followed by the raw replay. Also the
    watch's own seconds for each sync (from its start, after the debounce, to its end)."""
    import queue

    watch = subprocess.Popen(
        [*cli, "watch", str(tree), "--json", "--debounce", str(args.debounce)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(target=lambda: [lines.put(json.loads(raw)) for raw in watch.stdout], daemon=True).start()
    out: dict[str, list[float]] = {"watched": [], "replay": [], "syncs": [], "handed": [], "handed_replay": []}
    sync = [*cli, "sync", str(tree), "--json"]

    def synced_edit(timeout: float = 120) -> dict[str, Any]:
        """The watch's next line for a sync that wrote the edit (a sync that found it done is skipped)."""
        while True:
            line = lines.get(timeout=timeout)
            assert not line["error"] and not line["counts"].get("failed"), line
            if line["counts"].get("updated") == 1 + len(users):
                return line

    def replayed(key: str) -> None:
        with httpx.Client(base_url=studio_url, timeout=60) as client:
            writes.read_back(client)
        out[key].append(replay(studio_url, writes))

    try:
        first = lines.get(timeout=600)
        assert not first["error"] and not first["counts"]["failed"], first
        for i in range(args.watch_edits):
            time.sleep(0.2)  # the watch idle, as between a person's saves
            start = time.perf_counter()
            edit(f"watched edit {i}")
            line = synced_edit()
            out["watched"].append(time.perf_counter() - start)
            out["syncs"].append(float(line["seconds"]))
            replayed("replay")

            time.sleep(0.2)
            edit(f"handed edit {i}")
            wall, proc = _timed(sync, env=env, timeout=600, cwd=ROOT)
            report = json.loads(proc.stdout)
            assert "Synced by the watch" in proc.stderr, proc.stderr[-2000:]
            assert report["counts"]["updated"] == 1 + len(users) and not report["counts"]["failed"], report["counts"]
            out["handed"].append(wall)
            synced_edit()
            while not lines.empty():  # a later sync of the same edit, when the command asked first
                lines.get()
            replayed("handed_replay")
        _log(
            f"watch: {args.watch_edits} edits, median {statistics.median(out['watched']):.3f} s, "
            f"p95 {_p95(out['watched']):.3f} s; the sync itself median {statistics.median(out['syncs']):.3f} s; "
            f"replay median {statistics.median(out['replay']):.3f} s; a sync handed to the watch median "
            f"{statistics.median(out['handed']):.3f} s, its replay {statistics.median(out['handed_replay']):.3f} s"
        )
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.wait(timeout=60)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()
    return out


# --- --profile ------------------------------------------------------------------------------------

OURS = ("producer/", "shared/", "workers/")


# Run as `python -c PHASES modules.json out.json TREE --json` (cwd: the repository): `producer sync`
# as the CLI runs it, with the seconds of its steps taken by wrapping them from outside (no product
# code changed). Every module the sync imports is imported first (their list: modules.json, written
# by an earlier run), so that each step's seconds are its own work, not the imports it triggers.
PHASES = r"""
import atexit, importlib, json, os, sys, time
T0 = time.perf_counter()
modules_path, out_path = sys.argv[1], sys.argv[2]
sys.argv = ["producer", "sync", *sys.argv[3:]]
if os.path.exists(modules_path):
    for name in json.load(open(modules_path)):
        try:
            importlib.import_module(name)
        except Exception:
            pass
seconds = {"imports (every module the sync imports)": time.perf_counter() - T0}
calls = {}

def wrap(path, attr, label):
    module, _, cls = path.partition(":")
    try:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        inner = getattr(owner, attr)
    except (ImportError, AttributeError):
        return
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - t
            calls[label] = calls.get(label, 0) + 1
    setattr(owner, attr, timed)

for target in json.loads(os.environ["BENCH_PHASE_TARGETS"]):
    wrap(*target)

def done():
    seconds["main (producer.cli), all of it"] = time.perf_counter() - T1
    json.dump({"seconds": seconds, "calls": calls, "since_start": time.perf_counter() - T0}, open(out_path, "w"))
    if not os.path.exists(modules_path):
        # in the order they were first imported (dicts keep it)
        names = [n for n, m in list(sys.modules.items()) if m is not None and not n.startswith(("__main__", "__mp_main__"))]
        json.dump(names, open(modules_path, "w"))

atexit.register(done)
import producer.cli
T1 = time.perf_counter()
producer.cli.main()
"""

# (module[:class], attribute, label); a label's indent is its place in the call tree
PHASE_TARGETS = [
    ("producer.nochange", "try_fast_sync", "nochange.try_fast_sync (producer/nochange.py): fast path, declined"),
    ("producer.sync_run", "prepare", "sync_run.prepare (producer/sync_run.py)"),
    ("producer.sync_run", "scan", "  scanner.scan (producer/scanner.py)"),
    ("producer.sync_run", "build_tree", "  tree.build_tree (shared/core/tree.py)"),
    ("producer.sync_run", "tree_gallery_key", "  planner.tree_gallery_key (producer/planner.py)"),
    ("shared.adapters.redis.store:Store", "lookup", "  Store.lookup (shared/adapters/redis/store.py)"),
    ("producer.sync_run", "inspect", "  studio_state.inspect (producer/studio_state.py)"),
    ("producer.sync_run", "make_plan", "  planner.make_plan (producer/planner.py)"),
    ("producer.commands", "_dispatcher", "_dispatcher (producer/commands.py): Celery's app"),
    ("producer.cli.sync", "dispatcher_for", "dispatcher_for (producer/cli/app.py): Celery's app"),
    ("producer.sync_run", "submit", "sync_run.submit (producer/sync_run.py)"),
    ("producer.sync_run", "studio_version", "  studio_state.studio_version (producer/studio_state.py): GET /version"),
    ("producer.sync_run", "launch", "  launch.launch (producer/launch.py)"),
    ("shared.adapters.redis.store:Store", "create_run", "    Store.create_run (shared/adapters/redis/store.py)"),
    ("producer.commands", "_watchdog", "_watchdog (producer/commands.py)"),
    ("producer.cli.sync", "watchdog", "watchdog (producer/cli/app.py)"),
    ("producer.run_wait", "wait", "run_wait.wait (producer/run_wait.py): the run, polled"),
    ("shared.adapters.redis.store:Store", "await_finish", "  Store.await_finish (shared/adapters/redis/store.py)"),
    ("producer.recovery:Watchdog", "__call__", "  recovery.Watchdog.__call__ (producer/recovery.py)"),
    ("producer.report", "run_report", "report.run_report (producer/report.py)"),
    ("producer.sync_run", "remember_if_clean", "sync_run.remember_if_clean (producer/sync_run.py)"),
]

TASK_LINE = re.compile(r"^\[(\S+ \S+): \w+/\w+\] Task (agentq\.\w+)\[[^]]+\] (received|succeeded in ([0-9.e-]+)s)")


def worker_timeline(lines: list[str]) -> dict[str, float]:
    """From the worker's log of one sync: seconds from the first task received to the last task's
    end, and the seconds of each kind of task (summed)."""
    events = []
    for line in lines:
        found = TASK_LINE.match(line)
        if found:
            stamp = datetime.datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append((stamp, found[2], float(found[4]) if found[4] else None))
    if not events:
        return {}
    out = {"first received to last end": max(t for t, _, _ in events) - min(t for t, _, _ in events)}
    for _, task, took in events:
        if took is not None:
            key = task.removeprefix("agentq.")
            out[key] = out.get(key, 0.0) + took
    received = {task: t for t, task, took in events if took is None}
    if "agentq.finalize" in received:
        out["first received to finalize received"] = received["agentq.finalize"] - min(t for t, _, _ in events)
    return out


class LogTail:
    """The lines a log gained since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, path.stat().st_size if path.exists() else 0

    def new(self) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        return data.decode(errors="replace").splitlines()


def profile(
    out: Path,
    tree: Path,
    env: dict[str, str],
    edit: Any,
    pids: dict[str, int],
    worker_log: Path,
    runs: int = 5,
    spied: int = 3,
) -> dict[str, Any]:
    """`runs` edited syncs, each timed step by step (PHASES), with the worker's log; then `spied`
    more sampled by py-spy (250 Hz, per thread, not pausing them): the worker and Studio (busy
    samples only) in all of them, the producer (wall clock, idle included) in the last; one more
    under `-X importtime`."""
    out.mkdir(parents=True, exist_ok=True)
    modules = out / "modules.json"
    penv = {**env, "BENCH_PHASE_TARGETS": json.dumps(PHASE_TARGETS)}
    harness = [sys.executable, "-c", PHASES, str(modules)]
    sync_args = [str(tree), "--json"]
    modules.unlink(missing_ok=True)
    edit("listing the modules")
    _timed([*harness, str(out / "phases-0.json"), *sync_args], env=penv, timeout=600, cwd=ROOT)
    tail = LogTail(worker_log)
    phases, walls, timelines, reports = [], [], [], []

    def one(name: str, before: list[str]) -> tuple[float, dict[str, Any], list[str]]:
        edit(f"profiled edit {name}")
        tail.new()
        phases_path = out / f"phases-{name}.json"
        wall, proc = _timed([*before, *harness, str(phases_path), *sync_args], env=penv, timeout=600, cwd=ROOT)
        assert proc.returncode == 0 and "{" in proc.stdout, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
        report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])  # py-spy says things too
        assert not report["counts"]["failed"], report["counts"]
        time.sleep(0.3)  # the worker's last log line
        lines = tail.new()
        (out / f"worker-{name}.log").write_text("\n".join(lines) + "\n")
        return wall, report, lines

    for i in range(runs):  # timed step by step, nothing else running
        wall, report, lines = one(str(i + 1), [])
        phases.append(json.loads((out / f"phases-{i + 1}.json").read_text()))
        walls.append(wall)
        timelines.append(worker_timeline(lines))
        reports.append(float(report["seconds"]))
    spy = [_py_spy(), "record", "--nonblocking", "--threads", "--rate", "250", "--format", "raw"]
    attached = [
        subprocess.Popen(
            [*spy, "--pid", str(pid), "-o", str(out / f"{name}.raw")],
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    time.sleep(1.0)  # attached
    for i in range(spied):  # sampled: the worker and Studio in every one, the producer in the last
        one(f"spied-{i + 1}", [*spy, "--idle", "-o", str(out / "sync.raw"), "--"] if i == spied - 1 else [])
    for spying in attached:
        spying.send_signal(signal.SIGINT)
        spying.wait(timeout=60)
    edit("import-timed edit")
    _, timed = _timed(
        [sys.executable, "-X", "importtime", "-m", "producer.cli", "sync", *sync_args], env=env, timeout=600, cwd=ROOT
    )
    (out / "importtime.txt").write_text(timed.stderr)
    steps = {
        label: statistics.median(p["seconds"].get(label, 0.0) for p in phases)
        for label in dict.fromkeys(k for p in phases for k in p["seconds"])
    }
    timeline = {
        key: statistics.median(t.get(key, 0.0) for t in timelines)
        for key in dict.fromkeys(k for t in timelines for k in t)
    }
    wall_med = statistics.median(walls)
    inside = statistics.median(p["since_start"] for p in phases)
    result = {
        "dir": str(out),
        "syncs": len(walls),
        "wall": wall_med,
        "run_seconds": statistics.median(reports),
        "interpreter_start_and_exit": wall_med - inside,
        "steps": steps,
        "worker": timeline,
    }
    summary = _phase_text(result) + summarize(out, spied)
    (out / "summary.txt").write_text(summary)
    _log(summary)
    return result


def _py_spy() -> str:
    """py-spy beside this interpreter (a virtual environment not activated), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


def _phase_text(result: dict[str, Any]) -> str:
    lines = [
        f"== edited sync, step by step: medians of {result['syncs']} syncs (wall {result['wall']:.3f} s)",
        f"{result['interpreter_start_and_exit']:8.3f} s  interpreter start and exit (wall minus the script's own clock)",
    ]
    steps = result["steps"]
    order = [k for k in steps if k.startswith("imports")] + [t[2] for t in PHASE_TARGETS if t[2] in steps]
    lines += [f"{steps[label]:8.3f} s  {label}" for label in order]
    main = next((v for k, v in steps.items() if k.startswith("main")), None)
    if main is not None:
        lines.append(f"{main:8.3f} s  producer.cli.main, all of it (imports not included)")
    lines.append(f"{result['run_seconds']:8.3f} s  the run, enqueue to last result (its report's seconds)")
    lines.append("-- worker (its log: median seconds per kind of task)")
    lines += [f"{sec:8.3f} s  {key}" for key, sec in result["worker"].items()]
    return "\n".join(lines) + "\n"


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines() if path.exists() else []:
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _inclusive(stacks: list[tuple[list[str], int]], keep: Any) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for frames, count in stacks:
        for frame in {f for f in frames if keep(f)}:
            seen[frame] = seen.get(frame, 0) + count
    return sorted(seen.items(), key=lambda kv: -kv[1])


def summarize(out: Path, runs: int, top: int = 30, hz: int = 250) -> str:
    """Seconds per function from py-spy's samples: the producer's main thread (wall, the last sync),
    inclusive, for our code and for imports; the worker's and Studio's busy threads, inclusive, per
    sync (all `runs` syncs sampled); the slowest imports."""
    lines = []
    main = [(f[1:], c) for f, c in _stacks(out / "sync.raw") if "MainThread" in f[0] and len(f) > 1]
    lines.append(f"== producer under py-spy, main thread: {sum(c for _, c in main) / hz:.3f} s (wall)")
    imports = sum(c for f, c in main if any("_find_and_load" in x for x in f))
    lines.append(f"{imports / hz:8.3f} s  importing (any frame under importlib's _find_and_load)")
    for frame, count in _inclusive(main, lambda f: f.split("(")[-1].startswith(OURS))[:top]:
        lines.append(f"{count / hz:8.3f} s  {frame}")
    lines.append("-- own time, top")
    own: dict[str, int] = {}
    for frames, count in main:
        own[frames[-1]] = own.get(frames[-1], 0) + count
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"{count / hz:8.3f} s  {frame}")
    for name, keep in (
        ("worker", lambda f: f.split("(")[-1].startswith(OURS)),
        ("studio", lambda f: "autogenstudio/" in f or "sqlmodel" in f or "sqlalchemy/orm/session" in f),
    ):
        stacks = _stacks(out / f"{name}.raw")
        threads: dict[str, int] = {}
        for frames, count in stacks:
            threads[frames[0]] = threads.get(frames[0], 0) + count
        per = hz * runs
        lines.append(f"== {name}: {sum(threads.values()) / per:.3f} s busy per sync (every thread)")
        for thread, count in sorted(threads.items(), key=lambda kv: -kv[1])[:4]:
            lines.append(f"{count / per:8.3f} s  {thread}")
        lines.append("-- inclusive, per sync")
        for frame, count in _inclusive(stacks, keep)[:top]:
            lines.append(f"{count / per:8.3f} s  {frame}")
    path = out / "importtime.txt"
    if path.exists():
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]), parts[2].rstrip()))
        total = sum(c for c, m in rows if not m.startswith("  "))
        lines.append(f"== imports (-X importtime): {total / 1e6:.3f} s in all")
        for cumulative, module in sorted(rows, reverse=True)[:top]:
            lines.append(f"{cumulative / 1e6:8.3f} s  {module}")
    return "\n".join(lines) + "\n"


def print_table(result: dict[str, Any]) -> None:
    med, ratios, tgt = result["medians"], result["ratios"], result["targets"]
    s = result["samples"]
    w = result["writes"]
    print(
        f"{result['params']['files']} files, {result['params']['repeat']} rounds; edited {result['edit']['agent']} "
        f"(teams using it: {', '.join(result['edit']['teams_using_it']) or 'none'}); "
        f"writes: {len(w['team_posts'])} team POST(s) {w['team_posts']} B, gallery GET + PUT {w['gallery_put']} B"
    )
    print(f"{'measure':<44}{'median':>9}{'min':>9}{'max':>9}")
    names = {
        "git_status": "git status --porcelain",
        "interpreter": "python -c pass",
        "no_change": "producer sync, no change",
        "edited": "producer sync, one agent edited",
        "edited_run": "  of which enqueue to last result",
        "replay": "raw replay of the edit's writes (Studio)",
        "floor": "floor = replay + python -c pass",
    }
    for key, name in names.items():
        print(f"{name:<44}{med[key]:>9.3f}{min(s[key]):>9.3f}{max(s[key]):>9.3f}")
    watch = result["watch"]
    if watch:
        print(
            f"{'producer watch, edit to its line':<44}{watch['median']:>9.3f}{min(watch['samples']):>9.3f}"
            f"{watch['max']:>9.3f}   p95 {watch['p95']:.3f} ({watch['edits']} edits, debounce {watch['debounce_ms']} ms)"
        )
        print(
            f"{'  of which the sync (watch line seconds)':<44}{watch['sync_seconds_median']:>9.3f}"
            f"{min(watch['sync_seconds']):>9.3f}{max(watch['sync_seconds']):>9.3f}"
        )
        print(
            f"{'  raw replay in the watch phase':<44}{watch['replay_median']:>9.3f}{min(watch['replay_samples']):>9.3f}"
            f"{max(watch['replay_samples']):>9.3f}"
        )
        print(
            f"{'producer sync beside the watch (handed)':<44}{watch['handed_median']:>9.3f}"
            f"{min(watch['handed_samples']):>9.3f}{max(watch['handed_samples']):>9.3f}"
        )
    tasks = result.get("worker_tasks_median") or {}
    if tasks:
        print(
            "  the edited syncs' runs in the worker's log (medians): "
            + ", ".join(f"{k} {v:.3f} s" for k, v in tasks.items())
        )
    per_round = [e / f for e, f in zip(s["edited"], s["floor"], strict=True)]
    rows = [
        ("no change / git status", "no_change_over_git", ""),
        ("edited / floor", "edited_over_floor", f" (per round {min(per_round):.2f} to {max(per_round):.2f})"),
        ("watch p95 / replay (floor - start)", "watch_p95_over_replay", ""),
        ("sync handed to the watch / floor", "handed_over_floor", ""),
    ]
    for name, key, extra in rows:
        if key in ratios:
            verdict = "met" if ratios[key] <= tgt[key] else "MISSED"
            print(f"{name:<44}{ratios[key]:>8.2f}x  target <= {tgt[key]}x: {verdict}{extra}")
    prof = result.get("profile")
    if prof:
        print(_phase_text(prof), end="")
    if result["check_bodies"]:
        print(f"bodies checked against a recorded sync: {result['check_bodies']}")


if __name__ == "__main__":
    main()
