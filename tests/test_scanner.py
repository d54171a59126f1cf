"""producer.scanner.scan over real files in tmp_path: stat cache, ignores, symlinks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from producer.scanner import ScanMemo, scan
from shared.core.errors import ConfigError
from shared.core.exceptions import InvalidInput
from shared.core.loader import parse_document
from shared.core.tree import build_tree


def component(label: str, ctype: str = "tool", **config) -> str:
    lines = [f"provider: pkg.{ctype}", f"component_type: {ctype}", f"label: {label}", "config:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in config.items()] or ["  {}"]
    if not config:
        lines[-2:] = ["config: {}"]
    return "\n".join(lines) + "\n"


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    write(root, "models/m.yaml", component("m", "model", model="gpt"))
    write(root, "tools/t.yaml", component("t", "tool", name="t"))
    write(
        root,
        "agents/a.json",
        json.dumps(
            {
                "provider": "p",
                "component_type": "agent",
                "label": "a",
                "config": {"model_client": {"$ref": "m"}},
            }
        ),
    )
    write(root, "README.md", "# not a config file\n")
    return root


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "scan.json"


def test_component_helper_writes_valid_yaml():
    assert parse_document("x.yaml", component("x", "tool", a=1).encode())["config"] == {"a": 1}
    assert parse_document("x.yaml", component("x").encode())["config"] == {}


def test_first_scan_parses_every_config_file(tree, cache):
    result = scan(tree, cache)
    assert sorted(result.documents) == ["agents/a.json", "models/m.yaml", "tools/t.yaml"]
    assert result.parsed == 3
    assert result.skipped == {}
    assert result.documents["models/m.yaml"]["config"] == {"model": "gpt"}
    assert result.documents["agents/a.json"]["config"] == {"model_client": {"$ref": "m"}}
    assert cache.exists()


def test_second_scan_without_changes_parses_nothing_and_gives_identical_documents(tree, cache):
    first = scan(tree, cache)
    second = scan(tree, cache)
    assert second.parsed == 0
    assert second.documents == first.documents
    third = scan(tree, cache)
    assert third.parsed == 0
    assert third.documents == first.documents


def test_without_a_cache_every_scan_parses_everything(tree):
    assert scan(tree).parsed == 3
    assert scan(tree).parsed == 3


def test_touching_one_file_reparses_exactly_that_file(tree, cache):
    first = scan(tree, cache)
    bump_mtime(tree / "tools/t.yaml")
    second = scan(tree, cache)
    assert second.parsed == 1
    assert second.documents == first.documents
    assert scan(tree, cache).parsed == 0


def test_editing_one_file_reparses_it_and_returns_the_new_content(tree, cache):
    scan(tree, cache)
    path = write(tree, "models/m.yaml", component("m", "model", model="gpt-4o-mini-longer-name"))
    bump_mtime(path)
    second = scan(tree, cache)
    assert second.parsed == 1
    assert second.documents["models/m.yaml"]["config"] == {"model": "gpt-4o-mini-longer-name"}
    assert second.documents["tools/t.yaml"]["config"] == {"name": "t"}


def test_same_size_edit_with_new_mtime_is_seen(tree, cache):
    scan(tree, cache)
    path = tree / "tools/t.yaml"
    path.write_text(path.read_text().replace('"t"', '"u"'))
    bump_mtime(path)
    second = scan(tree, cache)
    assert second.parsed == 1
    assert second.documents["tools/t.yaml"]["config"] == {"name": "u"}


def test_replacing_a_file_with_a_new_inode_is_seen(tree, cache):
    scan(tree, cache)
    path = tree / "tools/t.yaml"
    st = path.stat()
    tmp = write(tree, "tools/t.tmp", component("t", "tool", name="v"))
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime and size, new inode
    second = scan(tree, cache)
    assert second.parsed == 1
    assert second.documents["tools/t.yaml"]["config"] == {"name": "v"}


def test_added_and_removed_files(tree, cache):
    scan(tree, cache)
    write(tree, "tools/new.yml", component("new"))
    (tree / "models/m.yaml").unlink()
    second = scan(tree, cache)
    assert second.parsed == 1
    assert sorted(second.documents) == ["agents/a.json", "tools/new.yml", "tools/t.yaml"]
    third = scan(tree, cache)
    assert third.parsed == 0
    assert third.documents == second.documents


def test_corrupt_or_old_cache_means_a_full_rescan(tree, cache):
    first = scan(tree, cache)
    cache.write_text("{not json")
    again = scan(tree, cache)
    assert again.parsed == 3
    assert again.documents == first.documents
    cache.write_text(json.dumps({"version": -1, "files": {}}))
    assert scan(tree, cache).parsed == 3
    assert scan(tree, cache).parsed == 0


def test_cached_parse_error_is_still_reported(tree, cache):
    write(tree, "agents/bad.yaml", "label: x\n  provider: : y\n")
    first = scan(tree, cache)
    err = first.documents["agents/bad.yaml"]
    assert isinstance(err, ConfigError)
    assert err.path == "agents/bad.yaml"
    assert "line 2" in err.message
    second = scan(tree, cache)
    assert second.parsed == 0
    assert second.documents["agents/bad.yaml"] == err
    assert isinstance(second.documents["agents/bad.yaml"], ConfigError)


def test_cached_error_with_field_and_non_utf8_are_still_reported(tree, cache):
    write(tree, "a.yaml", b"label: caf\xe9\n")
    write(tree, "b.yaml", "config:\n  opts: {1: x}\n")
    first = scan(tree, cache)
    second = scan(tree, cache)
    assert second.parsed == 0
    for rel in ("a.yaml", "b.yaml"):
        assert isinstance(second.documents[rel], ConfigError)
        assert second.documents[rel] == first.documents[rel]
    assert second.documents["b.yaml"].field == "config.opts"


def test_unquoted_date_survives_the_cache(tree, cache):
    write(tree, "tools/dated.yaml", component("dated") + "created: 2024-05-01\n")
    first = scan(tree, cache)
    assert first.documents["tools/dated.yaml"]["created"] == "2024-05-01"
    second = scan(tree, cache)
    assert second.parsed == 0
    assert second.documents == first.documents


def test_a_fixed_file_is_no_longer_an_error(tree, cache):
    path = write(tree, "agents/bad.yaml", "label: [\n")
    assert isinstance(scan(tree, cache).documents["agents/bad.yaml"], ConfigError)
    write(tree, "agents/bad.yaml", component("bad", "agent"))
    bump_mtime(path)
    second = scan(tree, cache)
    assert second.parsed == 1
    assert second.documents["agents/bad.yaml"]["label"] == "bad"


def test_hidden_files_and_directories_are_skipped(tree, cache):
    write(tree, ".git/config.yaml", component("git"))
    write(tree, ".hidden.yaml", component("hidden"))
    write(tree, "models/.cache/m2.yaml", component("m2"))
    write(tree, "models/.draft.json", "{}")
    result = scan(tree, cache)
    assert sorted(result.documents) == ["agents/a.json", "models/m.yaml", "tools/t.yaml"]


def test_only_config_suffixes_are_read(tree):
    write(tree, "notes.txt", "label: x\n")
    write(tree, "tools/t.yaml.bak", "x")
    write(tree, "tools/t2.yml", component("t2"))
    assert sorted(scan(tree).documents) == ["agents/a.json", "models/m.yaml", "tools/t.yaml", "tools/t2.yml"]


def test_suffixes_are_read_in_any_case(tree):
    write(tree, "tools/UPPER.YML", component("upper"))
    write(tree, "agents/B.Json", json.dumps({"provider": "pkg.agent", "label": "b", "config": {}}))
    result = scan(tree)
    assert result.documents["tools/UPPER.YML"]["label"] == "upper"
    assert result.documents["agents/B.Json"]["label"] == "b"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"drafts/\n\\\n", "line 2: Invalid git pattern"),
        (b"drafts/\nteams/[z-a]*\n", "line 2: bad character range z-a"),  # Python's re refuses it
        (b"\xff\xfe\n", "not UTF-8 text"),
        (None, "not a regular file"),  # a FIFO: reading it would block forever
    ],
)
def test_an_ignore_file_that_cannot_be_used_is_an_error_naming_it(tree, content, said):
    path = tree / ".producerignore"
    if content is None:
        os.mkfifo(path)
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidInput) as raised:
        scan(tree)
    assert str(raised.value).startswith(f"{path}: ") and said in str(raised.value)


def test_producerignore(tree, cache):
    write(
        tree,
        ".producerignore",
        "\n".join(
            [
                "# comments and blank lines are fine",
                "",
                "drafts/",
                "*.bak.yaml",
                "agents/old.yaml",
                "/archive",
            ]
        )
        + "\n",
    )
    write(tree, "drafts/d.yaml", component("d"))
    write(tree, "models/drafts/d2.yaml", component("d2"))
    write(tree, "tools/x.bak.yaml", component("x"))
    write(tree, "agents/old.yaml", component("old"))
    write(tree, "archive/z.yaml", component("z"))
    write(tree, "tools/old.yaml", component("old-tool"))
    result = scan(tree, cache)
    assert sorted(result.documents) == ["agents/a.json", "models/m.yaml", "tools/old.yaml", "tools/t.yaml"]


def test_dir_only_pattern_does_not_ignore_files(tree):
    write(tree, ".producerignore", "t.yaml/\n")
    assert "tools/t.yaml" in scan(tree).documents


def test_symlink_to_a_file_outside_the_tree_is_not_followed(tree, tmp_path, cache):
    outside = write(tmp_path / "outside", "secret.yaml", component("secret"))
    (tree / "tools/link.yaml").symlink_to(outside)
    result = scan(tree, cache)
    assert "tools/link.yaml" not in result.documents
    assert "outside" in result.skipped["tools/link.yaml"]
    assert result.parsed == 3
    assert not any(isinstance(d, dict) and d.get("label") == "secret" for d in result.documents.values())


def test_relative_symlink_escaping_the_tree_is_not_followed(tree, tmp_path):
    write(tmp_path / "outside", "secret.yaml", component("secret"))
    (tree / "models/rel.yaml").symlink_to(Path("../../outside/secret.yaml"))
    result = scan(tree)
    assert "models/rel.yaml" not in result.documents
    assert "models/rel.yaml" in result.skipped


def test_a_link_that_leads_nowhere_is_reported_whatever_its_name(tree):
    """A folder's link (a submodule not checked out) hid the files that were in it, silently."""
    (tree / "teams").symlink_to("nonexistent-dir", target_is_directory=True)
    (tree / "models/gone.yaml").symlink_to("nowhere.yaml")
    result = scan(tree)
    assert result.unread["teams"] == result.unread["models/gone.yaml"] == "cannot follow: No such file or directory"


