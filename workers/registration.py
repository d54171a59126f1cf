"""Register one batch of nodes with AutoGen Studio: validate each, upsert teams in place."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypedDict

from shared.adapters.redis.store import Store
from shared.adapters.studio import StudioClient
from shared.core import reconcile
from shared.core.components import TYPE_MISMATCH, has_rows
from shared.core.drift import KnownRow, WrittenRow, row_label
from shared.core.exceptions import TaskFailed
from shared.core.records import CacheEntry, Component, Row, Spec
from shared.core.refs import MissingVariable, secret_values, substitute_variables
from shared.core.run_model import NodeState, RunMeta, Status
from shared.core.secrets import content_hash
from shared.ports import StudioError
from shared.retry import retrying
from workers import batch
from workers.incarnation import PROCESS_STARTED
from workers.type_check import confirmed
from workers.validation import Undecided, same_autogen
from workers.validation import validate as local_validation

LISTING_WAIT_SECONDS = 60.0


@dataclass
class RunContext:
    store: Store
    run_id: str
    meta: RunMeta
    client: StudioClient
    env: Mapping[str, str]
    hostname: str  # the worker's node name
    task_id: str | None = None  # the Celery message carrying this batch (producer/recovery.py requeues it)
    local_validation: bool = True  # LOCAL_VALIDATION: validate here when the worker can (workers/validation.py)
    # read once per batch rather than once per node: the run's values never change once set, and
    # the namespace's rows are read for the whole batch at its start (creates re-read under their lock)
    version: str | None = None
    listing: dict[str, ListedTeam] | None = None
    rows: dict[str, KnownRow] = field(default_factory=dict)
    dead_after: float | None = None  # WORKER_DEAD_SECONDS: a create lock's holder silent this long has died
    # (namespace, gallery name) -> the config this process last wrote there, kept by the process
    galleries: dict[tuple[str, str], Component] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return self.meta.namespace

    def resolve_env(self, spec: Component) -> Component:
        try:
            resolved: Component = substitute_variables(spec, self.env)  # the same shape as `spec`
            return resolved
        except MissingVariable as exc:
            raise NodeFailed(
                f"environment variable {exc.name} is not set on worker {self.hostname} (field {exc.field})"
            ) from exc


class NodeFailed(TaskFailed):
    pass


class ListedTeam(TypedDict):
    """A team row as the run's listing keeps it (JSON in Redis, shared by the run's workers)."""

    id: int
    hash: str  # its component's content hash, secrets masked
    updated_at: str | None


def _by_label(rows: list[Row], user_id: str) -> dict[str, ListedTeam]:
    """The user's rows by label; rows come newest first: the most recent row for a label is kept."""
    by_label: dict[str, ListedTeam] = {}
    for row in rows:
        label = row_label(row)
        if label and label not in by_label and row.get("user_id") == user_id:
            by_label[label] = ListedTeam(
                id=row["id"], hash=content_hash(row.get("component")), updated_at=row.get("updated_at")
            )
    return by_label


async def ensure_team_listing(ctx: RunContext) -> dict[str, ListedTeam]:
    """Studio's teams for this user by label, listed once per run and shared through Redis.

    Matching by label is how a first sync (or one after the cache was lost) finds existing rows.
    """
    if ctx.listing is not None:
        return ctx.listing
    deadline = time.monotonic() + LISTING_WAIT_SECONDS
    while time.monotonic() < deadline:
        value = ctx.store.team_listing(ctx.run_id)
        if value is not None:
            ctx.listing = json.loads(value)
            return ctx.listing
        if claim := ctx.store.claim(ctx.run_id, reconcile.TEAM_LISTING):
            try:
                ctx.listing = _by_label(await ctx.client.list_teams(), ctx.client.user_id)
            except BaseException:
                ctx.store.release(ctx.run_id, reconcile.TEAM_LISTING, claim)  # let another worker try
                raise
            ctx.store.set_team_listing(ctx.run_id, json.dumps(ctx.listing))
            return ctx.listing
        await asyncio.sleep(0.05)
    raise NodeFailed("timed out waiting for another worker to list Studio's teams") from TimeoutError()


