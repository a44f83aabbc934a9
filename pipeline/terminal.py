"""Text bound for a terminal: names and reasons come from files, folders and metadata that
anyone may have named, and a name holding `ESC[2J` or a right-to-left override must print
as those characters' escapes, not act on the terminal."""

from __future__ import annotations

import unicodedata

# Unicode's bidirectional controls: they reorder the text around them, so that what prints
# is not what the name says.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """`text` with every control character (C0, DEL, C1, line and paragraph separators,
    bidirectional controls) written as its Python escape, e.g. `\\x1b`, `\\n`, `\\u202e`."""
    return "".join(_escaped(char) for char in str(text))


def _escaped(char: str) -> str:
    if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        return ascii(char)[1:-1]
    return char
