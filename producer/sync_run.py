"""A sync from the producer's side: scan, plan against the cache, write run state, enqueue, wait."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from producer.launch import launch, new_run
from producer.planner import Plan, gallery_members, make_plan, tree_gallery_key
from producer.scanner import ScanMemo, ScanResult, default_cache_path, scan
from producer.studio_state import StudioView, inspect, studio_version
from producer.walk import Walks, check_dir
from shared.core.components import gallery_section, has_rows
from shared.core.drift import EntryState, gallery_slug
from shared.core.exceptions import InvalidInput
from shared.core.hashing import canonical_json, namespace, sha256_hex
from shared.core.records import CacheEntry, Lookup, NewRun, Spec
from shared.core.refs import MissingVariable, substitute_variables
from shared.core.run_model import RunKind, RunMeta, Status
from shared.core.secrets import content_hash
from shared.core.tree import Tree, build_tree
from shared.core.tree_update import tree_of
from shared.metrics import Metrics
from shared.run_metrics import count_settled
from shared.settings import Settings, environment, scan_limits, tree_limits

if TYPE_CHECKING:
    from producer.report import Report
    from shared.ports import Dispatcher, Storage


@dataclass
class Prepared:
    root: Path
    scan: ScanResult
    tree: Tree
    plan: Plan
    namespace: str
    studio: StudioView  # drift, and what a prune would delete
    asked: Counter[str] = field(default_factory=Counter)  # Studio requests of the producer's own (a prune's)


def _sends(tree: Tree) -> Callable[[str], str | None]:
    """What the sync would write for a label: its content hash, ${VAR}s resolved (None: nothing,
    the node is not valid or a variable is missing)."""
    env, memo = environment(), {}  # type: ignore[var-annotated]

    def sends(label: str) -> str | None:
        if label not in tree.nodes or label in tree.invalid or label in tree.skipped:
            return None
        try:
            return content_hash(substitute_variables(tree.resolved(label, memo), env))
        except MissingVariable:
            return None

    return sends


def _cached(
    tree: Tree, tree_name: str, found: Lookup, members: set[str], view: StudioView
) -> dict[str, CacheEntry | None]:
    """The valid nodes whose result is cached and still what Studio holds: this tree last synced the
    label with this very key (content synced before, then other content, then this again, is not
    in Studio), a team's row is this tree's and not gone, a gallery member's entry this tree's."""

    def holds(label: str) -> bool:
        node = tree.nodes[label]
        if label in view.gone or found.last_keys.get(label) != node.key:
            return False
        if has_rows(node.component_type):
            return label in view.recorded
        # an entry deleted in Studio holds none of its members: each is written again
        return label not in members or (found.gallery_tree == tree_name and view.gallery is not EntryState.GONE)

    return {lbl: hit for lbl, hit in zip(tree.valid, found.hits, strict=True) if hit is not None and holds(lbl)}


def _check_entry_is_ours(store: Storage, ns: str, gallery: str, tree_name: str) -> None:
    """Two trees whose folders have the same name would write one gallery entry, named after the
    folder, each sync taking the other's components out: refused while the tree that made it is
    still there."""
    owner = store.owned_gallery(ns, gallery)
    other = owner[1] if owner is not None and owner[1] != tree_name and Path(owner[1]).is_dir() else None
    # claimed atomically: two such trees synced at the same moment would both find no owner yet
    other = other or store.claim_gallery(ns, gallery, tree_name, lambda holder: not Path(holder).is_dir())
    if other != tree_name:
        raise InvalidInput(
            f"{tree_name}: the gallery entry {gallery!r} is the tree {other}'s (its sync made it); "
            f"give this tree an entry of its own with --gallery NAME"
        )


def _nothing_for_the_entry(tree: Tree, unreadable: set[str]) -> bool:
    """The tree has no component for its gallery entry, not even one that is invalid, skipped or
    in a file that could not be read: only then may a prune delete the entry."""
    if unreadable or tree.errors:
        return False
    return not any(gallery_section(node.component_type) is not None for node in tree.nodes.values())


def _taken(view: StudioView, tree: Tree) -> dict[str, str]:
    """Each team whose row another tree's sync wrote last, while that tree is still there: a label
    names one row of a Studio user, and two trees writing it would undo each other at every sync
    (and one's prune would delete the other's team). Refused, naming that tree."""
    return {
        label: f"its Studio row is the tree {other}'s (its sync wrote it): a team label names one row "
        f"per Studio user; rename the team, sync as another STUDIO_USER_ID, or `producer sync --force` to take it over"
        for label, other in view.others.items()
        if label in tree.nodes and has_rows(tree.nodes[label].component_type) and Path(other).is_dir()
    }


def _drifted(view: StudioView) -> dict[str, str]:
    """Each node whose Studio row was edited since the sync wrote it -> why it is left alone."""
    return {
        lbl: f"drifted: row {d.row_id} was {d.reason}; `producer sync --force` overwrites it"
        for lbl, d in view.drift.items()
    }


def prepare(
    root: Path,
    settings: Settings,
    store: Storage,
    gallery_name: str | None = None,
    force: bool = False,
    memo: ScanMemo | None = None,
    walks: Walks | None = None,
) -> Prepared:
    """Scan the tree and plan the sync; one Redis round trip looks up every cache key. `memo`: a
    resident process's last scan (producer/scanner.py); `walks`: the command's walks of trees so far."""
    check_dir(root)
    root = root.resolve()
    walked = walks.walked(root) if walks is not None else None
    cache_path = default_cache_path(root, settings.cache_dir)
    result = scan(root, cache_path, limits=scan_limits(settings), memo=memo, walked=walked)
    env, limits = environment(), tree_limits(settings)
    if memo is None:
        tree = build_tree(result.documents, env, result.facts, limits)
    else:
        tree, memo.tree = tree_of(result.documents, env, result.facts, limits, memo.tree)
    tree_name = str(root)
    gallery = gallery_name or root.name
    ns = namespace(settings.studio_url, settings.studio_user_id)
    valid = tree.valid
    members = gallery_members(tree)
    if members and gallery_name is None:  # a name given with --gallery is the user's choice
        _check_entry_is_ours(store, ns, gallery, tree_name)
    gkey = tree_gallery_key(tree, gallery, members)
    found = store.lookup(ns, [tree.nodes[lbl].key for lbl in valid], (gallery, gkey), tree_name)
    unreadable = set(tree.broken_files) | set(result.unread)
    gallery_cached = found.gallery is not None and not force
    view = inspect(
        settings,
        store,
        ns,
        tree_name,
        set(tree.nodes),
        unreadable,
        gallery,
        _nothing_for_the_entry(tree, unreadable),
        force,
        _sends(tree),
        gallery_cached=gallery_cached,
    )
    taken = _taken(view, tree)
    # forced: what drifted is overwritten, and a prune may delete it
    plan = make_plan(
        tree,
        tree_name=tree_name,
        gallery_name=gallery,
        cached={} if force else _cached(tree, tree_name, found, set(members), view),
        gallery_cached=gallery_cached and view.gallery is EntryState.HELD,
        last_keys=found.last_keys,
        batch_size=settings.batch_size,
        drifted={} if force else _drifted(view),
        refused={} if force else taken,
        gallery=(members, gkey),
        known=memo.states if memo is not None else None,
    )
    if memo is not None:
        memo.states = plan.first_states
    if force:  # rows taken over from other trees: their next sync must look, and is refused for them
        for other in {view.others[label] for label in taken}:
            store.void_tree_root(ns, other)
    return Prepared(root, result, tree, plan, ns, view)


def _spec_of(prepared: Prepared) -> Callable[[str], Spec]:
    """What a worker needs of a node to run it, or to put it in the gallery entry."""
    tree, members = prepared.tree, set(prepared.plan.gallery_members)
    memo: dict[str, object] = {}

    def spec(lbl: str) -> Spec:
        node = tree.nodes[lbl]
        what = {"spec": tree.resolved(lbl, memo), "type": node.component_type, "key": node.key, "path": node.path}
        mistyped = {"mistyped": [m._asdict() for m in said]} if (said := tree.mistyped(lbl)) else {}
        return {**what, "deps": node.deps, "gallery": lbl in members, **mistyped}

    return spec


def _keep_member_specs(prepared: Prepared, store: Storage, spec: Callable[[str], Spec]) -> None:
    """Every gallery member's spec kept by node key for the workers' gallery write (only those not
    kept yet are written: an edit writes its few), so that the run carries only the nodes it syncs."""
    by_key = {prepared.tree.nodes[m].key: m for m in prepared.plan.gallery_members}
    states = prepared.plan.states
    # a cached member's was kept when it was synced (asked for all the same: it may have expired)
    cached = [k for k, m in by_key.items() if states[m].status == Status.CACHED]
    missing = {k for k in by_key if states[by_key[k]].status != Status.CACHED}
    missing.update(store.missing_specs(prepared.namespace, cached))
    store.keep_specs(prepared.namespace, {k: spec(by_key[k]) for k in missing})


def _lookups(prepared: Prepared) -> Metrics:
    """The cache's hits and misses, and the outcomes the plan settled, as metrics."""
    plan, tree = prepared.plan, prepared.tree
    metrics = Metrics()
    lookups = Counter(
        (tree.nodes[label].component_type, "hit" if plan.states[label].status == Status.CACHED else "miss")
        for label in tree.valid
    )
    for labels, count in lookups.items():
        metrics.inc("agentq_cache_requests_total", labels, count)
    count_settled(metrics, plan.states.values())
    return metrics


