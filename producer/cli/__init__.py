"""The `producer` entry point. A no-change `producer sync DIR` is answered here, from the last
sync's record and one Redis round trip (producer/nochange.py), and one beside a `producer watch`
of the tree is handed to it (producer/handoff.py); everything else goes to the typer commands in
this package (producer/cli/app.py and a module per command), imported only then."""

from __future__ import annotations

import atexit
import gc
import io
import os
import signal
import sys

# A command builds tens of thousands of objects (a 10,000-file tree, its plan, its report) and
# keeps most of them to the end: with the default threshold (700) the collector rescans them
# again and again, about a fifth of a big sync's CPU. Its data has no reference cycles to speak
# of, so a collection per 50,000 new objects is plenty.
GC_THRESHOLD = 50_000


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM or SIGHUP (`kill`, `timeout`, a closed terminal) ends the command as Ctrl-C does:
    the Redis, worker and Studio it started are stopped on the way out, not left running.

    The exit is raised wherever the main thread is. Should that be a callback whose exceptions
    Python prints and ignores (a weakref's, a __del__), the command would go on: an alarm half a
    second later raises it again, unless the command is on its way out by then."""
    code = 128 + signum
    signal.signal(signal.SIGALRM, lambda *_: _exit_unless_exiting(code))
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    # Once exit handlers run, the exit can no longer be swallowed, and the interpreter's
    # shutdown puts SIGALRM's default action back: an alarm then would kill the process
    # (status -14) instead of letting it exit with its code.
    atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)
    raise SystemExit(code)


def _exit_unless_exiting(code: int) -> None:
    if not isinstance(sys.exc_info()[1], SystemExit):  # in flight: its cleanup is running
        raise SystemExit(code)


def _unraisable(report: sys.UnraisableHookArgs) -> None:
    """The exit a callback swallowed is no error to print (the alarm raises it again)."""
    if not isinstance(report.exc_value, SystemExit):
        sys.__unraisablehook__(report)


def main() -> None:
    # Output is UTF-8 whatever the locale says (JSON is UTF-8 by definition), and a file name that
    # is not UTF-8 is printed as the bytes it is, as ls and find print it, not raised as an error
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # a signal the command was started to ignore (`nohup` ignores SIGHUP) stays ignored
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _terminated)
    sys.unraisablehook = _unraisable
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    # At exit the interpreter collects once more over every object still alive, to no purpose
    # here: 0.11 s of the 0.13 s a 10,000-file sync's process takes to end. Registered first,
    # so it runs after every other exit handler.
    atexit.register(gc.freeze)
    from producer.cli.top_help import answer

    if answer(sys.argv[1:]):
        return
    walks = None
    if sys.argv[1:2] == ["sync"]:
        from producer.handoff import try_handoff
        from producer.nochange import try_fast_sync
        from producer.walk import Walks
        from shared.core.exceptions import AgentqError

        walks = Walks()  # the tree walked once: for both, and for the sync should neither answer
        try:
            code = try_fast_sync(sys.argv[1:], dict(os.environ), walks)
            if code is None:
                code = try_handoff(sys.argv[1:], dict(os.environ), walks)
        except AgentqError:  # a .producerignore that does not parse, say: the full path says so, as it says all
            code = None
        if code is not None:
            raise SystemExit(code)
    from producer.cli.app import main as commands

    commands(walks)


if __name__ == "__main__":
    main()
