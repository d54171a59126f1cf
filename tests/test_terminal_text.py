"""What a terminal is shown of text from a tree or a server (producer/terminal_text.py)."""

from __future__ import annotations

from producer.terminal_text import escape, printable


def test_control_and_bidi_characters_are_written_as_escapes_and_markup_is_escaped() -> None:
    said = escape("a\x1b[31mred\x1b]0;title\x07 \u202eevil [b]x[/b]\x9b\ttab\nline\u2028sep")
    assert said == "a\\x1b[31mred\\x1b]0;title\\x07 \\u202eevil \\[b]x\\[/b]\\x9b\ttab\\nline\\u2028sep"


def test_text_of_many_lines_keeps_its_lines_and_tabs() -> None:
    assert printable("answer:\n\tstep 1\x1b[2J\r\n") == "answer:\n\tstep 1\\x1b[2J\\r\n"


def test_plain_text_and_other_scripts_are_left_as_they_are() -> None:
    assert escape("équipe-研究 team_1 (v2)") == "équipe-研究 team_1 (v2)"


def test_a_sync_reports_detail_names_the_file_in_its_column_only() -> None:
    """The detail began with the file for the tree's own errors and not for a worker's: the same
    table said the file twice in some rows."""
    from rich.console import Console

    from producer.report import OUTCOMES, render_report

    nodes = {
        "a": {
            "status": "failed",
            "type": "agent",
            "path": "agents/a.yaml",
            "error": "agents/a.yaml: config: bad; agents/a.yaml: config.x: worse",
        },
        "t": {"status": "failed", "type": "team", "path": "teams/t.yaml", "error": "Studio validation failed: x"},
    }
    report = {
        "run_id": "r1",
        "tree": "/t",
        "counts": {o: 2 if o == "failed" else 0 for o in OUTCOMES},
        "nodes": nodes,
        "studio_requests": {},
        "state": "finished",
        "seconds": 1.0,
    }
    console = Console(record=True, width=200)
    render_report(console, report)
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.count("│") > 4}
    assert "│ config: bad; config.x: worse" in rows["a"] and "agents/a.yaml:" not in rows["a"].split("│")[5], rows
    assert "│ Studio validation failed: x" in rows["t"], rows