def _meta(prepared: Prepared, settings: Settings) -> RunMeta:
    """The run as it starts: its clock (new_run) starts now."""
    plan, tree = prepared.plan, prepared.tree
    return RunMeta(
        **new_run(),
        kind=RunKind.SYNC,
        tree=plan.tree_name,
        namespace=prepared.namespace,
        studio_url=settings.studio_url,
        user_id=settings.studio_user_id,
        gallery_name=plan.gallery_name,
        gallery_key=plan.gallery_key,
        gallery_members=tuple(plan.gallery_members),
        gallery_keys=tuple(tree.nodes[m].key for m in plan.gallery_members),
        gallery_variables=tuple(sorted({name for ff in prepared.scan.facts.values() for _, name in ff.variables})),
        gallery_needed=plan.gallery_needed,
        gallery_keeps_others=bool(tree.broken_files or prepared.scan.unread or tree.invalid or tree.skipped),
        waves=len(plan.waves),
        total=len(plan.states),
    )


def submit(prepared: Prepared, settings: Settings, store: Storage, dispatcher: Dispatcher | None) -> str:
    """Write the run's state to Redis and publish its first wave (nothing when all is cached)."""
    plan = prepared.plan
    spec = _spec_of(prepared)
    specs = {lbl: spec(lbl) for lbl in plan.to_run}
    if plan.gallery_needed:
        _keep_member_specs(prepared, store, spec)
    metrics = _lookups(prepared)
    # Studio is asked once whether it answers at all before any work goes to the workers; and when
    # it could not be asked for its rows: a cached result counts only while Studio holds it, so a
    # Studio that is down fails the command (exit 3) rather than reporting the tree unchanged
    asking = plan.has_work or prepared.studio.error is not None
    version, asked = studio_version(settings, metrics) if asking else (None, None)
    meta = _meta(prepared, settings)  # made last: asking Studio is not counted in the run's time

    def write(meta: RunMeta) -> None:
        store.create_run(NewRun(meta, plan.states, specs, plan.waves, plan.settled))
        if version is not None:
            store.set_studio_version(meta.run_id, version)
        if asked or prepared.asked:
            store.add_studio_requests(meta.run_id, (asked or Counter()) + prepared.asked)

    assert dispatcher is not None or not plan.has_work
    return launch(store, meta, write, metrics, dispatcher if plan.has_work else None).run_id


