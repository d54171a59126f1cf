"""The producer's Redis commands are packed by hiredis in one call: the bytes on the wire are the
ones redis-py's own packer writes, and what it refuses is still refused (no server needed)."""

from __future__ import annotations

import pytest
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from shared.adapters.redis.packing import HiredisPacker


def _redis_py(*args: object) -> bytes:
    """What redis-py's pure-Python packer writes, with the clients' encoding (surrogateescape)."""
    return b"".join(PythonRespSerializer(6000, Encoder("utf-8", "surrogateescape", False).encode).pack(*args))


def _ours(*args: object) -> bytes:
    return b"".join(HiredisPacker("utf-8", "surrogateescape").pack(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("MGET", *[f"agentq:ns:node:{i:064x}" for i in range(10_000)]),
        ("SET", "k", "naïve ✓ 名前", "EX", 86400),
        ("HINCRBYFLOAT", "m", "agentq_sync_seconds", 0.1, "x", 1e-7, "y", 10**20, "z", -3),
        ("SET", b"raw \xff bytes", b"\x00\r\n"),
        ("SET", "big", "x" * 100_000),
        ("SET", "agents/caf\udce9.json", "a file name that is not UTF-8"),  # surrogateescape: redis-py's path
        ("CLIENT SETNAME", "agentq"),  # a command name with a space: redis-py splits it
        ("SET", "view", memoryview(b"abc")),
    ],
    ids=["10k keys", "unicode", "numbers", "bytes", "big value", "surrogates", "two-word name", "memoryview"],
)
def test_commands_go_on_the_wire_as_redis_py_writes_them(args: tuple[object, ...]) -> None:
    assert _ours(*args) == _redis_py(*args)


def test_a_value_redis_py_refuses_is_still_refused() -> None:
    with pytest.raises(DataError, match="bool"):
        _ours("SET", "k", True)
    with pytest.raises(DataError):
        _ours("SET", "k", None)
