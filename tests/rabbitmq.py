"""A private RabbitMQ node for the tests: Debian's rabbitmq-server on free loopback ports, with its
own data, logs, config, Erlang cookie and epmd, so it never meets the machine's own RabbitMQ
(5672) or its epmd (4369). Stopped by PID; the epmd it started too.

`rabbitmq_url` is a session fixture: `pytest_plugins = ["tests.rabbitmq"]` in a test module.

`start_rabbitmq(base, bind=..., spawn=...)` also starts one elsewhere: tests/netns.py runs it on a
test host (a network namespace), listening on that host's address, its epmd and Erlang distribution
on the namespace's own loopback; the namespace's processes are then stopped with the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from producer import embedded

# The script Debian's /usr/sbin/rabbitmq-server runs: that one is a wrapper which, for root,
# switches to the rabbitmq user (and its HOME, so the system node's cookie)
DEBIAN_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def server_binary() -> str | None:
    return DEBIAN_SCRIPT if os.access(DEBIAN_SCRIPT, os.X_OK) else shutil.which("rabbitmq-server")


@dataclass
class RabbitNode:
    url: str
    proc: subprocess.Popen[bytes]
    epmd_port: int
    log: Path


def _answers(url: str) -> bool:
    from kombu import Connection

    conn = Connection(url, connect_timeout=1)
    try:
        conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # refused, or the node is up but still booting: not yet
        return False
    finally:
        conn.release()


# (the command, its environment, its log) -> the process, started in a session of its own
Spawn = Callable[[list[str], dict[str, str], Path], subprocess.Popen[bytes]]


def _spawn_here(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # its own session: the script runs the Erlang VM as a child, which a last-resort SIGKILL must reach
    return embedded.spawn(args, log, env=env, cwd=log.parent, start_new_session=True)


def start_rabbitmq(
    base: Path, bind: str = "127.0.0.1", spawn: Spawn | None = None, port: int | None = None
) -> RabbitNode:
    """A node named agentq-<port>@localhost on a free port, its state under `base`, listening on
    `bind` (AMQP only; epmd and the Erlang distribution stay on 127.0.0.1), started by `spawn`
    (default: here, in a session of its own). Off loopback, `guest` may log in from elsewhere.
    Returns once it takes AMQP connections."""
    node = launch_rabbitmq(base, bind, spawn, port)
    wait_rabbitmq(node)
    return node


def launch_rabbitmq(
    base: Path, bind: str = "127.0.0.1", spawn: Spawn | None = None, port: int | None = None
) -> RabbitNode:
    """`start_rabbitmq` without the wait: the node boots (seconds) while the caller does something
    else; `wait_rabbitmq` then."""
    binary = server_binary()
    if binary is None:
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server; scripts/install.sh does)")
    port = port or embedded.free_port()
    dist_port, epmd_port = embedded.free_port(), embedded.free_port()
    for name in ("home", "mnesia", "log"):
        (base / name).mkdir(parents=True, exist_ok=True)
    config = base / "rabbitmq.conf"
    # a nearly full disk in CI must not block publishers (the default limit is 50 MB too, said plainly)
    lines = [f"listeners.tcp.default = {bind}:{port}", "disk_free_limit.absolute = 50MB"]
    if bind != "127.0.0.1":
        lines.append("loopback_users = none")  # guest from the test hosts and the root namespace
    config.write_text("\n".join(lines) + "\n")
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's, which names the system node
    env = {
        **os.environ,
        "HOME": str(base / "home"),  # the Erlang cookie
        "RABBITMQ_NODENAME": f"agentq-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": bind,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    log = base / "rabbitmq.log"
    proc = (spawn or _spawn_here)([binary], env, log)
    return RabbitNode(f"amqp://guest:guest@{bind}:{port}//", proc, epmd_port, log)


def wait_rabbitmq(node: RabbitNode, timeout: float = 120.0) -> None:
    """Until the node takes AMQP connections; one that exits or does not come up is stopped."""
    address = node.url.rsplit("@", 1)[1].rstrip("/")
    try:
        embedded.wait_ready(node.proc, lambda: _answers(node.url), f"rabbitmq-server on {address}", timeout, node.log)
    except BaseException:
        stop_rabbitmq(node)
        raise


def _epmd_on(port: int) -> psutil.Process | None:
    """The epmd listening on `port` (the node started it; it outlives the node)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(conn.pid)
                if proc.name() == "epmd":
                    return proc
    return None


def stop_rabbitmq(node: RabbitNode, timeout: float = 30.0) -> None:
    """SIGTERM to the script (it stops the VM and waits for it), SIGKILL to its session when it
    does not end in time; then the epmd it started, found by its port."""
    epmd = _epmd_on(node.epmd_port)
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)  # its own session: the script and the VM
            node.proc.wait()
    epmd = epmd or _epmd_on(node.epmd_port)
    if epmd is not None:
        with contextlib.suppress(psutil.Error):
            epmd.terminate()
            try:
                epmd.wait(5)
            except psutil.TimeoutExpired:
                epmd.kill()


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """amqp://guest:guest@127.0.0.1:<port>// of a private node, for the whole session."""
    node = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    yield node.url
    stop_rabbitmq(node)