def _clean(prepared: Prepared, report: Report) -> bool:
    """Nothing failed, was skipped or left pending, and the tree had no errors."""
    from producer.report import succeeded

    counts = report["counts"]
    return succeeded(report) and not prepared.tree.errors and not counts["skipped"] and not counts["pending"]


def _root(prepared: Prepared, store: Storage) -> tuple[str, list[str]]:
    """The sync's root (a digest over its namespace, tree, gallery and node keys) and the cache
    entries under it."""
    tree, plan, ns = prepared.tree, prepared.plan, prepared.namespace
    valid = tree.valid
    cache_keys = [store.node_cache_key(ns, tree.nodes[lbl].key) for lbl in valid]
    if plan.gallery_key:
        cache_keys.append(store.gallery_cache_key(ns, plan.gallery_key))
    digest = sha256_hex(
        canonical_json([ns, plan.tree_name, plan.gallery_key, [[lbl, tree.nodes[lbl].key] for lbl in valid]])
    )
    return digest, cache_keys


def _no_change_answer(report: Report, run_id: str) -> Report:
    """The report the next unchanged sync gives: every node unchanged, nothing asked of Studio."""
    counts = {outcome: 0 for outcome in report["counts"]} | {"unchanged": len(report["nodes"])}
    return {
        **report,
        "run_id": None,
        "last_run_id": run_id,
        "no_change": True,
        "seconds": None,
        "counts": counts,
        "studio_requests": {},
        "nodes": {lbl: {**st, "status": Status.CACHED, "outcome": "unchanged"} for lbl, st in report["nodes"].items()},
    }