@dataclass
class _Writes:
    """Records each write of one label's team row, for drift and prune. `earlier`: the record of
    the row the sync wrote before, as last read."""

    ctx: RunContext
    label: str
    digest: str  # the content hash of what this sync writes
    path: str
    earlier: WrittenRow | None

    def owned(self, row_id: int) -> bool:
        """A row this tree's sync created stays owned when updated, and only while its id holds; one
        another tree created and this one took over (`--force`) is adopted: its prune leaves it."""
        earlier = self.earlier
        return (
            earlier is not None and earlier.created and earlier.row_id == row_id and earlier.tree == self.ctx.meta.tree
        )

    def record(self, row_id: int, stamp: str | None, created: bool | None = None) -> None:
        owned = self.owned(row_id) if created is None else created
        written = WrittenRow(
            self.label, row_id, self.digest, self.ctx.meta.tree, self.path, owned, stamp, self.ctx.run_id
        )
        self.ctx.store.record_written(self.ctx.ns, written)


async def _row_by_id(ctx: RunContext, label: str) -> tuple[int, Row] | None:
    """The row the namespace's id for `label` names, while it is still `label`'s."""
    team_id = ctx.rows[label].team_id if label in ctx.rows else ctx.store.team_id(ctx.ns, label)
    if team_id is None:
        return None
    row = await ctx.client.get_team(team_id)
    if row is None or row_label(row) != label:
        ctx.store.forget_written(ctx.ns, label)  # deleted or relabelled in Studio: match afresh
        return None
    return team_id, row


async def _find_row(ctx: RunContext, label: str, digest: str) -> tuple[int | None, str | None, bool]:
    """`label`'s team row, by the id the namespace keeps or else in the run's listing: (its id,
    its stamp, whether it holds `digest`); (None, None, False) when it has none."""
    by_id = await _row_by_id(ctx, label)
    if by_id is not None:
        team_id, row = by_id
        return team_id, row.get("updated_at"), content_hash(row.get("component")) == digest
    known = (await ensure_team_listing(ctx)).get(label)
    if known:
        return int(known["id"]), known.get("updated_at"), known.get("hash") == digest
    return None, None, False


async def _create_unless_made(
    ctx: RunContext, writes: _Writes, component: Component, key: str, redelivered: bool
) -> tuple[str | None, int]:
    """Create the row, unless another sync of this tree (another run, same Studio user) created it
    meanwhile: ("created", id); ("unchanged", id) when that one wrote this content; (None, id): update it."""
    label = writes.label
    async with creating(ctx, f"team:{label}"):
        team_id = ctx.store.team_id(ctx.ns, label)
        if team_id is None:
            found = await find_team(ctx, label, key) if redelivered else None
            row = found or await create_team(ctx, label, component, key)
            made = int(row["id"])
            recorded = ctx.store.team_id(ctx.ns, label)
            if found is None and recorded is not None and recorded != made:
                # another worker made the row meanwhile: this one's lock was lost mid-create (a
                # partition or a pause past its expiry, or past WORKER_DEAD_SECONDS): ours is a
                # duplicate, taken back; the recorded row is updated as any other
                await ctx.client.request("DELETE", f"/teams/{made}", params={"user_id": ctx.client.user_id})
                writes.earlier = ctx.store.written_row(ctx.ns, label)
                return None, recorded
            writes.record(made, row.get("updated_at"), created=True)
            return "created", made
        writes.earlier = ctx.store.written_row(ctx.ns, label)
        earlier = writes.earlier
        same = earlier is not None and earlier.row_id == team_id and earlier.hash == writes.digest
        if not same:
            return None, team_id
        return ("created" if redelivered and _made_in(ctx.run_id, earlier, team_id) else "unchanged"), team_id


