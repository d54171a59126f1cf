"""The `producer` entry point. A no-change `producer sync DIR` is answered here, from the last
sync's record and one Redis round trip (producer/nochange.py); everything else goes to the typer
commands in producer/commands.py, imported only then."""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["sync"]:
        from producer.nochange import try_fast_sync

        code = try_fast_sync(sys.argv[1:], dict(os.environ))
        if code is not None:
            raise SystemExit(code)
    from producer.commands import main as commands

    commands()


if __name__ == "__main__":
    main()
