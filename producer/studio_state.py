"""Studio as the producer sees it: what became of the rows a tree's syncs wrote (drifted, gone,
or for `--prune` to delete), and whether it answers at all before a run is enqueued.

One listing of the user's team rows per plan or sync, and only when the tree has written rows
(or owns a gallery entry) before; the tree's gallery entry read when the cache says it holds what
the tree would write; one `GET /version` per sync that has work to enqueue."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shared.adapters.studio_answers import ROW, ROWS, VERSION, Shape
from shared.core.drift import (
    Drift,
    EntryState,
    WrittenRow,
    drifted,
    entry_state,
    gone,
    prune_candidates,
    row_label,
    touched,
)
from shared.core.exceptions import ServiceUnavailable
from shared.core.run_model import NodeState, Status
from shared.core.secrets import content_hash, shown_url
from shared.metrics import Metrics, endpoint_template
from shared.ports import RunStore, Studio, StudioError
from shared.settings import Settings

AT_ONCE_SECONDS = 5.0  # a plain GET's whole answer: past it the client asks (Studio answers in milliseconds)


@dataclass
class StudioView:
    drift: dict[str, Drift] = field(default_factory=dict)  # label -> how its row changed in Studio
    gone: set[str] = field(default_factory=set)  # labels whose row was deleted in Studio
    prune: list[WrittenRow] = field(default_factory=list)  # rows `sync --prune` deletes
    prune_gallery: int | None = None  # the tree's own gallery entry, when nothing is left to put in it
    error: str | None = None  # Studio could not be asked: drift is unknown
    recorded: frozenset[str] = frozenset()  # labels whose team row this tree's sync last wrote
    gallery: EntryState = EntryState.HELD  # the gallery entry a cached result says is as written
    others: dict[str, str] = field(default_factory=dict)  # label of the tree -> another tree that wrote its row last


def client(settings: Settings, metrics: Metrics | None = None) -> Studio:
    from shared.adapters.studio import StudioClient  # aiohttp with it: imported once Studio is to be asked more

    return StudioClient.from_settings(settings, settings.studio_url, settings.studio_user_id, metrics=metrics)


def not_studio(exc: StudioError) -> bool:
    """An answer, but not AutoGen Studio's: a 200 whose body is not the JSON Studio answers (a
    proxy's sign-in page, another server on that port), or a redirect (to a sign-in page)."""
    return exc.status is not None and (exc.status == 200 or 300 <= exc.status < 400)


def unavailable(url: str, exc: StudioError) -> ServiceUnavailable:
    """The one line that ends a command Studio failed, naming its URL."""
    where = shown_url(url)
    if exc.status in (401, 403):
        return ServiceUnavailable(f"AutoGen Studio at {where} refused us: {exc} (is STUDIO_TOKEN what it expects?)")
    if exc.status == 404:  # Studio answers its version at /api/version: this is no Studio's root
        return ServiceUnavailable(
            f"{where} has no AutoGen Studio API (GET /api/version answered 404): STUDIO_URL is the "
            f"server's root, as `http://host:8081`, without `/api`: {exc}"
        )
    if not_studio(exc):
        return ServiceUnavailable(
            f"{where} does not answer as AutoGen Studio does (does STUDIO_URL name another server, "
            f"or a proxy's sign-in page?): {exc}"
        )
    return ServiceUnavailable(f"AutoGen Studio at {where} is not available: {exc}")


def studio_version(settings: Settings, metrics: Metrics) -> tuple[str, Counter[str]]:
    """Studio's release ("" when it will not say) and the requests that took, asked before a run
    with work is enqueued: a Studio that cannot be reached, answers 429 or 5xx whatever the
    retries, or answers what Studio never does (an HTML page, a redirect), ends the command in
    one line naming its URL rather than failing every component of the run."""
    answered = _version_at_once(settings, metrics)
    if answered is not None:
        return answered

    async def ask() -> tuple[str, Counter[str]]:
        async with client(settings, metrics=metrics) as studio:
            try:
                return await studio.version() or "", studio.requests
            except StudioError as exc:
                # refused (401, 403): every call of the run would be too
                if exc.status is None or exc.status in (401, 403, 404, 429) or exc.status >= 500 or not_studio(exc):
                    raise unavailable(settings.studio_url, exc) from exc
                return "", studio.requests  # it answers, if not this: the workers find out the rest

    return asyncio.run(ask())


def _version_at_once(settings: Settings, metrics: Metrics) -> tuple[str, Counter[str]] | None:
    """Studio's release from one plain GET, counted as Studio's client counts a request; None when
    it does not answer so at once (the client then asks)."""
    started = time.perf_counter()
    answered = _at_once(settings, "/version", VERSION)
    if answered is None:
        return None
    seconds = time.perf_counter() - started
    metrics.observe("agentq_studio_request_duration_seconds", [endpoint_template("/version"), "GET", "200"], seconds)
    return answered[0]["version"], Counter({"GET /version": 1})


