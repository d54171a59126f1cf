"""Write a tree's standalone components (models, tools, agents, terminations) into one gallery entry,
each in its type's section (shared/core/components.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.core.components import gallery_section, gallery_sections
from shared.core.drift import GALLERY_AUTHOR, entry_stamp, gallery_slug, is_entry
from shared.core.records import CacheEntry, Component, Row, Spec
from shared.core.refs import redact, secret_values
from shared.core.run_model import SUCCEEDED, NodeState, RunMeta, Status
from shared.ports import StudioError
from workers.registration import NodeFailed, RunContext, create_once, creating


async def find_gallery(ctx: RunContext, name: str) -> Row | None:
    gallery_id = ctx.store.gallery_id(ctx.ns, name)
    row = await ctx.client.get_gallery(gallery_id) if gallery_id is not None else None
    if row is not None and is_entry(row, name):
        return row
    mine = (row for row in await ctx.client.list_galleries() if row.get("user_id") == ctx.client.user_id)
    return next((row for row in mine if is_entry(row, name)), None)


@dataclass
class _Members:
    """The gallery's members that succeeded so far: the states of those this run synced (the
    others are cached: settled by the plan, read only should one fail now), the specs it has,
    each one's component as it goes into the entry, and the states to write once the entry is."""

    states: dict[str, NodeState]
    records: dict[str, Spec]
    read: Callable[[str], NodeState]
    resolved: dict[str, Component] = field(default_factory=dict)
    updates: dict[str, NodeState] = field(default_factory=dict)

    def fail(self, label: str, error: str, retryable: bool = False) -> None:
        if label not in self.states:
            self.states[label] = self.read(label)
        failed = {"status": Status.FAILED, "error": error} | ({"retryable": True} if retryable else {})
        self.updates[label] = self.states[label].model_copy(update=failed)

    def previous(self) -> dict[str, str]:
        """Each updated member's status before, so the run's counters stay exact."""
        return {lbl: self.states[lbl].status for lbl in self.updates}

    def secrets(self, env: Mapping[str, str], variables: list[str]) -> list[str]:
        """What no error may show: the tree's ${VAR}s' values, and every secret the members hold."""
        found = {env[name] for name in variables if len(env.get(name, "")) >= 3}
        found |= {v for label in self.resolved for v in secret_values(self.records.get(label, {}).get("spec"), env)}
        found |= {v for comp in self.resolved.values() for v in secret_values(comp, {})}
        return sorted(found, key=len, reverse=True)


Held = dict[str, tuple[str, Component]]  # label -> (section, component) as the entry in Studio holds it


def _as_written(ctx: RunContext, existing: Row, name: str) -> bool:
    """Whether the entry holds exactly what the sync last wrote there: Studio wrote it last for us
    (its stamp, recorded in Redis, for every worker), or it equals what this process wrote (a
    write since of the same content, which moves the stamp, changes nothing)."""
    stamped = existing.get("updated_at") is not None and ctx.store.gallery_written(ctx.ns, name) == entry_stamp(
        existing
    )
    return stamped or existing.get("config") == ctx.galleries.get((ctx.ns, name))


def _held(ctx: RunContext, existing: Row | None, name: str) -> Held:
    """The entry's components when it holds exactly what the sync last wrote there (none else)."""
    if existing is None or not _as_written(ctx, existing, name):
        return {}
    sections = (existing.get("config") or {}).get("components", {})
    return {comp.get("label"): (section, comp) for section, comps in sections.items() for comp in comps or []}


def _read_kept(ctx: RunContext, members: _Members, wanted: Mapping[str, str]) -> None:
    """The specs of cached members whose component Studio's entry cannot give, by node key (the
    producer keeps every member's); one that expired meanwhile fails, to be written next sync."""
    kept = ctx.store.kept_specs(ctx.ns, list(wanted.values()))
    for label, key in wanted.items():
        if key in kept:
            members.records[label] = kept[key]
        else:
            members.fail(label, "its spec expired from Redis before the gallery entry was written; sync again", True)


def _sections(ctx: RunContext, members: _Members, included: list[str], held: Held) -> dict[str, list[Component]]:
    """Every section Studio's format has (teams too, which have rows of their own and stay empty),
    holding the members in order: a cached one as Studio holds it, or from its spec with its
    ${VAR}s resolved; a member whose ${VAR}s do not resolve fails."""
    components: dict[str, list[Component]] = {s: [] for s in gallery_sections()}
    for label in included:
        record = members.records.get(label)
        if record is None:
            if label in held:
                where, members.resolved[label] = held[label]
                components[where].append(members.resolved[label])
            continue  # its spec expired: failed
        section = gallery_section(record["type"])
        if section is None:  # a worker whose table lacks a type the producer's has
            members.fail(label, f"this worker has no gallery section for component type {record['type']!r}")
            continue
        try:
            members.resolved[label] = ctx.resolve_env(record["spec"])
        except NodeFailed as exc:
            members.fail(label, str(exc))
            continue
        components[section].append(members.resolved[label])
    return components


def _studio_components(existing: Row | None) -> dict[str, Component]:
    """Label -> component as Studio holds it (compared as data: no serializing 10,000 of them)."""
    sections = ((existing or {}).get("config") or {}).get("components", {})
    return {comp.get("label"): comp for section in sections.values() for comp in section or []}