async def upsert_team(
    ctx: RunContext, label: str, component: Component, key: str, path: str, redelivered: bool = False
) -> tuple[str, int]:
    """Create or update the team row for `label`; returns (outcome, row id). A row whose content
    (secrets masked) is what we would write is left alone. A redelivered node (its worker died
    mid-batch) looks in Studio afresh before it creates: the dead worker's create may have gone
    through after the run's listing was taken. Every write is recorded for drift and prune."""
    earlier = ctx.rows[label].written if label in ctx.rows else ctx.store.written_row(ctx.ns, label)
    writes = _Writes(ctx, label, content_hash(component), path, earlier)
    team_id, stamp, same = await _find_row(ctx, label, writes.digest)
    if team_id is not None and same:
        writes.record(team_id, stamp)
        # a redelivered node: the worker that died may have inserted the row in this run
        return ("created" if redelivered and _made_in(ctx.run_id, earlier, team_id) else "unchanged"), team_id
    if team_id is None:
        outcome, team_id = await _create_unless_made(ctx, writes, component, key, redelivered)
        if outcome is not None:
            return outcome, team_id
    saved = await ctx.client.save_team(component, key, team_id)
    writes.record(team_id, saved.get("updated_at"))
    return "updated", team_id


def _made_in(run_id: str, earlier: WrittenRow | None, team_id: int) -> bool:
    """Whether row `team_id` was inserted by run `run_id`: nothing recorded it before (the worker
    that inserted it died before recording it), or its record says this run inserted it."""
    if earlier is None or earlier.row_id != team_id:
        return True
    return earlier.created and earlier.run_id == run_id


@asynccontextmanager
async def creating(ctx: RunContext, what: str) -> AsyncIterator[None]:
    """Held while deciding to create the Studio row `what` and creating it: two syncs of one tree
    at once (two CI jobs) would otherwise both find no row and both create one."""
    lock = ctx.store.create_lock(ctx.ns, what, holder=ctx.hostname, dead_after=ctx.dead_after, since=PROCESS_STARTED)
    while not lock.acquire():  # tried without blocking: the wait is on this event loop
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        lock.release()  # quiet when it expired while held: another may have taken it since


async def create_team(ctx: RunContext, label: str, component: Component, key: str) -> Row:
    """POST without id inserts a row every time, so after a lost response look before posting again."""

    return await create_once(
        ctx.client, lambda: ctx.client.save_team(component, key), lambda: find_team(ctx, label, key)
    )


async def find_team(ctx: RunContext, label: str, key: str) -> Row | None:
    """The row this sync wrote for `label` with content `key`, if there is one."""
    for row in await ctx.client.list_teams():
        if row_label(row) == label and row.get("version") == key:
            return row
    return None


async def create_once(
    client: StudioClient,
    create: Callable[[], Awaitable[Row]],
    look: Callable[[], Awaitable[Row | None]],
) -> Row:
    """A create that must not run twice: after a failure that may come back (a lost answer, a
    429, a 5xx), wait as the retry policy says, look for what the failed try may have created,
    and only then send it again. A look that fails as it may come back is a try of its own.
    A create that timed out may still be in Studio's queue: it is looked for until twice the
    timeout has passed, not once, before it is sent again (one Studio writes later still is
    more than a client can tell from a row that is not there)."""
    late = False
    async for attempt in retrying(
        client.retries + 1, client.backoff, retry_on=lambda exc: isinstance(exc, StudioError) and exc.retryable
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                found = await (_look_until(look, 2 * client.timeout) if late else look())
                if found is not None:
                    return found
            try:
                return await create()
            except StudioError as exc:
                late = exc.timed_out
                raise
    raise AssertionError("unreachable")


async def _look_until(look: Callable[[], Awaitable[Row | None]], seconds: float) -> Row | None:
    """`look()` a few times over `seconds` (each is a listing: not more often), until it finds."""
    deadline = time.monotonic() + seconds
    while (found := await look()) is None and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, seconds / 4))
    return found


async def sync_node(ctx: RunContext, label: str, record: Spec, redelivered: bool = False) -> NodeState:
    """Validate (and for a team, upsert) one node; returns its new state."""
    component = ctx.resolve_env(record["spec"])
    errors = await validate(ctx, component)
    if errors:
        if record.get("mistyped") and any(TYPE_MISMATCH in e for e in errors):  # AutoGen names no field
            errors += confirmed(component, record["mistyped"])
        raise NodeFailed("Studio validation failed: " + "; ".join(errors))
    if has_rows(record["type"]):  # a team: a row of its own
        outcome, team_id = await upsert_team(ctx, label, component, record["key"], record["path"], redelivered)
        return NodeState(status=Status.DONE, outcome=outcome, team_id=team_id)
    # gallery members get their final outcome when the gallery entry is written
    return NodeState(status=Status.DONE, outcome="validated")


