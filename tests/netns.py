"""Test hosts on this machine: one Linux network namespace per host, a veth pair from each to one
bridge in the root namespace, and a private /24 used only by them.

    with TestNetwork(["svc", "w1", "w2"]) as net:
        net.spawn("svc", ["redis-server", "--bind", net.ip("svc"), ...], log_path=...)
        net.partition("w1")     # its link is cut: packets dropped, connections stay open
        net.heal("w1")
        net.lose_host("w2")     # cut, and every process started on it SIGKILLed: a machine that died

The bridge holds the subnet's .1, so this process (in the root namespace: the producer's machine)
reaches every host; the hosts have no other route, so their traffic stays on the bridge (and their
own loopback). Everything is removed by `close()` (and at exit, and by a context manager's exit):
processes by the PIDs started here (SIGTERM, then SIGKILL), namespaces, veths, the bridge.

How a cut is made (checked by `python -m tests.netns --check-partition`): the veth end on the
bridge (root namespace) is set down. The host keeps its address and routes (its own end only loses
carrier), its packets are dropped on the way to the bridge and the bridge drops what it would send
to it, so a TCP connection across the cut sees silence on both ends, retransmits, and carries its
data once the link is back: a 20 s cut leaves it open. Setting the host's own end down instead is
no partition: that removes the host's route to the subnet, so its sockets get "Network is
unreachable" at once: a new connection fails at once instead of timing out as on a real network.
`tc netem loss 100%` would need a qdisc on both ends (netem acts on egress only) and the sch_netem
module, which this machine's kernel does not have. Measured here, 20 s cut:
    bridge-side: new connection "timed out after 3.0 s"; open one carried its data after the heal
    host-side:   new connection "[Errno 101] Network is unreachable after 0.0 s"

Then there is the service layer the integration tests and benchmarks/trials_hosts.py share: a
`Cluster` (Redis with appendonly and the stand-in model endpoint on a host of their own, Celery
workers on others) and `run_scenario`, one workflow run with one fault injected. A Cluster's broker
is that Redis, or (`broker="rabbitmq"`) a private RabbitMQ node on the same host (tests/rabbitmq.py,
started inside its namespace: AMQP on the host's address, its epmd and Erlang distribution on the
namespace's own loopback), every process given BROKER_URL=amqp://guest:guest@<svc>:5672//.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.embedded import setpriv_with_pdeathsig

ROOT = Path(__file__).resolve().parent.parent
NAME_PREFIX = "aq"  # every namespace, veth and bridge made here: aq<pid>x<n>... (15 characters at most)
OURS = re.compile(rf"^{NAME_PREFIX}(\d+)x[0-9a-z]+(?:br|v\d+|p\d+|-\w+)$")
LOCK_PATH = Path("/tmp/agentq-netns.lock")  # held while a subnet is picked and claimed
SUBNET_BASE = "10.231"

_counter = itertools.count()
_subnets = itertools.count()
_open: dict[int, TestNetwork] = {}  # networks not yet closed, closed at exit
_open_lock = threading.Lock()


class NetworkError(RuntimeError):
    pass


def _run(args: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *(["-n", ns] if ns else []), *args], check=check)


@functools.cache
def available() -> tuple[bool, str]:
    """(True, "") when this process can make test hosts; else (False, why), for pytest.skip."""
    if sys.platform != "linux":
        return False, "network namespaces need Linux"
    if shutil.which("ip") is None:
        return False, "no `ip` (iproute2) on PATH"
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"{NAME_PREFIX}{os.getpid()}xprobe"
    try:
        _ip("netns", "add", probe)
        try:
            _ip("link", "add", probe[:13] + "br", "type", "bridge")
            _ip("link", "del", probe[:13] + "br")
            _run(["ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up"])
        finally:
            _ip("netns", "del", probe, check=False)
    except (NetworkError, OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot create a network namespace here: {exc}"
    return True, ""


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network with an address or a (non-default) route in the root namespace."""
    found: list[ipaddress.IPv4Network] = []
    text = _ip("-4", "-o", "addr", "show").stdout + "\n" + _ip("-4", "route", "show", "table", "all").stdout
    for word in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\b", text):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_network(word, strict=False))  # type: ignore[arg-type]
    return [n for n in found if isinstance(n, ipaddress.IPv4Network) and n.prefixlen > 0]