async def _save(ctx: RunContext, name: str, config: Component, existing: Row | None) -> Row:
    """The entry written (or left as it is when Studio holds exactly this), its stamp remembered."""
    if existing and existing.get("config") == config:
        row = existing  # Studio holds exactly this: an identical write would only move its timestamps
    elif existing:
        row = await ctx.client.save_gallery(config, existing["id"])
    else:  # a create whose answer was lost is looked up before it is sent again
        row = await create_once(ctx.client, lambda: ctx.client.save_gallery(config), lambda: find_gallery(ctx, name))
        ctx.store.own_gallery(ctx.ns, name, int(row["id"]), ctx.meta.tree)  # what `--prune` may delete
    ctx.store.set_gallery_id(ctx.ns, name, int(row["id"]))
    ctx.store.set_gallery_written(ctx.ns, name, entry_stamp(row) if row.get("updated_at") is not None else None)
    ctx.galleries[(ctx.ns, name)] = config
    return row


def _entry_failed(ctx: RunContext, members: _Members, exc: Exception) -> NodeFailed:
    """Studio's failure, or an entry shaped as no sync writes one: the members that were done fail."""
    said = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
    secrets = members.secrets(ctx.env, ctx.store.gallery_variables(ctx.run_id))
    for label in members.resolved:
        if label in members.states and members.states[label].status == Status.DONE:
            members.fail(label, redact(f"gallery write failed: {said}", secrets))
    ctx.store.set_states(ctx.run_id, members.updates, members.previous())
    return NodeFailed(redact(said, secrets))


def _ended(members: _Members, old: Mapping[str, Component], gallery_id: int) -> dict[str, tuple[str, CacheEntry]]:
    """Each member done gets its outcome against what Studio held; returns what to cache of them."""
    cacheable = {}
    for label, comp in members.resolved.items():
        state = members.states.get(label)
        if state is None or state.status != Status.DONE:  # None: cached
            continue
        previous = old.get(label)
        outcome = "created" if previous is None else "unchanged" if previous == comp else "updated"
        members.updates[label] = state.model_copy(update={"outcome": outcome, "finished": time.time()})
        cacheable[label] = (members.records[label]["key"], {"outcome": outcome, "gallery_id": gallery_id})
    return cacheable


def _entry(meta: RunMeta, components: dict[str, list[Component]]) -> Component:
    """The gallery entry's config, as Studio's gallery format has it."""
    return {
        "id": gallery_slug(meta.gallery_name),
        "name": meta.gallery_name,
        "metadata": {
            "author": GALLERY_AUTHOR,
            "version": (meta.gallery_key or "")[:16],
            "description": f"Components synced from the config tree {meta.tree}",
        },
        "components": components,
    }


def _members(ctx: RunContext, member_keys: Mapping[str, str]) -> tuple[_Members, list[str]]:
    """The members this run synced (the others are cached), with their specs; and the members to
    include: the cached ones and those that succeeded, in order."""
    synced = ctx.store.open_states(ctx.run_id, ctx.meta)
    states = {m: synced[m] for m in member_keys if m in synced}
    included = [m for m in member_keys if m not in states or states[m].status in SUCCEEDED]

    def read(label: str) -> NodeState:
        return ctx.store.node_states(ctx.run_id, [label])[label]

    return _Members(states, ctx.store.specs(ctx.run_id, [m for m in included if m in states]), read), included


def _keep_others(components: dict[str, list[Component]], held: Held, member_keys: Mapping[str, str]) -> int:
    """The components the entry holds that are no member of the run, kept (RunMeta.gallery_keeps_others)."""
    others = [(section, comp) for label, (section, comp) in held.items() if label not in member_keys]
    for section, comp in others:
        components.setdefault(section, []).append(comp)
    return len(others)


async def _write(
    ctx: RunContext, members: _Members, member_keys: Mapping[str, str], included: list[str]
) -> tuple[Row, Row | None, int]:
    """Under the entry's lock: the entry in Studio, the cached members from it or their kept
    specs, the entry written; the row, the entry as it was, and how many others it kept."""
    name = ctx.meta.gallery_name
    async with creating(ctx, f"gallery:{name}"):  # two syncs of the tree at once: one entry
        existing = await find_gallery(ctx, name)
        held = _held(ctx, existing, name)
        cached = [m for m in included if m not in members.states and m not in held]
        _read_kept(ctx, members, {m: member_keys[m] for m in cached})
        components = _sections(ctx, members, included, held)
        kept = _keep_others(components, held, member_keys) if ctx.meta.gallery_keeps_others else 0
        return await _save(ctx, name, _entry(ctx.meta, components), existing), existing, kept


async def write_gallery(ctx: RunContext) -> None:
    """Write the gallery entry once, then give each member processed in this run its outcome. The
    run carries the specs of the members it synced; the cached ones are taken from the entry in
    Studio when it holds what the sync last wrote there, else from the specs kept by node key."""
    member_keys = ctx.store.gallery_members(ctx.run_id)
    members, included = _members(ctx, member_keys)
    try:
        row, existing, kept = await _write(ctx, members, member_keys, included)
    except Exception as exc:
        raise _entry_failed(ctx, members, exc) from exc
    cacheable = _ended(members, _studio_components(existing), int(row["id"]))
    ctx.store.set_states(ctx.run_id, members.updates, members.previous())
    ctx.store.cache_results(ctx.ns, ctx.meta.tree, cacheable)
    # cached only when it holds exactly the members (a component kept for a broken file is not one)
    if not kept and len(included) == len(member_keys) and len(members.resolved) == len(included):
        meta = ctx.meta
        ctx.store.cache_gallery(
            ctx.ns, meta.gallery_name, meta.tree, meta.gallery_key or "", {"gallery_id": int(row["id"])}
        )