async def validate(ctx: RunContext, component: Component) -> list[str]:
    """Studio's verdict: worked out here when the worker runs Studio's AutoGen (workers/validation.py),
    asked of Studio otherwise."""
    if ctx.local_validation and same_autogen(await studio_version(ctx)):
        try:
            # building a team's agents and clients takes tens of ms of CPU: off the event loop
            return await asyncio.to_thread(local_validation, component)
        except Undecided:
            pass
    return await ctx.client.validate(component)


async def studio_version(ctx: RunContext) -> str | None:
    """Studio's release, as the producer found it before it enqueued the run (asked here, once per
    run and shared through Redis, for a run enqueued otherwise); "" when Studio would not say."""
    if ctx.version is not None:
        return ctx.version or None
    stored = ctx.store.studio_version(ctx.run_id)
    if stored is not None:
        ctx.version = stored
        return stored or None
    try:
        known = await ctx.client.version() or ""
    except StudioError:
        known = ""
    ctx.store.set_studio_version(ctx.run_id, known, only_if_new=True)
    ctx.version = known
    return known or None


async def _listing_error(ctx: RunContext) -> NodeFailed | None:
    """Why the run's listing of Studio's teams could not be had (None: it is there), caused by what
    failed (whether a later sync may pass reads it: workers/batch.py). It also primes Studio's
    provider settings before /validate/."""
    try:
        await ensure_team_listing(ctx)
    except Exception as exc:  # Studio's failure or a bug's: teams only fail, the rest goes on
        detail = str(exc) if isinstance(exc, (NodeFailed, StudioError)) else f"{type(exc).__name__}: {exc}"
        failed = NodeFailed(f"could not list Studio's teams to match this one: {detail}")
        failed.__cause__ = exc
        return failed
    return None


def _cacheable(records: Mapping[str, Spec], results: Mapping[str, NodeState]) -> dict[str, tuple[str, CacheEntry]]:
    """The nodes done whose result is cached now: gallery members are cached once the gallery entry
    holding them is written."""
    return {
        lbl: (records[lbl]["key"], {"outcome": st.outcome, "team_id": st.team_id})
        for lbl, st in results.items()
        if st.status == Status.DONE and not records[lbl].get("gallery")
    }


async def sync_batch(ctx: RunContext, labels: list[str], concurrency: int) -> dict[str, NodeState]:
    store = ctx.store
    records = store.specs(ctx.run_id, labels)
    deps = {d for r in records.values() for d in r.get("deps", [])}
    states = store.node_states(ctx.run_id, set(labels) | deps)
    claimed = batch.claim(labels, states, ctx.hostname, ctx.task_id)
    store.set_states(ctx.run_id, claimed.running, claimed.previous)
    listing_error = await _listing_error(ctx) if claimed.todo else None
    ctx.rows = store.known_rows(ctx.ns, [lbl for lbl in claimed.todo if has_rows(records[lbl]["type"])])
    ender = batch.Ender(states, ctx.hostname, asyncio.Semaphore(concurrency))

    async def one(label: str) -> NodeState:
        record = records[label]

        async def work() -> NodeState:
            if listing_error and has_rows(record["type"]):  # one of its own per node, with its cause
                raise NodeFailed(str(listing_error)) from listing_error.__cause__
            return await sync_node(ctx, label, record, claimed.previous[label] == Status.RUNNING)

        ended = await ender.end(work, record.get("deps", []), lambda: secret_values(record["spec"], ctx.env))
        return claimed.running[label].merged(ended)

    ends = await asyncio.gather(*(one(lbl) for lbl in claimed.todo))
    results = dict(zip(claimed.todo, ends, strict=True))
    store.set_states(ctx.run_id, results, {lbl: Status.RUNNING for lbl in results})
    store.cache_results(ctx.ns, ctx.meta.tree, _cacheable(records, results))
    # what each written component's file said, placeholders and all: `producer pull` puts them back
    store.record_templates(
        ctx.ns, {lbl: records[lbl]["spec"] for lbl, st in results.items() if st.status == Status.DONE}
    )
    return results