def test_symlink_to_a_directory_outside_the_tree_is_not_followed(tree, tmp_path):
    write(tmp_path / "outside", "secret.yaml", component("secret"))
    (tree / "shared").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = scan(tree)
    assert "shared" in result.skipped
    assert not any(k.startswith("shared/") for k in result.documents)


def test_sibling_directory_with_common_prefix_counts_as_outside(tree, tmp_path):
    sibling = write(tmp_path / "tree-evil", "s.yaml", component("s"))
    (tree / "s.yaml").symlink_to(sibling)
    result = scan(tree)
    assert "s.yaml" not in result.documents
    assert "s.yaml" in result.skipped


def test_a_symlink_inside_the_tree_is_followed_and_a_file_it_leads_to_is_read_once(tree, cache):
    """A link to a file the walk reads under its own name too made two files of one label: both
    were refused as duplicates, and the file itself stopped syncing."""
    write(tree / ".shared", "x.yaml", component("x"))  # a hidden folder: reached only by its link
    (tree / "models/x.yaml").symlink_to(Path("../.shared/x.yaml"))
    (tree / "alias.yaml").symlink_to(tree / "models/m.yaml")
    (tree / "more").symlink_to(Path("tools"), target_is_directory=True)
    result = scan(tree, cache)
    assert result.documents["models/x.yaml"]["label"] == "x"
    assert {"models/m.yaml", "tools/t.yaml"} <= set(result.documents)
    assert "alias.yaml" not in result.documents and "more/t.yaml" not in result.documents
    assert result.skipped == {
        "alias.yaml": "is 'models/m.yaml' through a symlink; read once, under that name",
        "more/t.yaml": "is 'tools/t.yaml' through a symlink; read once, under that name",
    }
    assert build_tree(result.documents, {}).errors == []