def _no_change_metrics(prepared: Prepared, report: Report) -> Metrics:
    """The counts a full no-change sync adds (see submit and record_run)."""
    metrics = Metrics()
    for label in prepared.tree.valid:
        metrics.inc("agentq_cache_requests_total", [prepared.tree.nodes[label].component_type, "hit"])
    for st in report["nodes"].values():
        metrics.inc("agentq_sync_outcomes_total", [st.get("type") or "file", "unchanged"])
    return metrics


def settings_names() -> list[str]:
    """The environment variables the settings are read from."""
    kept, secret = _settings_kept()
    return sorted({*kept, *secret})


def _settings_kept() -> tuple[list[str], set[str]]:
    """The settings' names: those kept by value, and the secret ones (STUDIO_TOKEN)."""
    aliases = {f.alias: str(f.annotation) for f in Settings.model_fields.values() if f.alias}
    secret = {alias for alias, annotation in aliases.items() if "Secret" in annotation}
    return sorted(set(aliases) - secret), secret


def _entry_written(prepared: Prepared, store: Storage) -> list[str] | None:
    """The tree's gallery entry as the sync left it, for the no-change path to check against
    Studio: [row id, its config's id, updated_at]; [] when the tree has no entry; None when what it
    holds is not known (the full path then looks each time)."""
    name = prepared.plan.gallery_name
    if prepared.plan.gallery_key is None:
        return []
    row_id, stamp = store.gallery_id(prepared.namespace, name), store.gallery_written(prepared.namespace, name)
    if row_id is None or stamp is None or not stamp.startswith(f"{row_id}:"):
        return None
    return [str(row_id), gallery_slug(name), stamp.removeprefix(f"{row_id}:")]


def _fingerprinted(prepared: Prepared) -> tuple[list[str], list[str]]:
    """What the no-change record keeps by value: the settings and the tree's ${VAR}s that are no
    secret (their values are in the nodes' keys); and the names it keeps only by whether they are
    set: secret settings and the other ${VAR}s (not even a hash of a secret goes into the record)."""
    names, secret = _settings_kept()
    facts = prepared.scan.facts.values()
    plain = {name for ff in facts for name, _ in ff.plain}
    variables = {name for ff in facts for _, name in ff.variables} - plain
    return sorted({*names, *plain}), sorted(variables | secret)


def remember_if_clean(prepared: Prepared, settings: Settings, store: Storage, run_id: str, report: Report) -> bool:
    """After a sync run with the default flags: when it ended clean (nothing failed, skipped or
    invalid), record what lets the next unchanged sync answer at once (producer/nochange.py);
    otherwise forget any earlier record. True when recorded."""
    from producer import nochange

    path = nochange.record_path(prepared.root, settings.cache_dir)
    digest, cache_keys = _root(prepared, store)
    if not _clean(prepared, report) or not store.mark_root(digest, run_id, cache_keys):
        nochange.forget(path)
        return False
    store.keep_tree_root(prepared.namespace, prepared.plan.tree_name, digest)
    gallery = _entry_written(prepared, store)
    if gallery is None:
        nochange.forget(path)
        return False
    names, variables = _fingerprinted(prepared)
    fingerprint = nochange.fingerprint_of(prepared.scan.files, prepared.scan.unread, names, variables, environment())
    written = store.written_rows(prepared.namespace, prepared.plan.tree_name)
    last = nochange.LastSync(
        fingerprint,
        digest,
        names,
        variables,
        str(report["tree"]),
        len(report["nodes"]),
        _no_change_metrics(prepared, report).counter_fields(),
        studio=[settings.studio_url, settings.studio_user_id],
        rows={str(w.row_id): [w.hash, w.updated_at] for w in written.values() if w.label in prepared.tree.nodes},
        gallery=gallery,
    )
    nochange.save(path, last, _no_change_answer(report, run_id))
    return True
