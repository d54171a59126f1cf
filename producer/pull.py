"""`producer pull`: Studio's team rows and the tree's gallery entry, written back into the tree.
The layout (which file holds what) is decided by shared/core/pull_layout.py; this module reads
Studio and the tree, and writes the files."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from producer.scanner import scan
from producer.studio_state import client
from shared.core.components import has_rows, member_sections
from shared.core.drift import gallery_slug
from shared.core.exceptions import InvalidInput
from shared.core.pull_layout import Existing, FileWrite, Layout, parts, plan_pull
from shared.core.refs import MissingVariable, substitute_variables
from shared.core.tree import Tree, build_tree
from shared.settings import Settings, scan_limits, tree_limits

# the templates the syncs recorded (RunStore.templates), by label, for the labels asked
Templates = Callable[[Collection[str]], Mapping[str, object]]


@dataclass
class StudioContent:
    teams: list[dict[str, Any]] = field(default_factory=list)  # the rows' components
    gallery: list[dict[str, Any]] = field(default_factory=list)  # the tree's gallery entry's components
    others: list[str] = field(default_factory=list)  # labels of the rows left out


def read_studio(settings: Settings, labels: list[str], gallery_name: str, keep: set[str] | None) -> StudioContent:
    """The user's team rows (those labelled `labels` when given, else those in `keep`, else all)
    and the standalone components of the gallery entry a sync of this tree writes. Raises
    StudioError, or InvalidInput for a label no row has."""
    rows, galleries = asyncio.run(_listings(settings))
    teams = _team_components(rows)
    if labels:
        _check_labels(labels, teams, settings.studio_user_id)
        keep = set(labels)
    # rows named by label come alone, without the gallery entry
    gallery = [] if labels else _gallery_components(galleries, gallery_slug(gallery_name), settings.studio_user_id)
    kept, others = _kept(teams, keep)
    return StudioContent(kept, gallery, others)


async def _listings(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with client(settings) as studio:
        return await studio.list_teams(), await studio.list_galleries()


def _team_components(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows' components, oldest row first."""
    ordered = sorted(rows, key=lambda r: int(r.get("id") or 0))
    return [r["component"] for r in ordered if isinstance(r.get("component"), dict)]


def _label(team: dict[str, Any]) -> str | None:
    """A team's label; None for one that is no string (Studio stores what any client sends)."""
    label = team.get("label")
    return label if isinstance(label, str) else None


def _kept(teams: list[dict[str, Any]], keep: set[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The teams labelled in `keep` (all without it), and the labels of the rest."""
    if keep is None:
        return teams, []
    others = sorted({str(t.get("label")) for t in teams if _label(t) not in keep})
    return [t for t in teams if _label(t) in keep], others


def _check_labels(labels: list[str], teams: list[dict[str, Any]], user_id: str) -> None:
    missing = sorted(set(labels) - {_label(t) for t in teams})
    if missing:
        raise InvalidInput(f"no team row labelled {', '.join(missing)} for user {user_id}")


def _gallery_components(galleries: list[dict[str, Any]], slug: str, user_id: str) -> list[dict[str, Any]]:
    """The standalone components of the user's gallery entries with id `slug`, section by section."""
    gallery: list[dict[str, Any]] = []
    for row in galleries:
        config = row.get("config") or {}
        if config.get("id") == slug and row.get("user_id") == user_id:
            gallery += _section_components(config.get("components") or {})
    return gallery


def _section_components(components: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for section in member_sections() for c in components.get(section) or [] if isinstance(c, dict)]


def existing_files(root: Path, settings: Settings, env: Mapping[str, str]) -> dict[str, Existing]:
    """The tree's component files by label, with what a sync would send for each."""
    if not root.is_dir():
        return {}
    result = scan(root, None, limits=scan_limits(settings))
    tree = build_tree(result.documents, env, result.facts, limits=tree_limits(settings))
    valid = set(tree.valid)
    memo: dict[str, Any] = {}
    out: dict[str, Existing] = {}
    for label, node in tree.nodes.items():
        sent = _sent(tree, label, env, memo) if label in valid else None
        out[label] = Existing(label, node.path, node.component_type, node.spec, sent)
    return out


def _sent(tree: Tree, label: str, env: Mapping[str, str], memo: dict[str, Any]) -> dict[str, Any] | None:
    """What a sync sends for a valid node: refs inlined, variables set; None when one is unset."""
    try:
        sent: dict[str, Any] = substitute_variables(tree.resolved(label, memo), env)
    except MissingVariable:
        return None
    return sent


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as literal blocks, as a person would write them."""


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def render(write: FileWrite) -> str:
    if write.format == "json":
        return json.dumps(write.document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(write.document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_files(root: Path, layout: Layout) -> dict[str, str]:
    """Each changed file written whole, atomically (a crash leaves the old file or the new one);
    one that cannot be written does not stop the others. Returns path -> why not, for those."""
    failed: dict[str, str] = {}
    real_root = os.path.realpath(root)
    for write in layout.changed():
        target = root / write.path
        if os.path.commonpath([real_root, os.path.realpath(target.parent)]) != real_root:
            failed[write.path] = "its folder is a symlink that leads outside the tree; not written there"
            continue
        blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            where = blocking.relative_to(root) if blocking.is_relative_to(root) else blocking
            failed[write.path] = f"{where} is a file, not a folder"
            continue
        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".pull-{uuid.uuid4().hex}.tmp"
            # created as any new file is (the umask decides), not 0600 as mkstemp makes it
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(render(write))
            if target.exists():  # a file pulled again keeps its mode
                os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
            os.replace(tmp, target)
        except OSError as exc:
            failed[write.path] = exc.strerror or str(exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return failed


def pull(
    root: Path,
    settings: Settings,
    env: Mapping[str, str],
    labels: list[str] | None = None,
    gallery_name: str | None = None,
    dry_run: bool = False,
    every_row: bool = False,
    templates: Templates | None = None,
) -> tuple[Layout, list[str], dict[str, str]]:
    """Pull into `root`; returns the layout, the labels of the rows left out and the files that
    could not be written (path -> why). A tree with teams takes the rows of its own teams (Studio
    seeds a default team for every new user: it is not the tree's), an empty one takes every row;
    `labels` or `every_row` say otherwise."""
    existing = existing_files(root, settings, env)
    keep = None if every_row else _own_teams(existing)
    content = read_studio(settings, labels or [], gallery_name or root.resolve().name, keep)
    known = templates(_labels(content)) if templates is not None else {}
    layout = plan_pull(content.teams, content.gallery, existing, env, _taken(root), known)
    failed = {} if dry_run else write_files(root, layout)
    return layout, content.others, failed


def _labels(content: StudioContent) -> set[str]:
    """The labels of the components pulled, and of every part in them."""
    pulled = [*content.teams, *content.gallery]
    found = (c.get("label") for top in pulled for c in (top, *parts(top)))
    return {label for label in found if isinstance(label, str)}


def _own_teams(existing: dict[str, Existing]) -> set[str] | None:
    """The labels of the tree's teams (none for a tree of agents and models only: Studio's default
    team is not its); None (take every row) for an empty tree."""
    if not existing:
        return None
    return {lbl for lbl, e in existing.items() if has_rows(e.component_type)}


def _taken(root: Path) -> set[str]:
    """Every path in the tree, files and folders: a new file's name must not clash with one."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.is_dir() else set()