def _at_once(settings: Settings, endpoint: str, shape: Shape, user: bool = False) -> tuple[Any] | None:
    """(the `data` of) Studio's answer to one plain GET of `endpoint` (shared/adapters/plain_http.py:
    importing Studio's client, aiohttp with it, costs a command 0.14 s), as the client would take
    it (`shape`); None when Studio does not answer so at once (TLS, a proxy, an error status, an
    answer that is not Studio's): the caller asks through the client, with its retries and its
    words for what failed. `user`: asked for the settings' Studio user."""
    from urllib.parse import quote

    from shared.adapters.plain_http import studio_get

    token = settings.studio_token.get_secret_value() if settings.studio_token else None
    path = f"/api{endpoint}" + (f"?user_id={quote(settings.studio_user_id)}" if user else "")
    try:
        body = studio_get(
            settings.studio_url, path, token, os.environ, min(AT_ONCE_SECONDS, settings.studio_timeout_seconds)
        )
        answer = json.loads(body) if body is not None else None
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    return (answer.get("data"),) if isinstance(answer, dict) and shape[0](answer) else None


def studio_silent(settings: Settings, within: float = 5.0) -> str | None:
    """Why the workers' Studio calls may be what holds a run up: Studio not answering its health
    check within `within` seconds (from here), or answering it with an error; None when it answers."""

    async def ask() -> str | None:
        async with client(settings) as studio:
            try:
                await asyncio.wait_for(studio.health(), within)
            except TimeoutError:
                return f"AutoGen Studio at {shown_url(settings.studio_url)} did not answer its health check within {within:g} s"
            except StudioError as exc:
                return str(unavailable(settings.studio_url, exc))
            return None

    return asyncio.run(ask())


Rows = dict[int, dict[str, Any]]  # Studio's team rows by id


def _owned_gallery(store: RunStore, ns: str, gallery_name: str, tree_name: str) -> int | None:
    """The id of the gallery entry `gallery_name` when this tree's sync created it."""
    owned = store.owned_gallery(ns, gallery_name)
    return owned[0] if owned is not None and owned[1] == tree_name else None


@dataclass(frozen=True)
class _Asks:
    """What to read of Studio: the team rows, the entry a prune may delete, the entry a cached
    result says Studio holds as written (its id, and the stamp the sync recorded)."""

    teams: bool
    owned: int | None
    cached: tuple[int | None, str | None] | None


def _listing(settings: Settings, asks: _Asks, gallery_name: str) -> tuple[Rows, int | None, EntryState]:
    """Studio's team rows by id; the owned entry's id when it is still there; what became of the
    entry a cached result vouches for. Asked with plain GETs, and through Studio's client when any
    of them is not answered so."""
    entries = [i for i in {asks.owned, asks.cached[0] if asks.cached else None} if i is not None]
    teams = _at_once(settings, "/teams/", ROWS, user=True) if asks.teams else ([],)
    got = [_at_once(settings, f"/gallery/{i}", ROW, user=True) for i in entries] if teams else []
    if teams is not None and all(row is not None for row in got):
        listed = {int(row["id"]): row for row in teams[0]}
        return _looked(asks, gallery_name, listed, {i: row[0] for i, row in zip(entries, got, strict=True) if row})
    return asyncio.run(_ask_listing(settings, asks, gallery_name))


async def _ask_listing(settings: Settings, asks: _Asks, gallery_name: str) -> tuple[Rows, int | None, EntryState]:
    """_listing, asked through Studio's client."""
    async with client(settings) as studio:
        listed = {int(row["id"]): row for row in await studio.list_teams()} if asks.teams else {}
        rows: dict[int, dict[str, Any] | None] = {}
        for gallery_id in {asks.owned, asks.cached[0] if asks.cached else None}:
            if gallery_id is not None:
                rows[gallery_id] = await studio.get_gallery(gallery_id)
        return _looked(asks, gallery_name, listed, rows)


def _looked(
    asks: _Asks, gallery_name: str, listed: Rows, rows: dict[int, dict[str, Any] | None]
) -> tuple[Rows, int | None, EntryState]:
    state = EntryState.HELD
    if asks.cached is not None:
        cached_id, stamp = asks.cached
        state = entry_state(rows.get(cached_id) if cached_id is not None else None, gallery_name, stamp)
    there = asks.owned is not None and rows.get(asks.owned) is not None
    return listed, asks.owned if there else None, state


