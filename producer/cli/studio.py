"""`producer studio up|down|status`: a local AutoGen Studio kept running in the background, on
LOCAL_STUDIO_PORT with its database in the cache dir (`~/.cache/agentq/studio/ags.db`), the same
one `--local-studio` uses: what a sync wrote into it can be looked at in a browser."""

from __future__ import annotations

import json

import typer

from producer import embedded
from producer.cli.app import AsJson, app, console, escape

studio_app = typer.Typer(help="A local AutoGen Studio kept running: up, down, status.", no_args_is_help=True)
app.add_typer(studio_app, name="studio")


def _say(data: dict[str, object], as_json: bool, line: str) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        console().print(escape(line), soft_wrap=True)


@studio_app.command("up")
def up(as_json: AsJson = False) -> None:
    """Start the local Studio in the background (or find it running) and print its URL."""
    from shared.settings import load_settings

    settings = load_settings()
    app_dir = settings.cache_dir / "studio"
    found = embedded.running_studio(app_dir)
    if found is None:
        url, pid = embedded.start_studio_detached(app_dir, settings.local_studio_port, settings.autogenstudio_bin)
        started = True
    else:
        (url, pid), started = found, False
    verb = "started" if started else "already running"
    _say(
        {"url": url, "pid": pid, "started": started, "database": str(app_dir / "ags.db")},
        as_json,
        f"AutoGen Studio {verb} at {url} (database {app_dir / 'ags.db'}); `producer studio down` stops it.",
    )


@studio_app.command("down")
def down(as_json: AsJson = False) -> None:
    """Stop the local Studio that `producer studio up` started."""
    from shared.settings import load_settings

    pid = embedded.stop_studio(load_settings().cache_dir / "studio")
    line = "No local AutoGen Studio was running." if pid is None else f"Stopped the local AutoGen Studio (PID {pid})."
    _say({"stopped": pid is not None, "pid": pid}, as_json, line)


@studio_app.command("status")
def status(as_json: AsJson = False) -> None:
    """Say whether the local Studio runs, and where (exit code 3 when it does not)."""
    from shared.settings import load_settings

    app_dir = load_settings().cache_dir / "studio"
    found = embedded.running_studio(app_dir)
    if found is None:
        _say({"running": False}, as_json, "No local AutoGen Studio is running (`producer studio up` starts one).")
        raise typer.Exit(3)
    url, pid = found
    _say({"running": True, "url": url, "pid": pid}, as_json, f"AutoGen Studio runs at {url} (PID {pid}).")
