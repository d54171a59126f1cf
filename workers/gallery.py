"""Write a tree's standalone components (models, tools, agents, terminations) into one gallery entry,
each in its type's section (shared/core/components.py)."""

from __future__ import annotations

import time
from typing import Any

from shared.core.components import gallery_section, gallery_sections
from shared.core.refs import redact, secret_values
from shared.core.run_model import SUCCEEDED, NodeState, Status
from shared.core.specs import gallery_slug
from shared.ports import StudioError
from workers.registration import NodeFailed, RunContext, create_once, creating


async def find_gallery(ctx: RunContext, name: str) -> dict[str, Any] | None:
    gallery_id = ctx.store.gallery_id(ctx.ns, name)
    if gallery_id is not None:
        row = await ctx.client.get_gallery(gallery_id)
        if row is not None and (row.get("config") or {}).get("id") == gallery_slug(name):
            return row
    for row in await ctx.client.list_galleries():
        if (row.get("config") or {}).get("id") == gallery_slug(name) and row.get("user_id") == ctx.client.user_id:
            return row
    return None


async def write_gallery(ctx: RunContext) -> None:
    """Write the gallery entry once, then give each member processed in this run its outcome."""
    meta = ctx.meta
    name: str = meta["gallery_name"]
    members: list[str] = ctx.store.run_list(ctx.run_id, "gallery_members")
    states = ctx.store.node_states(ctx.run_id, members)
    included = [m for m in members if states.get(m, {}).get("status") in SUCCEEDED]
    records = ctx.store.specs(ctx.run_id, included)
    # every section Studio's format has (teams too, which have rows of their own and stay empty)
    components: dict[str, list[dict[str, Any]]] = {s: [] for s in gallery_sections()}
    resolved: dict[str, dict[str, Any]] = {}
    updates: dict[str, NodeState] = {}
    for label in included:
        section = gallery_section(records[label]["type"])
        if section is None:  # a worker whose table lacks a type the producer's has
            error = f"this worker has no gallery section for component type {records[label]['type']!r}"
            updates[label] = {**states[label], "status": Status.FAILED, "error": error}
            continue
        try:
            resolved[label] = ctx.resolve_env(records[label]["spec"])
        except NodeFailed as exc:
            updates[label] = {**states[label], "status": Status.FAILED, "error": str(exc)}
            continue
        components[section].append(resolved[label])

    config = {
        "id": gallery_slug(name),
        "name": name,
        "metadata": {
            "author": "agentq producer",
            "version": meta["gallery_key"][:16],
            "description": f"Components synced from the config tree {meta['tree']}",
        },
        "components": components,
    }
    old: dict[str, Any] = {}  # label -> component as Studio holds it (compared as data: no serializing 10,000 of them)
    try:
        async with creating(ctx, f"gallery:{name}"):  # two syncs of the tree at once: one entry
            existing = await find_gallery(ctx, name)
            for section in ((existing or {}).get("config") or {}).get("components", {}).values():
                for comp in section or []:
                    old[comp.get("label")] = comp
            if existing and existing.get("config") == config:
                row = existing  # Studio holds exactly this: an identical write would only move its timestamps
            elif existing:
                row = await ctx.client.save_gallery(config, existing["id"])
            else:  # a create whose answer was lost is looked up before it is sent again
                row = await create_once(
                    ctx.client, lambda: ctx.client.save_gallery(config), lambda: find_gallery(ctx, name)
                )
                ctx.store.own_gallery(ctx.ns, name, int(row["id"]), str(meta["tree"]))  # what `--prune` may delete
            ctx.store.set_gallery_id(ctx.ns, name, int(row["id"]))
    except Exception as exc:  # Studio's failure, or an entry shaped as no sync writes one: the members fail
        said = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
        secrets = sorted(
            {v for label in resolved for v in secret_values(records[label]["spec"], ctx.env)}, key=len, reverse=True
        )
        for label in resolved:
            if states[label]["status"] == Status.DONE:
                updates[label] = {
                    **states[label],
                    "status": Status.FAILED,
                    "error": redact(f"gallery write failed: {said}", secrets),
                }
        ctx.store.set_states(ctx.run_id, updates, {lbl: states[lbl]["status"] for lbl in updates})
        raise NodeFailed(redact(said, secrets)) from exc

    cacheable = {}
    for label, comp in resolved.items():
        state = states[label]
        if state["status"] != Status.DONE:
            continue
        previous = old.get(label)
        outcome = "created" if previous is None else "unchanged" if previous == comp else "updated"
        updates[label] = {**state, "outcome": outcome, "finished": time.time()}
        cacheable[label] = (records[label]["key"], {"outcome": outcome, "gallery_id": int(row["id"])})
    ctx.store.set_states(ctx.run_id, updates, {lbl: states[lbl]["status"] for lbl in updates})
    ctx.store.cache_results(ctx.ns, meta["tree"], cacheable)
    if len(included) == len(members) and len(resolved) == len(included):
        ctx.store.cache_gallery(ctx.ns, meta["gallery_key"], {"gallery_id": int(row["id"])})
