"""Re-sync of a 10,000-file tree against `git status` on the same tree (issue "3 of 6").

    python benchmarks/bench_resync.py [--files 10000] [--repeat 7]

A real first sync (real redis-server, a celery worker, a real AutoGen Studio) fills the cache.
The tree is committed to a throwaway git repository. Then, alternating so that both see the same
machine load, each measured as a whole command (process start included):
- `git status --porcelain` (the baseline);
- `producer sync DIR --json` with nothing changed (target: at most 8x git status);
- the same after one agent file changed (a handful of teams use it), Studio writes included
  (target: at most 15x git status).
Ratios are of medians over the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers  # noqa: E402
from benchmarks.gen_tree import mixed_tree  # noqa: E402
from producer import embedded  # noqa: E402


def _timed(cmd: list[str], **kwargs: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=1, concurrency=8) as (url, _):
        tree = Path(tmp) / "tree"
        mixed_tree(tree, args.files)
        git = ["git", "-C", str(tree)]
        subprocess.run(git + ["init", "-q"], check=True)
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(
            git + ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "tree"], check=True
        )
        studio_url, studio = embedded.start_studio(Path(tmp) / "studio", binary=os.environ.get("AUTOGENSTUDIO_BIN"))
        try:
            env = {
                **os.environ,
                "REDIS_URL": url,
                "STUDIO_URL": studio_url,
                "STUDIO_USER_ID": "bench",
                "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache"),
            }
            sync = [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json"]
            wall, first = _timed(sync, env=env, timeout=7200)
            print(f"first sync of {args.files} files: {wall:.1f} s, counts {json.loads(first.stdout)['counts']}")
            _timed(sync, env=env, timeout=600)  # the first re-sync writes the no-change record
            agent = tree / "agents" / "a3.json"
            users = sum('"agent-3"' in p.read_text() for p in (tree / "teams").glob("*.json"))
            git_s, same_s, changed_s = [], [], []
            for i in range(args.repeat):
                wall, _ = _timed(["git", "-C", str(tree), "status", "--porcelain"])
                git_s.append(wall)
                wall, proc = _timed(sync, env=env, timeout=600)
                report = json.loads(proc.stdout)
                assert report["counts"]["unchanged"] == args.files and not report["studio_requests"], report["counts"]
                same_s.append(wall)
                spec = json.loads(agent.read_text())
                spec["config"]["description"] = f"edit {i}"
                agent.write_text(json.dumps(spec))
                wall, proc = _timed(sync, env=env, timeout=600)
                report = json.loads(proc.stdout)
                assert report["counts"]["updated"] == 1 + users and not report["counts"]["failed"], report["counts"]
                changed_s.append(wall)
                if i == 0:
                    print(
                        f"  changed-agent run: {report['seconds']} s from enqueue to the last result; "
                        f"Studio requests {report['studio_requests']}"
                    )
                _timed(sync, env=env, timeout=600)  # back to a recorded no-change state
            base = statistics.median(git_s)
            for name, walls, target in (
                ("no-change re-sync", same_s, 8),
                (f"one agent changed ({users} team(s) use it)", changed_s, 15),
            ):
                med = statistics.median(walls)
                print(
                    f"{name}: median {med:.3f} s (min {min(walls):.3f}, max {max(walls):.3f}); "
                    f"git status median {base:.3f} s; ratio {med / base:.1f}x (target at most {target}x)"
                )
        finally:
            embedded.stop(studio)


if __name__ == "__main__":
    main()