def _free_subnet() -> ipaddress.IPv4Network:
    used = _networks_in_use()
    # a new subnet for each network of this process: a client of the last one's Redis that is
    # still around (a pooled connection) gets no answer from an address that is now someone else
    start = os.getpid() + 7 * next(_subnets)
    for step in range(254):
        n = 20 + (start + step) % 234  # 10.231.20.0/24 ... 10.231.253.0/24
        candidate = ipaddress.IPv4Network(f"{SUBNET_BASE}.{n}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NetworkError(f"no free /24 in {SUBNET_BASE}.0.0/16 for test hosts")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass
class Host:
    name: str
    ns: str  # the network namespace
    veth: str  # its link's end on the bridge, in the root namespace
    ip: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lost: bool = False
    cut: bool = False


class TestNetwork:
    """Hosts on one bridge; see the module's docstring."""

    __test__ = False  # not a pytest class

    def __init__(self, hosts: Iterable[str], stop_grace: float = 10.0) -> None:
        self.prefix = f"{NAME_PREFIX}{os.getpid()}x{_base36(next(_counter))}"
        self.bridge = f"{self.prefix}br"
        self.stop_grace = stop_grace
        self.hosts: dict[str, Host] = {}
        self._closed = False
        self._made_bridge = False
        self._made: list[Host] = []  # hosts whose namespace exists
        with _open_lock:
            _open[id(self)] = self
        try:
            sweep_stale()
            self._create(list(hosts))
        except BaseException:
            self.close()
            raise

    # ---- making and removing ---------------------------------------------------------------------
    def _create(self, names: list[str]) -> None:
        if len(f"{self.prefix}v{len(names)}") > 15:
            raise NetworkError(f"interface name {self.bridge!r} is too long")
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run picking a subnet at the same moment
            self.subnet = _free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0")
            self._made_bridge = True
            self.gateway = str(self.subnet.network_address + 1)
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=1):
            self.add_host(name, index=i)

    def add_host(self, name: str, index: int | None = None) -> Host:
        index = index or len(self.hosts) + 1
        if name in self.hosts or not 1 <= index <= 99:
            raise NetworkError(f"host {name!r} (#{index}) exists or is out of range")
        host = Host(
            name=name,
            ns=f"{self.prefix}-{name}",
            veth=f"{self.prefix}v{index}",
            ip=str(self.subnet.network_address + 10 + index),
        )
        peer = f"{self.prefix}p{index}"
        _ip("netns", "add", host.ns)
        self.hosts[name] = host
        self._made.append(host)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.ns)
        _ip("link", "set", peer, "name", "eth0", ns=host.ns)
        _ip("addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", "eth0", ns=host.ns)
        _ip("link", "set", "lo", "up", ns=host.ns)
        _ip("link", "set", "eth0", "up", ns=host.ns)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        self._wait_forwarding(host)
        return host

    def close(self) -> None:
        """Every process started here (SIGTERM, then SIGKILL after `stop_grace`), every namespace,
        veth and the bridge. Safe to call twice, and on a half-made network."""
        if self._closed:
            return
        self._closed = True
        try:
            procs = [p for h in self.hosts.values() for p in h.procs]
            for p in procs:
                _signal(p, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace
            for p in procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(p, signal.SIGKILL)
                    p.wait()
            for host in self._made:
                for pid in self.pids(host.name):  # children of ours that outlived them (a daemon's fork)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            for host in self._made:
                _ip("link", "del", host.veth, check=False)
                _ip("netns", "del", host.ns, check=False)
            if self._made_bridge:
                _ip("link", "del", self.bridge, check=False)
            with _open_lock:
                _open.pop(id(self), None)

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- processes ---------------------------------------------------------------------------------
    def ip(self, host: str) -> str:
        return self.hosts[host].ip

    def spawn(
        self,
        host: str,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        """`args` run inside `host`'s namespace (`ip netns exec`, which execs: the PID is the
        command's), in a session of its own, output appended to `log_path`; remembered for
        `lose_host` and `close`. It gets SIGTERM should this process die (setpriv --pdeathsig)."""
        h = self.hosts[host]
        if h.lost or self._closed:
            raise NetworkError(f"host {host} is gone")
        cmd = ["ip", "netns", "exec", h.ns, *args]
        setpriv = setpriv_with_pdeathsig()
        if setpriv and threading.current_thread() is threading.main_thread():
            cmd = [setpriv, "--pdeathsig", "TERM", *cmd]
        out: Any = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, "ab")  # noqa: SIM115  (the child keeps its own copy)
        try:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log_path is not None:
                out.close()
        h.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
        """One process started here: SIGTERM, SIGKILL after `timeout`; its exit code."""
        _signal(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            return proc.wait()

    def pids(self, host: str) -> list[int]:
        """Every process in `host`'s namespace (all of them descend from ones started here)."""
        out = _ip("netns", "pids", self.hosts[host].ns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    # ---- faults -------------------------------------------------------------------------------------
    def _link(self, host: str, up: bool) -> None:
        h = self.hosts[host]
        _ip("link", "set", h.veth, "up" if up else "down")
        h.cut = not up
        if up:
            self._wait_forwarding(h)

    def _wait_forwarding(self, h: Host, timeout: float = 10.0) -> None:
        """The bridge forwards on the port again (no STP: at once, but ask rather than assume)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "forwarding" in _run(["bridge", "link", "show", "dev", h.veth], check=False).stdout:
                return
            time.sleep(0.02)
        raise NetworkError(f"bridge port {h.veth} of {h.name} does not forward")

    def partition(self, host: str) -> None:
        """Cut `host` off the network: its processes keep running, its packets are dropped both
        ways, open connections stay open on both ends (see the module's docstring)."""
        self._link(host, up=False)

    def heal(self, host: str) -> None:
        self._link(host, up=True)

    def lose_host(self, host: str) -> None:
        """The machine dies: its link is cut first (nothing it says on the way down gets out: no
        FIN, no RST), then every process started on it is SIGKILLed (its process group, and
        anything else left in its namespace)."""
        h = self.hosts[host]
        self._link(host, up=False)
        for p in h.procs:
            _signal(p, signal.SIGKILL)
        for pid in self.pids(host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in h.procs:
            p.wait(30)
        h.lost = True


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    """`sig` to the process group of a process started here (its own session), while it is ours:
    a process already reaped is skipped, its PID may belong to someone else by now."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        proc.send_signal(sig)


@atexit.register
def close_all() -> None:
    """Whatever a crashed test or a Ctrl-C left open."""
    with _open_lock:
        networks = list(_open.values())
    for net in networks:
        with contextlib.suppress(Exception):
            net.close()


def _names() -> tuple[list[str], list[str]]:
    netns = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
    links = re.findall(r"^\d+: ([^:@\s]+)", _ip("-o", "link", "show", check=False).stdout, flags=re.M)
    return [n for n in netns if OURS.match(n)], [link for link in links if OURS.match(link)]


def leftovers() -> tuple[list[str], list[str]]:
    """Namespaces and links made by this process that still exist (for a check after the tests)."""
    netns, links = _names()
    mine = str(os.getpid())

    def ours(name: str) -> bool:
        match = OURS.match(name)
        return bool(match and match.group(1) == mine)

    return [n for n in netns if ours(n)], [link for link in links if ours(link)]


def sweep_stale() -> None:
    """Namespaces and links this harness made in a process that no longer exists (it was killed
    outright: no atexit ran), and in which no process is left."""
    netns, links = _names()
    for name in [*netns, *links]:
        match = OURS.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        if name in netns:
            if _ip("netns", "pids", name, check=False).stdout.strip():
                continue
            _ip("netns", "del", name, check=False)
        else:
            _ip("link", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- services on the hosts: Redis and the stand-in on one, Celery workers on the others -------------------
REDIS_PORT = 6379
STANDIN_PORT = 11435
AMQP_PORT = 5672  # the svc host's own namespace: nothing else listens there
BROKERS = ("redis", "rabbitmq")
SCENARIOS = ("none", "lost-idle", "lost-busy-30", "lost-busy-70", "partition-20", "redis-restart")
GATE_SECONDS = 2.0  # the first task's model latency: every worker but its own idles meanwhile (BRPOP, basic.consume)
LOSS_BEFORE_RELEASE = 0.2  # lost-idle: the host dies this long before the gate's answer releases the rest


def _popen(args: Sequence[str], env: dict[str, str], stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """A process in the root namespace (the producer's machine), in a session of its own, that gets
    SIGTERM should this process die."""
    setpriv = setpriv_with_pdeathsig()
    main = threading.current_thread() is threading.main_thread()
    cmd = [setpriv, "--pdeathsig", "TERM", *args] if setpriv and main else list(args)
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True)


class Cluster:
    """A TestNetwork with host "svc" (redis-server with appendonly, the stand-in model endpoint;
    with `broker="rabbitmq"` a RabbitMQ node too, which then carries Celery's messages) and worker
    hosts "w1" ... (one `celery -A workers worker` each). Close it (or use `with`)."""

    def __init__(self, workdir: Path, workers: int = 3, concurrency: int = 4, broker: str = "redis") -> None:
        if broker not in BROKERS:
            raise ValueError(f"unknown broker {broker!r}; one of {', '.join(BROKERS)}")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.worker_hosts = [f"w{i}" for i in range(1, workers + 1)]
        self.concurrency = concurrency
        self.broker = broker
        self.net = TestNetwork(["svc", *self.worker_hosts])
        try:
            svc = self.net.ip("svc")
            self.redis_url = f"redis://{svc}:{REDIS_PORT}/0"
            self.broker_url = self.redis_url
            self.standin_base = f"http://{svc}:{STANDIN_PORT}"
            self.standin_url = f"{self.standin_base}/v1"
            self.redis_proc: subprocess.Popen[bytes] | None = None
            self.nodenames: dict[str, str] = {}  # worker host -> its Celery node name (before the @)
            # RabbitMQ boots (seconds) while Redis, the stand-in and the workers start; the workers
            # connect to it once it listens (Celery retries on startup)
            booting = self.launch_rabbitmq() if broker == "rabbitmq" else None
            self.start_redis()
            self.start_standin()
            self.start_workers(before_ping=booting)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.net.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=3, socket_connect_timeout=3)

    # ---- Redis ------------------------------------------------------------------------------------------------
    def start_redis(self) -> None:
        from producer.embedded import redis_server_binary

        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        args = [redis_server_binary(), "--port", str(REDIS_PORT), "--bind", self.net.ip("svc")]
        args += ["--protected-mode", "no", "--dir", str(data), "--appendonly", "yes", "--save", ""]
        proc = self.redis_proc = self.net.spawn("svc", args, log_path=self.workdir / "redis.log")
        client = self.redis()

        def pong() -> bool:
            if proc.poll() is not None:
                raise NetworkError(f"redis-server exited with {proc.returncode}; see {self.workdir / 'redis.log'}")
            try:
                return bool(client.ping())
            except Exception:  # not listening yet, or still loading its appendonly file
                return False

        _poll(pong, 30, "redis-server on the svc host")

    def stop_redis(self) -> int:
        """SIGTERM (Redis writes its appendonly file out and exits), waited for."""
        assert self.redis_proc is not None
        return self.net.stop(self.redis_proc, timeout=30)

    def restart_redis(self) -> None:
        self.stop_redis()
        self.start_redis()

    # ---- RabbitMQ ---------------------------------------------------------------------------------------------
    def launch_rabbitmq(self) -> Callable[[], None]:
        """tests/rabbitmq.py's private node, started inside the svc host's namespace with AMQP on
        its address (stopped with the host's other processes, `close`); returns the wait for it."""
        from tests.rabbitmq import launch_rabbitmq, wait_rabbitmq

        def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
            return self.net.spawn("svc", args, env=env, log_path=log, cwd=log.parent)

        node = launch_rabbitmq(self.workdir / "rabbitmq", bind=self.net.ip("svc"), spawn=spawn, port=AMQP_PORT)
        self.broker_url = node.url
        return lambda: wait_rabbitmq(node)

    # ---- the stand-in and the workers -------------------------------------------------------------------------
    def start_standin(self) -> None:
        svc = self.net.ip("svc")
        args = [sys.executable, "-m", "producer.standin_llm", "--host", svc, "--port", str(STANDIN_PORT)]
        proc = self.net.spawn("svc", args, log_path=self.workdir / "standin.log")

        def listening() -> bool:
            if proc.poll() is not None:
                raise NetworkError(f"the stand-in exited with {proc.returncode}; see {self.workdir / 'standin.log'}")
            try:
                with socket.create_connection((svc, STANDIN_PORT), timeout=0.5):
                    return True
            except OSError:
                return False

        _poll(listening, 30, "the stand-in endpoint on the svc host")

    def standin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        resp = httpx.request(method, f"{self.standin_base}{path}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def worker_env(self) -> dict[str, str]:
        from tests.conftest import WORKER_ENV

        return {
            **os.environ,
            **WORKER_ENV,
            "RESOURCE_INTERVAL_SECONDS": "1",  # the heartbeat: the producer calls a worker dead after WORKER_DEAD_SECONDS
            "REDIS_URL": self.redis_url,
            "BROKER_URL": "" if self.broker == "redis" else self.broker_url,  # empty: REDIS_URL's Redis
            "AGENTQ_PARENT_PID": str(os.getpid()),  # workers/lifeline.py: gone with us
        }

    def start_workers(self, timeout: float = 90, before_ping: Callable[[], None] | None = None) -> None:
        """A worker on each worker host, as producer.embedded.start_worker starts one; returns
        once every one of them answers a ping (`before_ping`: what to wait for first, the broker)."""
        from celery import Celery

        env = self.worker_env()
        for host in self.worker_hosts:
            name = f"{self.net.prefix}-{host}"
            args = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=INFO"]
            args += [
                f"--hostname={name}@%h",
                "--without-mingle",
                "--without-gossip",
                f"--concurrency={self.concurrency}",
            ]
            self.net.spawn(host, args, env=env, log_path=self.workdir / f"worker-{host}.log")
            self.nodenames[host] = name
        if before_ping is not None:
            before_ping()
        probe = Celery(broker=self.broker_url, backend=self.redis_url)
        probe.conf.update(accept_content=["json"], task_serializer="json", result_serializer="json")
        try:

            def all_answer() -> bool:
                for host in self.worker_hosts:
                    if any(p.poll() is not None for p in self.net.hosts[host].procs):
                        raise NetworkError(f"the worker on {host} exited; see {self.workdir / f'worker-{host}.log'}")
                try:
                    replies = probe.control.ping(timeout=0.5) or []
                except Exception:  # redis-py's or kombu's: not listening yet
                    return False
                names = {n.split("@")[0] for reply in replies for n in reply}
                return set(self.nodenames.values()) <= names

            _poll(all_answer, timeout, "every worker to answer a ping", interval=0.2)
        finally:
            probe.close()

    def producer_env(self) -> dict[str, str]:
        """The producer's environment (in the root namespace): Redis (and the broker) on the svc
        host, no Studio."""
        from tests.conftest import TEST_SECRET

        return {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "BROKER_URL": "" if self.broker == "redis" else self.broker_url,
            "STUDIO_URL": "http://127.0.0.1:9",
            "STUDIO_USER_ID": "hosts",
            "AGENTQ_CACHE_DIR": str(self.workdir / "cache"),
            "AGENTQ_TEST_SECRET": TEST_SECRET,
            "WORKER_DEAD_SECONDS": "5",
        }

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`python -m producer.cli ARGS` from the root namespace, as a user on the producer's machine."""
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args],
            env=self.producer_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def host_of(self, nodename: str) -> str | None:
        short = nodename.split("@")[0]
        return next((h for h, n in self.nodenames.items() if n == short), None)

    def in_flight(self) -> dict[str, list[float]]:
        """Worker host -> since when it runs each Celery message it says it is running (workers/tasks.py)."""
        r = self.redis()
        out: dict[str, list[float]] = {h: [] for h in self.worker_hosts}
        for key in r.scan_iter("agentq:inflight:*"):
            host = self.host_of(key.removeprefix("agentq:inflight:"))
            if host:
                out[host] = [float(v) for v in r.hvals(key)]
        return out


# ---- one workflow run with one fault ------------------------------------------------------------------------------
def task_ids(tasks: int) -> list[str]:
    """The workflow's task ids: a gate, then three dependency groups."""
    n = max(1, (tasks - 1) // 3)
    sizes = [tasks - 1 - 2 * n, n, n]
    return ["gate"] + [f"s{g}.{i}" for g, size in enumerate(sizes, start=1) for i in range(size)]


def write_run(root: Path, standin_url: str, tasks: int, latency: float, max_concurrency: int = 16) -> Path:
    """The tree (tests/test_workflow_run.py's) and a workflow of `tasks` tasks in four dependency
    groups: one gate task (GATE_SECONDS), then three groups; each task of group 1 waits for the gate,
    each task of groups 2 and 3 for two of the group before. `latency`: each model answer's seconds."""
    from tests.test_workflow_run import write_tree, write_workflow

    write_tree(root, standin_url, max_concurrency=max_concurrency)
    ids = task_ids(tasks)
    groups: dict[int, list[str]] = {}
    for tid in ids[1:]:
        groups.setdefault(int(tid[1 : tid.index(".")]), []).append(tid)
    specs: list[dict[str, Any]] = [{"id": "gate", "description": f"gate of the run [delay:{GATE_SECONDS}]"}]
    for g, members in sorted(groups.items()):
        before = groups.get(g - 1)
        for i, tid in enumerate(members):
            deps = ["gate"] if before is None else sorted({before[i % len(before)], before[(i + 1) % len(before)]})
            specs.append({"id": tid, "description": f"step {tid} [delay:{latency}]", "dependencies": deps})
    return write_workflow(root, specs, name="hosts")


@dataclass
class Outcome:
    scenario: str
    tasks: int
    returncode: int | None  # None: the run did not end within its timeout (it was stopped)
    seconds: float  # from the producer's start to its exit
    fault_at: float | None  # seconds into the run
    victim: str | None
    victim_in_flight: int | None  # messages the victim's worker said it ran when the fault came
    missing: list[str]  # tasks not in the report with status done
    reported_twice: list[str]  # task ids that occur more than once in the report
    ended: int  # members of the run's ended set
    ended_unknown: list[str]  # members of the ended set that are no task of the run
    executions: dict[str, int]  # task id -> model requests the stand-in saw for it, where more than one
    redeliveries: float | None  # agentq_workflow_task_redeliveries_total, when the workers count it
    stderr: str
    run_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.returncode == 0 and not self.missing and not self.reported_twice

    def after_fault(self) -> float | None:
        return None if self.fault_at is None else self.seconds - self.fault_at


def _quiet(call: Callable[[], Any], default: Any = None) -> Any:
    """`call()`, or `default` when Redis or the stand-in cannot answer just now (a partition, a restart)."""
    try:
        return call()
    except Exception:
        return default


def _run_ids(cluster: Cluster) -> set[str]:
    return {key.split(":")[2] for key in cluster.redis().scan_iter("agentq:run:*:meta")}


def _run_id(cluster: Cluster, before: set[str]) -> str | None:
    """The run started since `before` (the runs the cluster had already run)."""
    return next(iter(_run_ids(cluster) - before), None)


def _done(cluster: Cluster, run_id: str) -> int:
    counts = cluster.redis().hgetall(f"agentq:run:{run_id}:counts")
    return sum(int(counts.get(s, 0)) for s in ("done", "cached", "failed", "skipped"))


def _running(cluster: Cluster, run_id: str, task: str) -> dict[str, Any] | None:
    """The task's node state once a worker has it running."""
    raw = cluster.redis().hget(f"agentq:run:{run_id}:nodes", task)
    state = json.loads(raw) if raw else {}
    return state if state.get("status") == "running" and state.get("worker") else None


def _inject(cluster: Cluster, scenario: str, run_id: str, tasks: int) -> tuple[str | None, int | None]:
    """Waits for the scenario's moment and injects its fault; (the host it hit, its in-flight count)."""
    if scenario == "lost-idle":
        gate = _poll(lambda: _quiet(lambda: _running(cluster, run_id, "gate")), 120, "the gate task to start")
        # the gate's model request reaches the stand-in (it counts requests in flight at their start)
        _poll(
            lambda: _quiet(lambda: cluster.standin("GET", "/_stats")["max_in_flight"] >= 1),
            60,
            "the gate's model request",
            interval=0.01,
        )
        asked = time.monotonic()
        idle = [h for h in cluster.worker_hosts if h != cluster.host_of(gate["worker"])]
        # a deliberate moment, not a synchronisation: just before the gate's answer (GATE_SECONDS
        # after its request) releases the first group, while the other workers wait in BRPOP
        # (kombu's BRPOP times out after 1 s and is sent again at once): a BRPOP of the lost host
        # may then still be waiting in Redis, which hands it a message nobody will receive. On
        # RabbitMQ the idle worker's consumer stays registered on the broker, which sends it up to
        # its prefetch of the released messages until heartbeats close its connection
        time.sleep(max(0.0, asked + GATE_SECONDS - LOSS_BEFORE_RELEASE - time.monotonic()))
        victim = idle[-1]
        before = _quiet(cluster.in_flight, {}) or {}
        cluster.net.lose_host(victim)
        return victim, len(before.get(victim, []))
    share = {"lost-busy-30": 0.3, "lost-busy-70": 0.7}.get(scenario, 0.3)
    _poll(lambda: _quiet(lambda: _done(cluster, run_id) >= share * tasks), 300, f"{share:.0%} of the tasks to end")
    if scenario == "redis-restart":
        cluster.restart_redis()
        return "svc", None
    flights = _quiet(cluster.in_flight, {}) or {}
    victim = max(cluster.worker_hosts, key=lambda h: len(flights.get(h, [])))
    if scenario.startswith("lost-busy"):
        cluster.net.lose_host(victim)
    else:
        cluster.net.partition(victim)
    return victim, len(flights.get(victim, []))


def _report(stdout: str, ids: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The report and the task ids that occur more than once in its tasks object."""
    key_lists: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        key_lists.append([k for k, _ in pairs])
        return dict(pairs)

    report = json.loads(stdout, object_pairs_hook=hook)
    wanted = set(ids)
    keys = max(key_lists, key=lambda ks: len(wanted.intersection(ks)), default=[])
    return report, sorted(tid for tid, n in Counter(keys).items() if n > 1 and tid in wanted)


def _executions(cluster: Cluster) -> dict[str, int]:
    seen: Counter[str] = Counter()
    for req in _quiet(lambda: cluster.standin("GET", "/_requests"), []) or []:
        user = next((str(m.get("content")) for m in req.get("messages", []) if m.get("role") == "user"), "")
        line = next((ln for ln in user.splitlines() if ln.startswith("Task: ")), "")
        match = re.search(r"(gate) of the run|step (s\d+\.\d+) ", line)
        if match:
            seen[match.group(1) or match.group(2)] += 1
    return {tid: n for tid, n in sorted(seen.items()) if n > 1}


def _redeliveries(cluster: Cluster) -> float | None:
    counters = _quiet(lambda: cluster.redis().hgetall("agentq:metrics:counters"), {}) or {}
    values = [float(v) for k, v in counters.items() if "agentq_workflow_task_redeliveries_total" in k]
    return sum(values) if values else None


def run_scenario(
    cluster: Cluster,
    scenario: str,
    tasks: int = 300,
    latency: float = 0.1,
    partition_seconds: float = 20.0,
    timeout: float = 300.0,
    producer_env: dict[str, str] | None = None,
) -> Outcome:
    """`producer run` of a fresh workflow on `cluster` from this (the root) namespace, with the
    fault `scenario` names injected (see SCENARIOS); what a user would check afterwards."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    root = cluster.workdir / f"run-{scenario}-{time.monotonic_ns()}"
    wf = write_run(root, cluster.standin_url, tasks, latency)
    ids = task_ids(tasks)
    env = {**cluster.producer_env(), **(producer_env or {})}
    # the cluster may have run before (a baseline): this run's id, requests and peak are its own
    before = _run_ids(cluster)
    cluster.standin("POST", "/_reset")
    out, err = root / "producer.out", root / "producer.err"
    started = time.monotonic()
    producer = _popen([sys.executable, "-m", "producer.cli", "run", str(wf), "--json"], env, out, err)
    fault_at: float | None = None
    fault_wall = 0.0
    victim: str | None = None
    in_flight: int | None = None
    healed = True
    notes: list[str] = []
    try:
        run_id = _poll(
            lambda: producer.poll() is not None or _quiet(lambda: _run_id(cluster, before)), 120, "the run to start"
        )
        if scenario != "none" and isinstance(run_id, str):
            victim, in_flight = _inject(cluster, scenario, run_id, tasks)
            fault_at, fault_wall = time.monotonic() - started, time.time()
            healed = scenario != "partition-20"
        deadline = started + timeout
        while producer.poll() is None and time.monotonic() < deadline:
            if not healed and fault_at is not None and time.monotonic() - started >= fault_at + partition_seconds:
                assert victim is not None
                cluster.net.heal(victim)
                healed = True
            time.sleep(0.05)
        seconds = time.monotonic() - started
        if producer.poll() is None:
            notes.append(f"the run had not ended after {timeout:g} s: stopped")
            cluster.net.stop(producer)
            returncode = None
        else:
            returncode = producer.returncode
    finally:
        if producer.poll() is None:
            _signal(producer, signal.SIGKILL)
            producer.wait()
    if not healed and fault_at is not None and victim is not None:
        # the run ended while the host was still cut off: the cut lasts its full time all the same,
        # then the host's worker comes back with what it held, which must change nothing
        time.sleep(max(0.0, started + fault_at + partition_seconds - time.monotonic()))
        cluster.net.heal(victim)
        cut_host = victim
        settled = _quiet(
            lambda: _poll(lambda: not cluster.in_flight().get(cut_host), 60, "the healed worker to settle"), False
        )
        if not settled:
            notes.append("the healed worker still held messages 60 s after the heal")
    stdout, stderr = out.read_text(), err.read_text()
    run_id = _quiet(lambda: _run_id(cluster, before))
    if scenario == "lost-idle" and fault_at is not None:
        raw = _quiet(lambda: cluster.redis().hget(f"agentq:run:{run_id}:nodes", "gate"))
        if raw and json.loads(raw).get("finished"):
            notes.append(f"the gate ended {json.loads(raw)['finished'] - fault_wall:.2f} s after the host was lost")
    try:
        report, twice = _report(stdout, ids)
    except ValueError:
        report, twice = {}, []
        notes.append(f"no JSON report on stdout: {stdout[-500:]!r}")
    got = report.get("tasks") or {}
    missing = [tid for tid in ids if (got.get(tid) or {}).get("status") != "done"]
    ended = _quiet(lambda: cluster.redis().smembers(f"agentq:run:{run_id}:ended"), set()) or set()
    return Outcome(
        scenario=scenario,
        tasks=tasks,
        returncode=returncode,
        seconds=seconds,
        fault_at=fault_at,
        victim=victim,
        victim_in_flight=in_flight,
        missing=missing,
        reported_twice=twice,
        ended=len(ended),
        ended_unknown=sorted(set(ended) - set(ids)),
        executions=_executions(cluster),
        redeliveries=_redeliveries(cluster),
        stderr=stderr,
        run_id=run_id,
        notes=notes,
    )


def summary(outcomes: list[Outcome], baseline: float | None) -> dict[str, Any]:
    """Per scenario: finished of N, exit codes, tasks missing and reported twice, re-executions,
    seconds after the fault and extra seconds over a run without one (median, max)."""
    after = [a for o in outcomes if (a := o.after_fault()) is not None]
    extra = [o.seconds - baseline for o in outcomes if baseline is not None and o.returncode is not None]

    def med_max(values: list[float]) -> dict[str, float | None]:
        return {
            "median": round(statistics.median(values), 2) if values else None,
            "max": round(max(values), 2) if values else None,
        }

    return {
        "trials": len(outcomes),
        "finished": sum(o.finished for o in outcomes),
        "exit_codes": dict(Counter(str(o.returncode) for o in outcomes)),
        "tasks_missing": sum(len(o.missing) for o in outcomes),
        "tasks_reported_twice": sum(len(o.reported_twice) for o in outcomes),
        "ended_set_short": sum(max(0, o.tasks - o.ended) for o in outcomes),
        "re_executions": sum(n - 1 for o in outcomes for n in o.executions.values()),
        "redeliveries_metric": (
            sum(o.redeliveries or 0 for o in outcomes) if any(o.redeliveries is not None for o in outcomes) else None
        ),
        "seconds_after_fault": med_max(after),
        "extra_seconds": med_max(extra),
    }


# ---- the check behind the choice of partition (python -m tests.netns --check-partition) ---------------
_SERVER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(8)
conn, _ = srv.accept()
while True:
    data = conn.recv(4096)
    if not data:
        print("server: peer closed", flush=True); break
    conn.sendall(data)
"""
_CLIENT = """
import json, os, socket, sys, time
host, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=5); s.sendall(b"hello"); s.recv(100)
print("connected", flush=True)
while not os.path.exists(flag):
    time.sleep(0.01)
out = {}
t = time.monotonic()
try:
    socket.create_connection((host, port), timeout=3).close(); out["new_connection"] = "connected"
except OSError as exc:
    out["new_connection"] = f"{type(exc).__name__}: {exc} after {time.monotonic() - t:.1f} s"
t = time.monotonic()
try:
    s.settimeout(90); s.sendall(b"during the cut"); data = s.recv(100)
    out["old_connection"] = f"echo {data!r} {time.monotonic() - t:.1f} s after sending"
except OSError as exc:
    out["old_connection"] = f"{type(exc).__name__}: {exc} after {time.monotonic() - t:.1f} s"
print(json.dumps(out), flush=True)
"""


def check_partition(how: str, seconds: float, workdir: Path) -> dict[str, Any]:
    """A TCP connection between two hosts, cut for `seconds` the way `how` says, then healed:
    does it carry data afterwards, and what does a new connection see during the cut?"""
    workdir.mkdir(parents=True, exist_ok=True)
    flag = workdir / f"cut-{how}"
    flag.unlink(missing_ok=True)
    with TestNetwork(["a", "b"]) as net:
        port = 7777
        net.spawn("a", [sys.executable, "-c", _SERVER, net.ip("a"), str(port)], log_path=workdir / f"server-{how}.log")
        log = workdir / f"client-{how}.log"
        log.unlink(missing_ok=True)
        client_args = [sys.executable, "-c", _CLIENT, net.ip("a"), str(port), str(flag)]
        client = None
        for _ in range(50):  # the server may not listen yet
            client = net.spawn("b", client_args, log_path=log)
            if _quiet(lambda: _poll(lambda: log.exists() and "connected" in log.read_text(), 2, "connect"), False):
                break
            net.stop(client)
        assert client is not None
        b = net.hosts["b"]
        cut: Callable[[bool], None]
        if how == "bridge-side":

            def cut(down: bool) -> None:
                net._link("b", up=not down)

        elif how == "host-side":

            def cut(down: bool) -> None:
                _ip("link", "set", "eth0", "down" if down else "up", ns=b.ns)

        elif how == "netem":

            def cut(down: bool) -> None:
                for dev, ns in ((b.veth, None), ("eth0", b.ns)):
                    tc = ["tc", *(["-n", ns] if ns else []), "qdisc"]
                    _run(
                        [*tc, "add", "dev", dev, "root", "netem", "loss", "100%"]
                        if down
                        else [*tc, "del", "dev", dev, "root"]
                    )

        else:
            raise ValueError(how)
        try:
            cut(True)
        except NetworkError as exc:
            return {"error": str(exc)}
        flag.touch()
        time.sleep(seconds)  # the cut's deliberate duration
        cut(False)
        client.wait(120)
        lines = log.read_text().splitlines()
        return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"client": lines}


def _poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls `condition` until it returns something truthy, and returns that (tests.conftest.wait_for's twin)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="checks of the test-host harness")
    parser.add_argument("--check-partition", action="store_true", help="compare the ways to cut a host's link")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--how", default="bridge-side,host-side,netem")
    a = parser.parse_args()
    ok, why = available()
    if not ok:
        sys.exit(f"not available: {why}")
    if a.check_partition:
        with tempfile.TemporaryDirectory() as tmp:
            for how in a.how.split(","):
                print(how, json.dumps(check_partition(how, a.seconds, Path(tmp))), flush=True)
    print("left behind:", leftovers())
