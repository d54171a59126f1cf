"""Hostile and odd files beside valid teams: each is named with its reason, nothing stalls or
runs code from a YAML tag, and every valid team still reaches Studio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, Cli

pytestmark = pytest.mark.integration

VALID_TEAMS = 5


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\nprovider: x.Tool\ncomponent_type: tool\nlabel: bomb\n"


def hostile_files(root: Path, marker: Path) -> dict[str, str]:
    """Write the hostile files; returns relpath -> a word the error must contain."""
    team = "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\n"
    text: dict[str, str | bytes] = {
        "bomb.yaml": _bomb(),
        "tag.yaml": f'!!python/object/apply:os.system ["touch {marker}"]\n',
        "tag-value.yaml": f'label: t\nprovider: x\ncomponent_type: tool\nconfig: !!python/object/apply:os.system ["touch {marker}"]\n',
        "recursive.yaml": "label: r\nprovider: x\ncomponent_type: tool\nconfig: &x [1, *x]\n",
        "deep.json": '{"label": "d", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        "deep.yaml": "label: d2\nx: " + "[" * 5000 + "]" * 5000 + "\n",
        "latin1.yaml": "label: caf\xe9\n".encode("latin-1"),
        "empty.yaml": "",
        "two-docs.yaml": "label: a\n---\nlabel: b\n",
        "list.yaml": "- 1\n- 2\n",
        "dupkey.yaml": "label: k\nlabel: k2\n",
        "bad.json": '{"label": "j",',
        "bad.yaml": "label: [unclosed\n",
        "unknown-type.yaml": "provider: x.Y\ncomponent_type: spaceship\nlabel: ship\n",
        "no-label.yaml": "provider: x.Y\ncomponent_type: tool\n",
        "dup-label-1.yaml": "provider: x.Y\ncomponent_type: tool\nlabel: twin\nconfig: {}\n",
        "dup-label-2.yaml": "provider: x.Y\ncomponent_type: tool\nlabel: twin\nconfig: {}\n",
        "ghost-ref.yaml": team + "label: ghost-team\nconfig: {participants: [{$ref: nobody}]}\n",
        "cycle-1.yaml": team + "label: c1\nconfig: {participants: [{$ref: c2}]}\n",
        "cycle-2.yaml": team + "label: c2\nconfig: {participants: [{$ref: c1}]}\n",
        "unset-var.yaml": "provider: x.Y\ncomponent_type: model\nlabel: unset\nconfig: {model: m, api_key: '${AGENTQ_SURELY_UNSET_VAR}'}\n",
        "ref-extra.yaml": team + "label: extra\nconfig: {participants: [{$ref: a, x: 1}]}\n",
        "label-number.yaml": "provider: x.Y\ncomponent_type: tool\nlabel: 42\n",
        "provider-list.yaml": "provider: [a, b]\ncomponent_type: tool\nlabel: plist\n",
        "nul.yaml": b"label: n\x00\x01\x02\n",
        "binary.yaml": "label: bin\nprovider: x\ncomponent_type: tool\nconfig: !!binary aGVsbG8=\n",
        "set.yaml": "label: s\nprovider: x\ncomponent_type: tool\nconfig: !!set {a, b}\n",
        "int-key.yaml": "label: ik\nprovider: x\ncomponent_type: tool\nconfig: {1: x}\n",
        "big.yaml": "label: big\nx: " + "a" * (6 * 1024 * 1024) + "\n",
        # values Python refuses to convert, and values JSON cannot carry
        "long-int.json": '{"label": "li", "provider": "x.Y", "component_type": "tool", "config": {"n": '
        + "9" * 5000
        + "}}",
        "long-hex.yaml": "label: lh\nprovider: x.Y\ncomponent_type: tool\nconfig: {n: 0x" + "f" * 5000 + "}\n",
        "bad-int-tag.yaml": "label: bi\nprovider: x.Y\ncomponent_type: tool\nconfig: {n: !!int abc}\n",
        "nan.yaml": "label: nan\nprovider: x.Y\ncomponent_type: model\nconfig: {model: m, temperature: .nan}\n",
        "infinity.json": '{"label": "inf", "provider": "x.Y", "component_type": "tool", "config": {"x": Infinity}}',
        "dupkey.json": '{"label": "dj", "provider": "x.Y", "component_type": "tool", "label": "dj2"}',
        "crowd.yaml": team + "label: crowd\nconfig:\n  participants: [" + ", ".join(["{$ref: a}"] * 5000) + "]\n",
        "inline-crowd.yaml": team
        + "label: inline-crowd\nconfig:\n  participants: ["
        + ", ".join(["{name: x}"] * 150)
        + "]\n",
        # small on disk, huge once inlined: 8 levels of 10 references to the one below (10^8 copies)
        **{
            f"fan{i}.yaml": "provider: x.Y\ncomponent_type: tool\n"
            + f"label: fan{i}\nconfig: {{parts: ["
            + ", ".join([f"{{$ref: fan{i - 1}}}"] * 10)
            + "]}\n"
            for i in range(1, 9)
        },
        "fan0.yaml": "provider: x.Y\ncomponent_type: tool\nlabel: fan0\nconfig: {text: " + "x" * 200 + "}\n",
        "fan-team.yaml": team + "label: fan-team\nconfig: {participants: [{$ref: fan8}]}\n",
    }
    for rel, content in text.items():
        (root / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    os.mkfifo(root / "fifo.yaml")
    os.symlink("loop-b.yaml", root / "loop-a.yaml")
    os.symlink("loop-a.yaml", root / "loop-b.yaml")
    os.symlink("missing-target.yaml", root / "dangling.yaml")
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")
    return {
        "bomb.yaml": "MAX_EXPANDED_VALUES",
        "tag.yaml": "constructor",
        "tag-value.yaml": "constructor",
        "recursive.yaml": "contains it",
        "deep.json": "MAX_NESTING_DEPTH",
        "deep.yaml": "MAX_NESTING_DEPTH",
        "latin1.yaml": "UTF-8",
        "empty.yaml": "empty",
        "two-docs.yaml": "documents",
        "list.yaml": "mapping",
        "dupkey.yaml": "duplicate",
        "bad.json": "malformed JSON",
        "bad.yaml": "malformed YAML",
        "unknown-type.yaml": "spaceship",
        "no-label.yaml": "label",
        "dup-label-2.yaml": "twin",
        "ghost-ref.yaml": "nobody",
        "cycle-1.yaml": "cycle",
        "unset-var.yaml": "AGENTQ_SURELY_UNSET_VAR",
        "ref-extra.yaml": "$ref",
        "label-number.yaml": "label",
        "provider-list.yaml": "provider",
        "nul.yaml": "",
        "binary.yaml": "bytes",
        "set.yaml": "set",
        "int-key.yaml": "key",
        "big.yaml": "MAX_FILE_BYTES",
        "long-int.json": "4,000 digits",
        "long-hex.yaml": "4,000 digits",
        "bad-int-tag.yaml": "abc",
        "nan.yaml": "NaN",
        "infinity.json": "infinity",
        "dupkey.json": "duplicate key 'label'",
        "fifo.yaml": "FIFO",
        "loop-a.yaml": "symbolic links",
        "loop-b.yaml": "symbolic links",
        "dangling.yaml": "No such file",
        "sub/up": "symlink loop",
        "crowd.yaml": "MAX_REFERENCES",
        "inline-crowd.yaml": "MAX_PARTICIPANTS",
        "fan4.yaml": "MAX_REQUEST_BYTES",
    }


def _valid_tree(root: Path) -> None:
    (root / "model.yaml").write_text(
        "provider: autogen_ext.models.openai.OpenAIChatCompletionClient\ncomponent_type: model\n"
        "label: m\nconfig: {model: gpt-4o-mini, api_key: not-a-real-key}\n"
    )
    (root / "agent.yaml").write_text(
        "provider: autogen_agentchat.agents.AssistantAgent\ncomponent_type: agent\nlabel: a\n"
        "config: {name: a, description: d, reflect_on_tool_use: false, "
        "tool_call_summary_format: '{result}', model_client: {$ref: m}}\n"
    )
    for i in range(VALID_TEAMS):
        (root / f"team{i}.yaml").write_text(
            "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\n"
            f"label: good-{i}\nconfig:\n  participants: [{{$ref: a}}]\n"
        )


def test_hostile_files_are_named_and_never_starve_the_valid_ones(cli: Cli, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    marker = tmp_path / "pwned"
    _valid_tree(tree)
    expected = hostile_files(tree, marker)
    assert len(expected) >= 30

    plan = cli.run("plan", str(tree), "--json", timeout=60)
    data = json.loads(plan.stdout)
    reasons = dict(data["ignored_files"])
    for e in data["errors"]:
        reasons[e["path"]] = (reasons.get(e["path"], "") + " | " + (e["field"] or "") + ": " + e["message"]).strip(" |")
    for rel, word in expected.items():
        assert rel in reasons or any(rel in r for r in data["skipped"].values()), f"{rel} not reported: {reasons}"
        if rel in reasons:
            assert word in reasons[rel], (rel, reasons[rel])

    started = time.monotonic()
    proc = psutil.Popen(
        [sys.executable, "-m", "producer.cli", "sync", str(tree), "--json"],
        env=cli.env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, proc.memory_info().rss)
        assert time.monotonic() - started < 60, "the sync should end within 60 s"
        time.sleep(0.05)
    out, err = proc.communicate()
    assert peak < 500 * 1024 * 1024, f"producer peaked at {peak / 2**20:.0f} MB"
    assert "Traceback" not in err
    assert not marker.exists(), "code from a YAML tag ran"
    teams = cli.studio().teams_by_label()
    assert all(len(teams.get(f"good-{i}", [])) == 1 for i in range(VALID_TEAMS)), sorted(teams)


def test_a_tool_whose_code_exits_as_it_loads_fails_alone(cli: Cli, tmp_path: Path) -> None:
    """A tool whose code raises SystemExit, KeyboardInterrupt or GeneratorExit as AutoGen loads it (validation runs
    it, as Studio does) killed the worker's event loop: the sync, and every later one on that
    worker, hung. It fails, named; the rest syncs."""
    tree = tmp_path / "tree"
    tree.mkdir()
    _valid_tree(tree)
    for label, raised in (("exits", "SystemExit(0)"), ("interrupts", "KeyboardInterrupt"), ("closes", "GeneratorExit")):
        (tree / f"{label}.yaml").write_text(
            "provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\n"
            f"label: {label}\nconfig: {{name: f, description: d, global_imports: [], has_cancellation_support: false, "
            f'source_code: "raise {raised}\\ndef f() -> int:\\n    return 1\\n"}}\n'
        )
    proc = cli.run("sync", str(tree), "--json", "--timeout", "60")
    assert proc.returncode == 1, proc.stderr[-2000:]
    nodes = json.loads(proc.stdout)["nodes"]
    assert "raised SystemExit" in nodes["exits"]["error"], nodes["exits"]
    assert "raised KeyboardInterrupt" in nodes["interrupts"]["error"], nodes["interrupts"]
    assert "raised GeneratorExit" in nodes["closes"]["error"], nodes["closes"]
    assert {nodes[f"good-{i}"]["status"] for i in range(VALID_TEAMS)} == {"done"}
    teams = cli.studio().teams_by_label()
    assert all(len(teams.get(f"good-{i}", [])) == 1 for i in range(VALID_TEAMS)), sorted(teams)


def test_markup_in_names_and_labels_is_printed_as_written(cli: Cli, tmp_path: Path) -> None:
    """Square brackets are rich's markup: a label `[/]` or a file `[b]x.yaml` ended plan and sync
    in a MarkupError traceback. They are shown as written; a label of thousands of characters is
    cut in tables to its end."""
    tree = tmp_path / "[red]tree"
    tree.mkdir()
    (tree / "[b]x.yaml").write_text(
        "provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\nlabel: '[/]tool'\n"
        'config: {source_code: "def f() -> int:\\n    return 1\\n", name: f, description: d, global_imports: []}\n'
    )
    (tree / "team.yaml").write_text(
        "provider: autogen_agentchat.teams.RoundRobinGroupChat\ncomponent_type: team\n"
        "label: '[bold]team'\nconfig: {participants: [{$ref: '[/]missing'}]}\n"
    )
    # control and bidi-override characters: a label could recolour the terminal or set its title
    (tree / "ansi.yaml").write_text(
        'provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\nlabel: "red\\e[31m-title\\e]0;pwned\\a-rtl\\u202e"\n'
        'config: {source_code: "def f() -> int:\\n    return 1\\n", name: f, description: d, global_imports: []}\n'
    )
    # a newline in a label, or in a file's name, would start a line that reads as ours
    (tree / "fake.yaml").write_text(
        'provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\nlabel: "ok\\n  error other.yaml: FAKE"\n'
        'config: {source_code: "def f() -> int:\\n    return 1\\n", name: f, description: d, global_imports: []}\n'
    )
    (tree / "evil\n  error named.yaml: FAKE.yaml").write_text("provider: [")
    giant = "g" * 3000 + "-end"
    (tree / "giant.yaml").write_text(
        f"provider: autogen_core.tools.FunctionTool\ncomponent_type: tool\nlabel: '{giant}'\n"
        'config: {source_code: "def f() -> int:\\n    return 1\\n", name: f, description: d, global_imports: []}\n'
    )
    plan = cli.run("plan", str(tree), timeout=60)
    assert "Traceback" not in plan.stderr, plan.stderr
    assert "[/]tool" in plan.stdout and "[red]tree" in plan.stdout and "[/]missing" in plan.stdout
    sync = cli.run("sync", str(tree), "-v", timeout=120)
    assert "Traceback" not in sync.stderr, sync.stderr
    shown = sync.stdout + sync.stderr
    assert "[/]tool" in shown and "[b]x.yaml" in shown, shown
    assert giant not in plan.stdout + shown and "g-end" in plan.stdout
    for out in (plan.stdout, shown):
        assert "\x1b[31m" not in out and "\x07" not in out and "\u202e" not in out, out
        assert "red\\x1b[31m-title" in out, out  # written as the escape, in the plan and the sync
        assert not any(line.lstrip().startswith("error other.yaml") for line in out.splitlines()), out
        assert not any(line.lstrip().startswith("error named.yaml") for line in out.splitlines()), out
    assert "ok\\n  error other.yaml" in plan.stdout and "evil\\n  error named.yaml" in plan.stdout