def _settle(
    store: RunStore, ns: str, written: dict[str, WrittenRow], listed: Rows, sends: Callable[[str], str | None]
) -> dict[str, Drift]:
    """The rows that drifted. A row edited in Studio to exactly what the tree now sends has not, and
    its record is brought up to date, as is the record of a row saved again unchanged."""
    drift = drifted(written, listed)
    for label, d in list(drift.items()):
        row = listed[d.row_id]
        digest = content_hash(row.get("component"))
        if row_label(row) == label and sends(label) == digest:
            store.record_written(ns, replace(written[label], hash=digest, updated_at=row.get("updated_at")))
            del drift[label]
    for record in touched({k: w for k, w in written.items() if k not in drift}, listed):
        store.record_written(ns, record)
    return drift


def inspect(
    settings: Settings,
    store: RunStore,
    ns: str,
    tree_name: str,
    tree_labels: set[str],
    unreadable: set[str],
    gallery_name: str,
    gallery_empty: bool,
    force: bool = False,
    sends: Callable[[str], str | None] = lambda _: None,
    gallery_cached: bool = False,
) -> StudioView:
    """What became of the tree's rows. `sends(label)` is the content hash of what the tree would
    now write for a label: a row edited in Studio to exactly that (a `producer pull` took the edit
    into the files) has not drifted, and its record is brought up to date. `gallery_cached`: the
    cache says the entry holds what the tree would write, which only Studio can confirm."""
    every = store.written_rows(ns)
    written = {label: w for label, w in every.items() if w.tree == tree_name}
    others = {label: w.tree for label, w in every.items() if w.tree != tree_name and label in tree_labels}
    owned_here = _owned_gallery(store, ns, gallery_name, tree_name)
    if not written and owned_here is None and not gallery_cached:
        return StudioView(others=others)
    asks = _Asks(
        teams=bool(written) or owned_here is not None,
        # only a prune of an emptied tree needs to know; the entry of a big tree is megabytes
        owned=owned_here if gallery_empty else None,
        cached=(store.gallery_id(ns, gallery_name), store.gallery_written(ns, gallery_name))
        if gallery_cached
        else None,
    )
    try:
        listed, prune_gallery, entry = _listing(settings, asks, gallery_name)
    except StudioError as exc:
        error = f"could not read Studio's teams and gallery entry to look for drift: {exc}"
        return StudioView(error=error, recorded=frozenset(written), others=others)
    drift = _settle(store, ns, written, listed, sends)
    return StudioView(
        others=others,
        drift=drift,
        gone=gone(written, listed),
        prune=prune_candidates(written, listed, tree_labels, unreadable, {} if force else drift),
        prune_gallery=prune_gallery,
        recorded=frozenset(written),
        gallery=entry,
    )


def delete_rows(
    settings: Settings, store: RunStore, ns: str, view: StudioView, gallery_name: str, asked: Counter[str] | None = None
) -> dict[str, NodeState]:
    """Delete what `view` says a prune deletes; label -> its node state in the run. Each row is
    read again first: one that changed hands or label since the listing is left alone. The
    requests it made are added to `asked` (the run's report counts them)."""

    async def go() -> dict[str, NodeState]:
        out: dict[str, NodeState] = {}
        async with client(settings) as studio:
            try:
                await _delete(studio, out)
            finally:
                if asked is not None:
                    asked.update(studio.requests)
        return out

    async def _delete(studio: Studio, out: dict[str, NodeState]) -> None:
        for record in view.prune:
            base = NodeState(status=Status.PENDING, type="team", path=record.path, team_id=record.row_id)
            try:
                row = await studio.get_team(record.row_id)
                if row is None or row_label(row) != record.label:
                    store.forget_written(ns, record.label)
                    out[record.label] = base.merged(NodeState(status=Status.SKIPPED, reason="no longer in Studio"))
                    continue
                await studio.request("DELETE", f"/teams/{record.row_id}", params={"user_id": studio.user_id})
                store.forget_written(ns, record.label)
                out[record.label] = base.merged(NodeState(status=Status.DONE, outcome="deleted"))
            except StudioError as exc:
                out[record.label] = base.merged(NodeState(status=Status.FAILED, error=f"could not delete: {exc}"))
        if view.prune_gallery is not None:
            label = f"gallery:{gallery_name}"
            try:
                await studio.request("DELETE", f"/gallery/{view.prune_gallery}", params={"user_id": studio.user_id})
                store.disown_gallery(ns, gallery_name)
                out[label] = NodeState(type="gallery", status=Status.DONE, outcome="deleted")
            except StudioError as exc:
                out[label] = NodeState(type="gallery", status=Status.FAILED, error=f"could not delete: {exc}")

    return asyncio.run(go())
