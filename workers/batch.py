"""The skeleton every batch follows, a sync's components and a workflow's tasks alike: take the
nodes that have not ended, mark them running, and end each on its own. A node whose dependency
did not succeed is skipped; a failure (secrets scrubbed) ends that node only; every end is stamped
with its time. What a node does, and how its end is stored, is the caller's."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.redis.conn import is_outage
from shared.core.exceptions import AgentqError, RunCancelled
from shared.core.refs import MissingVariable, redact
from shared.core.run_model import SUCCEEDED, TERMINAL, UNSUCCESSFUL, NodeState, Status
from shared.ports import StudioError
from shared.retry import classify

NEVER_WRITTEN = NodeState(status=Status.PENDING)  # a node of a message whose run state has none


@dataclass
class Claimed:
    todo: list[str]  # the nodes of the batch that have not ended
    running: dict[str, NodeState]  # their state now
    previous: dict[str, Status]  # their status before: RUNNING means a worker died holding them


def claim(labels: Iterable[str], states: Mapping[str, NodeState], hostname: str, task_id: str | None) -> Claimed:
    """The running states to write for the nodes of `labels` that have not ended (a redelivered
    message carries nodes that did)."""
    todo = [lbl for lbl in labels if status_of(states, lbl) not in TERMINAL]
    now = time.time()
    taken = {"status": Status.RUNNING, "started": now, "worker": hostname, "pid": os.getpid(), "task_id": task_id}
    running = {lbl: states.get(lbl, NEVER_WRITTEN).model_copy(update=taken) for lbl in todo}
    return Claimed(todo, running, {lbl: status_of(states, lbl) for lbl in todo})


def status_of(states: Mapping[str, NodeState], label: str) -> Status:
    """A node's status; pending when it has no state."""
    return states.get(label, NEVER_WRITTEN).status


def dependency_problem(deps: Iterable[str], states: Mapping[str, NodeState]) -> str | None:
    for dep in deps:
        status = states[dep].status if dep in states else None
        if status in UNSUCCESSFUL:
            return f"depends on {dep!r} which {'failed' if status == Status.FAILED else 'was skipped'}"
        if status not in SUCCEEDED:
            return f"depends on {dep!r} which did not finish (status {status})"
    return None


@dataclass(frozen=True)
class Ender:
    """What ends every node of a batch alike: the states its dependencies are judged by, the
    worker's name (errors say it), and the gate entered before a node's clock starts (None: none)."""

    states: Mapping[str, NodeState]
    hostname: str
    gate: contextlib.AbstractAsyncContextManager[object] | None = None

    async def end(
        self, work: Callable[[], Awaitable[NodeState]], deps: Iterable[str], secrets: Callable[[], list[str]]
    ) -> NodeState:
        """Run one node's `work` unless a dependency did not succeed; its end state, timed.
        `secrets()` lists the values no error may show."""
        problem = dependency_problem(deps, self.states)
        if problem:
            return NodeState(status=Status.SKIPPED, reason=problem, seconds=0.0, finished=time.time())
        async with self.gate or contextlib.nullcontext():
            t0 = time.monotonic()
            result = await self._outcome(work, secrets)
            return result.model_copy(update={"seconds": round(time.monotonic() - t0, 4), "finished": time.time()})

    async def _outcome(self, work: Callable[[], Awaitable[NodeState]], secrets: Callable[[], list[str]]) -> NodeState:
        """What `work` ended with: its state, or the failure or cancellation it raised."""
        try:
            return await work()
        except RunCancelled:
            return NodeState(status=Status.SKIPPED, reason="the run was cancelled")
        except Exception as exc:
            if is_outage(exc):
                # Redis out of reach past REDIS_OUTAGE_SECONDS is no outcome of this node: its message
                # is not acknowledged, and the node runs again once Redis is back
                raise
            return _failed(exc, self.hostname, secrets)


def _raised_at(exc: BaseException) -> str:
    """Where an error that says nothing was raised (AutoGen's bare asserts: a Swarm's handoff to an
    agent that is not in it), as its line of code: what a reader has to go on."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "(no message)"
    last = frames[-1]
    return f"raised at {Path(last.filename).name}:{last.lineno}: {last.line or '(no source)'}"


def _failed(exc: Exception, hostname: str, secrets: Callable[[], list[str]]) -> NodeState:
    """The state of a node whose work raised `exc`: the error named, secrets scrubbed, and whether
    the same work may pass when tried again later (`retryable`, what `producer watch` retries on):
    as Studio's client judged it (StudioError.retryable), or as the retry policy reads the error
    or what caused it (a timeout, a lost connection, a 429 or 5xx: shared/retry.py), never by its text."""
    if isinstance(exc, MissingVariable):
        error = f"environment variable {exc.name} is not set on worker {hostname} (field {exc.field})"
    elif isinstance(exc, AgentqError):  # a failure we can name: Studio's, the model's, AutoGen's
        error = redact(str(exc), secrets())
    else:  # a tool's or a bug's: it must not lose the batch's other results
        error = redact(f"{type(exc).__name__}: {str(exc) or _raised_at(exc)}", secrets())
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:  # a validation that timed out too often: its TimeoutError
        chain.append(cause)
        cause = cause.__cause__
    if any((isinstance(e, StudioError) and e.retryable) or classify(e) is not None for e in chain):
        return NodeState(status=Status.FAILED, error=error, retryable=True)  # only then written: reports as before
    return NodeState(status=Status.FAILED, error=error)