def test_a_file_reached_only_through_symlinks_is_read_once(tree, cache):
    """Its own name hidden (or ignored), a file two links lead to was read twice: both refused as
    duplicates of one label, and the component lost."""
    write(tree / ".hidden", "x.yaml", component("x"))
    (tree / "x1.yaml").symlink_to(Path(".hidden/x.yaml"))
    (tree / "x2.yaml").symlink_to(Path(".hidden/x.yaml"))
    (tree / "hid").symlink_to(Path(".hidden"), target_is_directory=True)
    (tree / "toolink").symlink_to(Path("tools"), target_is_directory=True)  # a sibling: no loop
    result = scan(tree, cache)
    assert result.documents["hid/x.yaml"]["label"] == "x"
    assert "x1.yaml" not in result.documents and "x2.yaml" not in result.documents
    assert result.skipped["x1.yaml"] == "is 'hid/x.yaml' through a symlink; read once, under that name"
    assert build_tree(result.documents, {}).errors == []
    said = result.skipped.get("toolink") or result.skipped.get("tools/t.yaml") or result.skipped.get("toolink/t.yaml")
    assert said is not None and "loop" not in said, result.skipped


def test_symlink_loop_terminates(tree):
    (tree / "models/loop").symlink_to(tree, target_is_directory=True)
    result = scan(tree)
    assert {"agents/a.json", "models/m.yaml", "tools/t.yaml"} <= set(result.documents)
    assert len(result.documents) < 10


