"""Text from a tree or a server as a terminal may be shown it: rich's markup escaped, and control
and bidirectional-override characters written as escapes (a label could otherwise recolour the
terminal, set its title, or reorder the line it is on)."""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # all but tab and newline


def printable(text: str) -> str:
    """`text` with its control and bidi-override characters as escapes (tabs and newlines kept)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def escape(text: str) -> str:
    """printable(text), and rich's markup escaped: for text that rich shows."""
    from rich.markup import escape as markup_escape  # imported when something is shown

    return markup_escape(printable(text))
