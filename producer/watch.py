"""`producer watch`: sync a tree again each time its files settle after an edit.

The files are watched by `watchfiles` (inotify, through its Rust core); each batch of changes
goes through the same prepare/submit/wait path as `producer sync` (producer/sync_run.py), so the
result cache decides what is written. A sync that could not reach Redis or Studio is tried again
on a timer, with a growing delay, until it gets through."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.walk import IGNORE_FILE, is_config_name
from shared.core.exceptions import AgentqError, InvalidInput, ServiceUnavailable
from shared.core.run_model import UNSUCCESSFUL, Status

if TYPE_CHECKING:
    from producer.handoff_server import HandoffServer, Request
    from producer.pipeline import Services, SyncOutcome

RETRY_FIRST, RETRY_MAX = 1.0, 30.0
TICK_MS = 50  # how often the watcher wakes with no change: a failed sync's retry, a command's hand-off


@dataclass
class SyncLine:
    """What one sync under the watch did: one printed line, plus the problems under it."""

    started: float
    seconds: float
    changed: int
    counts: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    error: str | None = None  # the sync could not run or finish (Redis, Studio, a worker)
    problems: list[str] = field(default_factory=list)  # "file: label: error" per failed (or invalid) node
    may_pass: bool = False  # a node failed as may pass later: a service away or overloaded (its `retryable`)
    retry: bool = False  # tried again on a timer: what failed may work later

    def text(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.started))
        if self.error:
            again = "; retrying" if self.retry else ""
            return f"{clock} sync failed after {self.seconds:.2f} s: {self.error}{again}"
        files = f"{self.changed} file(s) changed; " if self.changed else ""
        again = "; retrying" if self.retry else ""
        return f"{clock} synced: {files}{', '.join(self._counted())} ({self.seconds:.2f} s){again}"

    def _counted(self) -> list[str]:
        """`created N` and the like: the first four always, drifted and skipped when there are any."""
        shown = ("created", "updated", "deleted", "failed", "drifted", "skipped")
        parts = [f"{name} {self.counts.get(name, 0)}" for name in shown[:4]]
        return parts + [f"{name} {self.counts[name]}" for name in shown[4:] if self.counts.get(name)]

    def as_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "changed_files": self.changed,
            "counts": self.counts,
            "run_id": self.run_id,
            "error": self.error,
            "problems": self.problems,
            "retry": self.retry,
        }


def config_filter(root: Path, cache_dir: Path, targets: Collection[str] = ()) -> Callable[[object, str], bool]:
    """The changes that can alter a sync: config files and the ignore file outside hidden folders
    and our own cache; deletions with no suffix too (a folder moved out of the tree); and the real
    files `targets` that the tree reads through symlinks (in a hidden folder, say)."""
    root_s, cache_s = str(root), str(cache_dir.resolve())

    def keep(change: object, path: str) -> bool:
        if path in targets:
            return True
        if path.startswith(cache_s):
            return False
        rel = os.path.relpath(path, root_s)
        parts = rel.split(os.sep)
        name = parts[-1]
        if name == IGNORE_FILE and len(parts) == 1:
            return True
        if any(part.startswith(".") for part in parts):
            return False
        if is_config_name(name):
            return True
        return "." not in name and (getattr(change, "name", "") == "deleted" or os.path.isdir(path))

    return keep


def _problems(report: dict[str, Any]) -> list[str]:
    nodes = report["nodes"].items()
    return [_problem(label, st) for label, st in nodes if st.get("status") in UNSUCCESSFUL or st.get("drifted")]


def _problem(label: str, st: dict[str, Any]) -> str:
    """`file: label: error` for a failed (or drifted) node."""
    text = str(st.get("error") or st.get("reason") or st.get("status"))
    path = str(st.get("path") or "-")
    # an invalid file's node is labelled by its path, and its error begins with it: said once
    if text.startswith(f"{path}:"):
        return text
    if label == path:
        return f"{path}: {text}"
    return f"{path}: {label}: {text}"


def _take_report(line: SyncLine, report: dict[str, Any]) -> None:
    """The counts, the problems and the run's own error, from the run's report."""
    line.counts = dict(report["counts"])
    line.problems = _problems(report)
    line.may_pass = any(st.get("retryable") for st in report["nodes"].values() if st.get("status") == Status.FAILED)
    if report.get("error"):
        line.error = str(report["error"])


def retryable(line: SyncLine) -> bool:
    """A sync worth trying again with no file changed: it could not run or finish, or a node failed
    as may pass later, a service away or overloaded (its state's `retryable`, which the worker set
    from the failure itself, workers/batch.py)."""
    if line.error:
        return True
    return line.counts.get("failed", 0) > 0 and line.may_pass


class Watcher:
    """Runs a sync, then one per settled batch of changes, until `stop` is set."""

    def __init__(
        self, root: Path, services: Services, say: Callable[[SyncLine], None], gallery: str | None, debounce_ms: int
    ) -> None:
        """`say` prints a sync's line; the services' own `say` takes the warnings."""
        self.root, self.services, self.say = root.resolve(), services, say
        self.gallery, self.debounce_ms = gallery, debounce_ms
        self.settings, self.store, self.warn = services.settings, services.store, services.say
        self.syncs = 0
        self.handoff: HandoffServer | None = None  # `producer sync`s of this tree handed to the watch
        self.remember = False  # a plain watch leaves the no-change record a plain sync would
        self.link_targets: set[str] = set()  # the real files the last sync read through symlinks

    def sync_once(self, changed: int = 0, asked: list[Request] | None = None) -> tuple[SyncLine, SyncOutcome | None]:
        """One sync: its line, and its outcome when it is one to remember (`remember`, after the line
        is said: the no-change record is for the next command, not this edit). Each command in
        `asked` (producer/handoff.py), which asked before it started, gets its report; so does each
        that asked while it ran, seeing the tree as it synced it."""
        started, t0 = time.time(), time.perf_counter()
        line, warnings = SyncLine(started, 0.0, changed), list[str]()
        outcome, mended_by_an_edit = None, False
        try:
            outcome = self._sync(warnings)
            self.link_targets.clear()  # the same set, which the watch's filter holds
            self.link_targets.update(outcome.prepared.scan.links.values())
            line.run_id = outcome.run_id
            assert outcome.report is not None
            _take_report(line, outcome.report)
        except self.store.errors as exc:
            line.error = f"Redis unreachable: {exc}"
        except (ServiceUnavailable, TimeoutError) as exc:
            line.error = str(exc)
        except AgentqError as exc:  # bad input that no retry mends: said once, fixed by an edit
            line.error, mended_by_an_edit = str(exc), True
        line.seconds = time.perf_counter() - t0
        self._answer(asked or [], outcome, warnings)
        if mended_by_an_edit:
            return line, None
        line.retry = retryable(line)
        self.syncs += 1
        return line, outcome

    def _sync(self, warnings: list[str]) -> SyncOutcome:
        """The sync, its warnings also kept in `warnings` for the commands that asked for it."""
        from producer import pipeline

        def say(text: str) -> None:
            warnings.append(text)
            self.warn(text)

        return pipeline.sync(self.root, replace(self.services, say=say), gallery=self.gallery)

    def _answer(self, asked: list[Request], outcome: SyncOutcome | None, warnings: list[str]) -> None:
        """The commands' answers; those that asked meanwhile for another state of the tree wait
        for the next sync."""
        if self.handoff is None:
            return
        from producer.handoff_server import answer, synced_tree

        seen = synced_tree(outcome)
        meanwhile = self.handoff.take()
        self.handoff.waiting = [r for r in meanwhile if r.tree != seen]
        for request in [*asked, *(r for r in meanwhile if r.tree == seen)]:
            request.give(answer(outcome, warnings, request.environ))

    def save_scan(self) -> None:
        """The scan's cache files, written once the sync is said (the next command's scan reads
        them; this watch's next scan starts from its memo)."""
        if self.services.memo is not None:
            with contextlib.suppress(OSError):  # a full disk: the next scan reads the files again
                self.services.memo.save()

    def remember_sync(self, outcome: SyncOutcome | None) -> None:
        """A plain watch leaves the no-change record of a clean sync, as a plain sync does."""
        if self.remember and outcome is not None and outcome.report is not None and outcome.run_id is not None:
            from producer.sync_run import remember_if_clean

            with contextlib.suppress(*self.store.errors):
                remember_if_clean(outcome.prepared, self.settings, self.store, outcome.run_id, outcome.report)

    def _batches(self, stop: threading.Event) -> Iterator[set[tuple[Any, str]]]:
        """watchfiles' settled batches of changes. A file name its Rust core cannot decode (one that
        is not UTF-8) ends its watch with an error: said once, the watch starts again, and its first
        batch counts as a change, so that the sync reads the whole tree once the new watch is in
        place (an edit made while no watch was running is not missed) and names that file."""
        import logging

        import watchfiles
        from watchfiles._rust_notify import WatchfilesRustInternalError  # not exported by the package

        # Ctrl-C ends the watch, and `producer watch` says so: not watchfiles' "KeyboardInterrupt caught"
        logging.getLogger("watchfiles.main").setLevel(logging.ERROR)

        said: set[str] = set()
        missed = False
        settle = _Settle(self.debounce_ms / 1000)
        while not stop.is_set():
            watched = _identity(self.root)
            try:
                # watchfiles wakes every tick whatever --debounce is (its step is also how often it
                # looks at `stop`, and a hand-off waits for a wake): the settling is done above it
                batches = watchfiles.watch(
                    self.root,
                    watch_filter=config_filter(self.root, self.settings.cache_dir, self.link_targets),
                    step=min(self.debounce_ms, TICK_MS),
                    rust_timeout=TICK_MS,
                    yield_on_timeout=True,
                    stop_event=stop,
                    raise_interrupt=False,
                )
                with contextlib.closing(batches):
                    for changes in batches:
                        if missed:
                            changes = {*changes, (watchfiles.Change.modified, str(self.root))}
                        missed = False
                        if watched is not None and _identity(self.root) not in (watched, None):
                            # another folder at the tree's path (swapped in, re-created): its
                            # inotify watch would hear the old one; watched anew, synced whole
                            missed = True
                            break
                        yield settle.add(changes, time.monotonic())
                    else:
                        return
            except WatchfilesRustInternalError as exc:
                if str(exc) not in said:
                    said.add(str(exc))
                    self.warn(f"{exc}: its changes are found by syncing the whole tree")
                missed = True
                stop.wait(self.debounce_ms / 1000)  # should the next watch end at once too

    def run(self, stop: threading.Event) -> None:
        """Sync now, then after every settled batch of changes; a failed sync that may work
        later is tried again after 1, 2, 4 ... 30 s, or at once when a file changes."""
        first, delay, retry_at = True, RETRY_FIRST, None
        for changes in self._batches(stop):
            asked = self._asked()
            # moved or deleted: no event need come (a moved root's are under its new name), and a
            # sync now would find an empty tree; looked at on every tick
            if not self.root.is_dir():
                for request in asked:
                    request.give({"ok": False, "why": "the tree's folder is gone"})
                raise InvalidInput(f"{self.root}: the tree's folder is gone (moved or deleted); the watch ends")
            if not (changes or first or asked or _due(retry_at)):
                continue
            first = False
            # config files only: an editor's or `sed -i`'s temporary file is no change of the tree
            line, outcome = self.sync_once(len({path for _, path in changes if is_config_name(path)}), asked)
            self.say(line)
            self.save_scan()
            self.remember_sync(outcome)
            retry_at, delay = _next_try(line.retry, delay)
            if stop.is_set():
                break
        for request in self._asked():
            request.give({"ok": False, "why": "the watch stopped"})

    def _asked(self) -> list[Request]:
        """The commands waiting for a sync (producer/handoff.py)."""
        return self.handoff.take() if self.handoff is not None else []


