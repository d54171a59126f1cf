"""Every command's help reads as help does: metavars such as DIR, RUN_ID and FILE (not typer's
`{directory}` or `<list[str]>`), and a line of help for every option."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from producer.cli.app import app
from producer.cli.common import AS_CONFIGURED, Target, target_options


def commands() -> Iterator[tuple[str, Any]]:
    """(command path, command) for the app and every command and group under it (typer ships its
    own copy of click: its classes are looked at by what they do)."""
    root = typer.main.get_command(app)
    stack: list[tuple[str, Any]] = [("producer", root)]
    while stack:
        path, cmd = stack.pop()
        yield path, cmd
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd, info_name=path)
            subs = [(name, cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
            stack += [(f"{path} {name}", sub) for name, sub in subs if sub is not None]


ALL = list(commands())


@pytest.mark.parametrize(("path", "cmd"), ALL, ids=[p for p, _ in ALL])
def test_help_shows_metavars_and_says_what_every_option_does(path: str, cmd: Any) -> None:
    with cmd.context_class(cmd, info_name=path) as ctx:
        text = cmd.get_help(ctx)
    assert not re.search(r"\{[a-z_]+\}|<[a-z_\[\], ]+>", text), text
    silent = [p.opts[0] for p in cmd.params if p.param_type_name == "option" and not p.hidden and not p.help]
    assert not silent, f"{path}: options without help: {silent}"


# the options where a command's `target: Target` stands (producer/cli/common.py: target_options)
TARGET = ["--redis-url", "--studio-url", "--studio-user-id", "--gallery"]


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("producer plan", [*TARGET, "--local-studio", "--json"]),
        ("producer pull", ["--team", "--all", "--dry-run", *TARGET[1:], "--local-studio", "--json"]),
        ("producer watch", ["--debounce", "--local-studio", "--flower", *TARGET, "--json"]),
        (
            "producer sync",
            ["--no-wait", "--dry-run", "--force", "--prune", "--local-studio", "--flower", "--timeout", "--verbose"]
            + [*TARGET, "--json"],
        ),
    ],
)
def test_the_target_options_are_listed_where_the_command_puts_its_target(path: str, options: list[str]) -> None:
    cmd = dict(ALL)[path]
    assert [p.opts[0] for p in cmd.params if p.param_type_name == "option"] == options


def test_a_command_gets_its_target_options_in_one_target() -> None:
    seen = []

    @target_options(redis=False)
    def command(directory: str, target: Target = AS_CONFIGURED, as_json: bool = False) -> None:
        seen.append((directory, target, as_json))

    shown = ["directory", "studio_url", "studio_user_id", "gallery", "as_json"]
    assert list(inspect.signature(command).parameters) == shown
    command(directory="d", studio_url="http://studio", studio_user_id=None, gallery="g", as_json=True)
    assert seen == [("d", Target(studio_url="http://studio", gallery="g"), True)]


def test_every_command_is_there() -> None:
    names = {p for p, _ in ALL}
    for command in ("sync", "plan", "watch", "pull", "status", "run", "result", "runs", "cancel", "team", "monitor"):
        assert f"producer {command}" in names


def test_the_kept_top_level_help_is_what_typer_renders_now() -> None:
    """`producer --help` is answered from producer/cli/top_help.txt without importing typer: it must
    say what typer would (`python -m producer.cli.top_help --write` rewrites it)."""
    from producer.cli import top_help

    assert top_help.TEXT.read_text(encoding="utf-8") == top_help.rendered(), (
        "producer/cli/top_help.txt is stale: run `python -m producer.cli.top_help --write`"
    )


@pytest.mark.integration  # runs the program as a process
def test_producer_help_says_what_typer_says_under_either_name() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    fast = subprocess.run([sys.executable, "-m", "producer.cli", "--help"], cwd=ROOT, capture_output=True, text=True)
    slow = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from producer.cli.app import app; sys.argv[0] = 'producer'; app()",
            "--help",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
    assert fast.stdout.startswith("Usage: python -m producer.cli [OPTIONS] COMMAND")
    assert fast.stdout.replace("python -m producer.cli", "producer") == slow.stdout
