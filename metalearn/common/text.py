"""Text from files made safe to print: control characters shown as escapes, never obeyed."""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["printable", "printable_json"]

# Characters a terminal may act on instead of showing: C0 and C1 controls (ESC starts colour,
# cursor and screen-clearing sequences, CR rewrites the line), DEL, and Unicode format
# characters (bidirectional overrides reorder what is shown, zero-width ones hide text).
_UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: Any, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control or format character replaced by its escape (``\\x1b``).

    Parameters
    ----------
    text : object
        Converted with ``str``.
    keep_newlines : bool
        Keep ``\\n`` as a line break (for multi-line text this program wrote itself, whose
        values were escaped already).

    Returns
    -------
    str
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        char
        if (keep_newlines and char == "\n") or unicodedata.category(char) not in _UNSAFE_CATEGORIES
        else _escape(char)
        for char in text
    )


def printable_json(text: str) -> str:
    """JSON text with the characters ``json.dumps(ensure_ascii=False)`` leaves raw (C1 controls,
    format characters, line separators) written as ``\\uXXXX`` escapes: still the same JSON."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char not in "\n" and unicodedata.category(char) in _UNSAFE_CATEGORIES:
            code = ord(char)
            if code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:  # a UTF-16 surrogate pair, as JSON spells characters past the BMP
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(char)
    return "".join(out)