def _due(retry_at: float | None) -> bool:
    """A failed sync's time to try again has come."""
    return retry_at is not None and time.monotonic() >= retry_at


def _next_try(retry: bool, delay: float) -> tuple[float | None, float]:
    """When to try again (None: no need) and the delay after that: doubled up to RETRY_MAX."""
    if not retry:
        return None, RETRY_FIRST
    return time.monotonic() + delay, min(RETRY_MAX, delay * 2)


class _Settle:
    """Changes held until the files settle: no further change for `quiet` seconds, or, for files
    saved without pause, ten times that (at least 1.6 s) since the first. Fed on every tick; gives
    the settled batch, or nothing yet."""

    def __init__(self, quiet: float) -> None:
        self.quiet, self.longest = quiet, max(1.6, 10 * quiet)
        self.held: set[tuple[Any, str]] = set()
        self.first = self.last = 0.0

    def add(self, changes: set[tuple[Any, str]], now: float) -> set[tuple[Any, str]]:
        if changes:
            if not self.held:
                self.first = now
            self.held |= changes
            self.last = now
        if self.held and (now - self.last >= self.quiet or now - self.first >= self.longest):
            settled, self.held = self.held, set()
            return settled
        return set()


def _identity(path: Path) -> tuple[int, int] | None:
    """The folder at `path` (device, inode), following a link; None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
