"""Settings read from the environment: a wrong one is an error naming it, never a traceback, and
a password in a URL is never shown. No servers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.core.exceptions import InvalidInput
from shared.core.secrets import shown_url
from shared.settings import load_settings
from tests.conftest import ROOT


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput) as caught:
        load_settings()
    return str(caught.value)


def test_a_wrong_setting_is_named_with_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _error(monkeypatch, STALL_SECONDS="abc", STUDIO_RETRIES="x")
    assert "STALL_SECONDS" in said and "'abc'" in said and "STUDIO_RETRIES" in said


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STUDIO_TIMEOUT_SECONDS", "-5"),  # a sync with it waited forever
        ("MODEL_TIMEOUT_SECONDS", "0"),
        ("TASK_TIMEOUT_SECONDS", "-1"),
        ("STUDIO_RETRIES", "-1"),
        ("STUDIO_BACKOFF_SECONDS", "-0.5"),
        ("STUDIO_CONCURRENCY", "0"),
        ("LOCAL_STUDIO_PORT", "70000"),
        ("EXPORTER_PORT", "0"),
        ("REDIS_OUTAGE_SECONDS", "inf"),  # Celery's retries were made of it: an OverflowError traceback
        ("STALL_SECONDS", "1e400"),
        ("STUDIO_TIMEOUT_SECONDS", "nan"),
        # Redis refused the expiry after the run was written: a run that never expired, said as
        # "Redis is unreachable"
        ("RUN_TTL_SECONDS", "99999999999999999999"),
        ("CACHE_TTL_SECONDS", "9223372036854775807"),
    ],
)
def test_a_number_out_of_its_range_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    said = _error(monkeypatch, **{name: value})
    assert name in said and f"'{value}'" in said


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "redis://host:port/db"),
        ("http://127.0.0.1:6379/0", "redis://host:port/db"),
        ("redis://127.0.0.1:99999/0", "Port"),
        ("redis://127.0.0.1:6379/abc", "'abc' is not a number"),
        # accepted, then every command ended in a TypeError traceback (keepalive on a socket file)
        ("unix:///var/run/redis.sock", "a Unix socket is not supported"),
    ],
)
def test_a_redis_url_that_is_not_one_is_refused_before_anything_connects(
    monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    assert why in _error(monkeypatch, REDIS_URL=url)


def test_a_password_in_a_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _error(monkeypatch, REDIS_URL="redis://:hunter2@127.0.0.1:6379/abc")
    assert "hunter2" not in said and "redis://:***@127.0.0.1:6379/abc" in said
    assert "hunter2" not in _error(monkeypatch, STUDIO_TOKEN="hunter2", STUDIO_URL="not a url")
    assert shown_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert shown_url("redis://h:1/0") == "redis://h:1/0"


def test_a_token_with_a_line_break_and_a_blank_user_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token read from a file keeps its newline: aiohttp raised a traceback over the header (and
    a header would have been added by it). A blank user got rows nobody sees."""
    said = _error(monkeypatch, STUDIO_TOKEN="hunter2\n")
    assert "STUDIO_TOKEN: contains a line break" in said and "hunter2" not in said
    assert "STUDIO_USER_ID: blank" in _error(monkeypatch, STUDIO_USER_ID="  ")


def test_an_empty_redis_url_is_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    assert load_settings().redis_url is None


@pytest.mark.integration  # runs the program as a process
def test_the_command_says_it_in_one_line_and_exits_2() -> None:
    env = {**os.environ, "STALL_SECONDS": "abc", "REDIS_URL": "redis://:hunter2@127.0.0.1:1/x"}
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "plan", "examples"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert "STALL_SECONDS" in proc.stderr and "REDIS_URL" in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REDIS_URL": "redis://:Sup3rS3cret@127.0.0.1:1/abc"}, "invalid setting: REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "BROKER_URL": "amqp://u:Sup3rS3cret@h:56x72//"}, "BROKER_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_CONFIG_MODULE": "no_such_module"}, "CELERY_CONFIG_MODULE"),
        ({}, "REDIS_URL is not set"),
    ],
)
def test_celery_on_the_workers_app_says_a_bad_setting_in_one_line(env: dict[str, str], says: str) -> None:
    """`celery -A workers ...` printed an 80-line traceback with the password in it twice, and with
    no REDIS_URL went to whatever Redis answers on 127.0.0.1:6379."""
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL", "CELERY_CONFIG_MODULE")}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "status"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and says in out, out
    assert "Traceback" not in out and "Sup3rS3cret" not in out and len(out.strip().splitlines()) <= 2, out


def test_a_cache_dir_that_is_a_file_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Every command writes there: a file in its place (or above it) is one line, exit 2, not a
    traceback from the first write."""
    (tmp_path / "file").write_text("")
    for where, said in (
        (tmp_path / "file", "is not a folder"),
        (tmp_path / "file" / "sub", "above it, is not a folder"),
    ):
        monkeypatch.setenv("AGENTQ_CACHE_DIR", str(where))
        with pytest.raises(InvalidInput) as refused:
            load_settings()
        assert f"AGENTQ_CACHE_DIR: {tmp_path / 'file'}" in str(refused.value) and said in str(refused.value)
    monkeypatch.setenv("AGENTQ_CACHE_DIR", str(tmp_path / "new" / "cache"))  # made when first written
    assert load_settings().cache_dir == tmp_path / "new" / "cache"
