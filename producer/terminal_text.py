"""Text from a tree or a server as a terminal may be shown it: rich's markup escaped, and control
and bidirectional-override characters written as escapes (a label could otherwise recolour the
terminal, set its title, or reorder the line it is on)."""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # all but tab and newline
_UNSAFE_IN_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # newlines too


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """`text` with its control and bidi-override characters as escapes (tabs and newlines kept):
    for text that is many lines (a model's answer)."""
    return _UNSAFE.sub(_escaped, text)


def escape(text: str) -> str:
    """`text` on one line (newlines too written as escapes: a label or a server's message cannot
    start a line of its own that reads as ours), and rich's markup escaped: for text rich shows."""
    from rich.markup import escape as markup_escape  # imported when something is shown

    return markup_escape(_UNSAFE_IN_LINE.sub(_escaped, text))
