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
