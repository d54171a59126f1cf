"""`producer --help` without importing typer (80 ms of a 115 ms start): the
top-level help as typer renders it is kept in top_help.txt, rewritten by
`python -m producer.cli.top_help --write`; tests/test_help.py fails while it is stale. Only the
top level: every command's own help comes from typer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEXT = Path(__file__).with_name("top_help.txt")
PROG = "{prog}"  # click names the program in the usage line as it was started


def program_name() -> str:
    """What click's usage line calls the program: click.utils._detect_program_name's rule, written
    again because importing typer's click is the very cost this module saves."""
    package = getattr(sys.modules.get("__main__"), "__package__", None)
    if not package:
        return os.path.basename(sys.argv[0])
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    module = package if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def answer(args: list[str]) -> bool:
    """Print the top-level help when `args` ask for it alone; False when typer must answer
    (anything else, or the kept text is missing)."""
    if args != ["--help"] or not TEXT.is_file():
        return False
    sys.stdout.write(TEXT.read_text(encoding="utf-8").replace(PROG, program_name()))
    return True


def rendered() -> str:
    """The top-level help as typer renders it now, with the program's name left as {prog}."""
    import typer.main

    from producer.cli.app import app

    command = typer.main.get_command(app)
    with command.make_context(PROG, ["--help"], resilient_parsing=True) as ctx:
        return command.get_help(ctx) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        TEXT.write_text(rendered(), encoding="utf-8")
    else:
        sys.stdout.write(rendered())