def test_scanning_the_examples_directory():
    examples = Path(__file__).resolve().parent.parent / "examples"
    result = scan(examples)
    assert result.skipped == {}
    assert len(result.documents) == result.parsed >= 7
    assert all(isinstance(d, dict) for d in result.documents.values())


def test_producerignore_follows_gitignore_rules(tree):
    write(tree, ".producerignore", "tools/*\n!tools/keep.yaml\n**/scratch/**\n")
    write(tree, "tools/keep.yaml", component("keep"))
    write(tree, "agents/scratch/deep/s.yaml", component("s"))
    assert sorted(scan(tree).documents) == ["agents/a.json", "models/m.yaml", "tools/keep.yaml"]


def test_producerignore_is_read_as_git_reads_it_a_bom_and_crlf_included(tree):
    """Editors on Windows write a BOM and CRLF: git still honours the first pattern, and so do we."""
    write(tree, "tools/keep.yaml", component("keep"))
    (tree / ".producerignore").write_bytes(b"\xef\xbb\xbftools/*\r\n!tools/keep.yaml\r\nmodels/\r\n")
    assert sorted(scan(tree).documents) == ["agents/a.json", "tools/keep.yaml"]


def test_a_resident_scan_sees_what_a_fresh_one_sees_through_edits_and_another_process_rewriting_the_cache(tree, cache):
    """producer watch keeps its last scan (ScanMemo): each scan with it gives the documents, facts
    and parse count a scan without it gives, also when another sync of the tree rewrote the cache."""
    memo = ScanMemo()

    def as_data(facts: dict) -> dict:  # as the cache holds them (tuples read back as lists)
        return {rel: json.loads(json.dumps(f.to_json())) for rel, f in facts.items()}

    def both() -> None:
        kept = scan(tree, cache, memo=memo)
        memo.save()  # the cache files, written once the watch said its sync
        assert memo.valid(cache)
        fresh = scan(tree, cache)  # reads the cache the resident scan wrote: nothing to parse
        assert fresh.parsed == 0
        assert dict(kept.documents) == dict(fresh.documents) and as_data(kept.facts) == as_data(fresh.facts)

    both()
    write(tree, "tools/t.yaml", component("t", "tool", name="t2"))
    bump_mtime(tree / "tools/t.yaml")
    edited = scan(tree, cache, memo=memo)
    assert edited.parsed == 1 and edited.documents["tools/t.yaml"]["config"]["name"] == "t2"
    again = scan(tree, cache, memo=memo)  # before the last one's cache files are written: read as they must be
    assert again.parsed == 1 and dict(again.documents) == dict(edited.documents)
    both()
    write(tree, "tools/new.yml", component("new"))
    (tree / "models/m.yaml").unlink()
    both()
    # another process's sync changes the cache under the resident one: its memo is no longer trusted
    write(tree, "models/m.yaml", component("m", "model", model="gpt-5"))
    scan(tree, cache)
    assert not memo.valid(cache)
    after = scan(tree, cache, memo=memo)
    assert after.parsed == 0 and after.documents["models/m.yaml"]["config"]["model"] == "gpt-5"
    both()


def test_a_watch_holds_changes_until_the_files_settle_or_are_saved_too_long_without_pause():
    """`producer watch --debounce` settles above watchfiles, which wakes every tick whatever the
    debounce (a debounce of 8 s made Ctrl-C and a hand-off wait 8 s)."""
    from producer.watch import _Settle

    settle = _Settle(quiet=1.0)
    a, b = (1, "a.yaml"), (2, "b.yaml")
    assert settle.add({a}, 0.0) == set()
    assert settle.add(set(), 0.5) == set()
    assert settle.add({b}, 0.9) == set()  # still changing: held
    assert settle.add(set(), 1.8) == set()
    assert settle.add(set(), 2.0) == {a, b}  # quiet for a second: both, once
    assert settle.add(set(), 5.0) == set()
    # saved every 0.9 s, never quiet for a second: out after ten debounces all the same
    got = [settle.add({a}, t * 0.9) for t in range(10, 23)]
    assert got == [set()] * 12 + [{a}]


def test_a_file_deleted_between_the_walk_and_its_read_is_not_there(tree, cache, monkeypatch):
    """A checkout or an editor's save removes a file while the tree is scanned: it is gone, not an
    error (an error would fail the sync for a file nobody has)."""
    from producer.walk import Walks

    walked = Walks().walked(tree)  # as the command's first look walked it
    (tree / "tools" / "t.yaml").unlink()
    result = scan(tree, cache, walked=walked)
    assert "tools/t.yaml" not in result.documents and set(result.documents) == {"models/m.yaml", "agents/a.json"}
    assert not any(isinstance(doc, ConfigError) for doc in result.documents.values())
