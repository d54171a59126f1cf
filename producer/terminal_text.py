"""Text from a tree or a server as a terminal may be shown it: rich's markup escaped, and control
and bidirectional-override characters written as escapes (a label could otherwise recolour the
terminal, set its title, or reorder the line it is on)."""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # all but tab and newline


def escape(text: str) -> str:
    from rich.markup import escape as markup_escape  # imported when something is shown

    return markup_escape(_UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text))
