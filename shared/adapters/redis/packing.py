"""Commands packed by hiredis in one C call. redis-py's own hiredis packer first encodes each
argument in Python (a generator over every key): for a command of 10,000 keys (a sync's MGET of
its cache entries, its run's states) that was a tenth of a second of a watched edit's sync.

hiredis packs str (as UTF-8), bytes, int and float (as repr) itself, as redis-py would encode
them. Anything else goes to redis-py's own packer, which encodes or refuses it as it always did:
a command name with a space in it (`CLIENT SETNAME`), a bool, a memoryview, and text that is not
UTF-8 (a path's lone surrogates, which the clients encode with surrogateescape).
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer

BUFFER_CUTOFF = 6000  # redis-py's own, for the packer it falls back to


class HiredisPacker:
    """A redis-py `command_packer` (Connection(command_packer=...)): stateless, shared by a pool's
    connections."""

    def __init__(self, encoding: str, encoding_errors: str) -> None:
        encoder = Encoder(encoding, encoding_errors, False)  # type: ignore[no-untyped-call]  # redis-py is untyped here
        self._fallback = PythonRespSerializer(BUFFER_CUTOFF, encoder.encode)

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " not in name:
            try:
                return [hiredis.pack_command(args)]
            except (TypeError, UnicodeEncodeError):
                pass
        return self._fallback.pack(*args)  # type: ignore[no-any-return,no-untyped-call]  # redis-py is untyped here
