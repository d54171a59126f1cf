"""What a worker process sets up around its tasks: the modules a first task would wait for,
quiet loggers, the garbage collector tuned for a long-lived process, and which worker holds which
message (for the producer's requeue)."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
import warnings

from celery.signals import task_postrun, task_prerun, worker_init

from workers.agent_runtime import contain_tool_exits
from workers.lifeline import watch_parent
from workers.task_base import WorkerTask

# What loading a workflow task's agent imports on first use: imported before the worker takes
# work, so the first tasks do not pay for it while others wait (about 1 s of CPU on a slow core).
WARM_MODULES = (
    "autogen_agentchat.agents",
    "autogen_agentchat.teams",
    "autogen_agentchat.conditions",
    "autogen_ext.models.openai",
    "openai._base_client",
    "aiohttp",
)


# Loggers that write a line per model request or message at INFO, the worker's level: AutoGen's
# hold every prompt and answer in full (resolved system messages included, so possibly a secret;
# `autogen_core` itself logs each message a team's runtime sends) and httpx (httpx2 under
# openai 3) names every request. The metrics and the stored transcript say the same without the cost.
PER_REQUEST_LOGGERS = ("autogen_core", "autogen_agentchat", "httpx", "httpx2")


class WithoutTraceback(logging.Filter):
    """AutoGen logs a failing team participant's traceback at ERROR, and its message may carry what
    a model server said back (some echo the key they were sent). The task's error, with secrets
    masked, says the same; the log keeps the line and the exception's type."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__}; the task's error says why)"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


@worker_init.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _warm(**_: object) -> None:
    watch_parent()
    # code that asks for input() (a UserProxyAgent the workflow's checks did not see) meets the end
    # of input at once, as a worker started by the producer does, not the terminal a worker runs in
    sys.stdin = open(os.devnull)  # noqa: SIM115  (the process's stdin for as long as it runs)
    for name in PER_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # a level the user set (logging config) stays
            logger.setLevel(logging.WARNING)
    logging.getLogger("autogen_core").addFilter(WithoutTraceback())
    # AutoGen warns, naming the configured model, when a server answers under another model name:
    # that name may be a ${VAR}'s value, and the warning says nothing the metrics do not
    warnings.filterwarnings("ignore", message="Resolved model mismatch")
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):  # an optional provider: its tasks say what to install
            importlib.import_module(name)
    contain_tool_exits()
    # what is loaded now lives as long as the process: out of the collector's sight, so that a full
    # collection under load scans only what tasks create (15% less worker CPU per workflow task)
    gc.freeze()
    # and collected less often: at Python's 700 the young generations are scanned hundreds of times a
    # second under load (measured with gc.callbacks on bench_workflow: 13% of a worker's CPU, 5% at 20,000)
    gc.set_threshold(20_000, *gc.get_threshold()[1:])


@task_prerun.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _in_flight(task_id: str, task: object, **_: object) -> None:
    """Which worker holds which message, so the producer can requeue the messages of a worker
    that died (producer/recovery.py); cleared when the task returns."""
    if isinstance(task, WorkerTask) and task.request.hostname:
        task.store.message_started(task.request.hostname, task_id)


@task_postrun.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _landed(task_id: str, task: object, **_: object) -> None:
    if isinstance(task, WorkerTask) and task.request.hostname:
        task.store.messages_ended(task.request.hostname, task_id)
