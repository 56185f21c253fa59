"""Making names safe for where they are shown: a terminal, a plot, Markdown, a CSV cell.

Meter names, phase names, device identities and workload parameters come from URIs, from
devices and from user commands; any of them may carry terminal escape sequences, Markdown
or HTML, a spreadsheet formula or matplotlib mathtext.  Each function here takes any value
and returns text that shows it literally (or as near as that medium allows) and cannot act.
Ordinary names (letters, digits, ``.-_:/+``, spaces) come back unchanged.

* :func:`terminal_text` -- printing to a terminal: no C0/C1 control characters, no ANSI
  CSI / OSC / DCS sequences, no bidi overrides, bounded length;
* :func:`plot_text` -- text for matplotlib (titles, labels, legends): as terminal_text; draw
  it with ``parse_math=False`` (see :mod:`analysis.plots`) so ``$...$`` stays literal;
* :func:`markdown_text` -- a name inside Markdown (also inside a table cell): HTML ``<>&``
  escaped, Markdown metacharacters backslash-escaped;
* :func:`csv_cell` / :func:`csv_row` -- a CSV cell a spreadsheet will not run as a formula.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

__all__ = ["csv_cell", "csv_row", "markdown_text", "plot_text", "strip_controls", "terminal_text"]

# ESC- and 8-bit-introduced sequences, whole: CSI (ESC [ / 0x9b), OSC (ESC ] / 0x9d, ended by
# BEL, ST or the first other control), DCS/SOS/PM/APC (ESC P X ^ _ / 0x90 0x98 0x9e 0x9f, ended
# by ST), and the two- and three-character escapes (ESC c, ESC ( B, ESC 7, ...).
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x00-\x1f\x7f-\x9f]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x00-\x1f\x7f-\x9f]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# bidi embeddings, overrides, isolates and marks: they reorder what is shown after them
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_SPACES = frozenset("\t\n\r\v\f\u2028\u2029\x85")


def strip_controls(value: Any) -> str:
    """``str(value)`` without escape sequences, control characters, bidi controls and lone
    surrogates; tabs, newlines and other line breaks become one space each."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the ordinary case: nothing to do
        return text
    text = _SEQUENCES.sub("", text)
    out = []
    for ch in text:
        if ch in _SPACES:
            out.append(" ")
        elif ch in _BIDI:
            continue
        elif unicodedata.category(ch) in ("Cc", "Cs"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def _shorten(text: str, max_len: int | None) -> str:
    if max_len is None or len(text) <= max_len:
        return text
    return text[: max(0, max_len - 1)] + "\u2026"


def terminal_text(s: Any, max_len: int | None = 200) -> str:
    """``s`` safe to print on a terminal: ANSI/OSC/DCS escape sequences and C0/C1 control
    characters dropped (tab, CR, LF become a space), bidi overrides and isolates dropped,
    printable Unicode kept; longer than ``max_len`` characters: cut, ending in an ellipsis
    (``None``: no limit)."""
    return _shorten(strip_controls(s), max_len)


def plot_text(s: Any, max_len: int | None = 80) -> str:
    """A name for a figure: :func:`terminal_text`, at most ``max_len`` characters.  Draw it
    with ``parse_math=False`` so that ``$`` is a dollar sign, not mathtext."""
    return terminal_text(s, max_len)


_MD_META = re.compile(r"([\\`*\[\]|#~])")
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))")


def markdown_text(s: Any) -> str:
    """``s`` shown literally in Markdown (a paragraph or a table cell): control characters
    dropped, ``<>&`` HTML-escaped, ``\\ ` * [ ] | # ~`` backslash-escaped, ``_`` too unless
    inside a word (``mobilenet_v2`` stays as it is), a leading ``-``, ``+``, ``=`` or ``1.``
    escaped so that it starts no list or heading."""
    text = html.escape(strip_controls(s), quote=False)
    text = _MD_META.sub(r"\\\1", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    m = _MD_LINE_START.match(text)
    if m:
        lead, mark = m.group(1), m.group(2)
        rest = text[m.end():]
        text = f"{lead}\\{mark}{rest}" if not mark[0].isdigit() else f"{lead}{mark}\\{rest}"
    return text


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, not runs as a formula: a string starting
    (after blanks) with ``= + - @``, a tab, CR, LF or ``|`` gets a leading single quote
    (``'=HYPERLINK(...)``), unless it is a plain number (``-1.5``).  Anything that is not a
    string (numbers, None) is returned as it is."""
    if not isinstance(value, str):
        return value
    head = value.lstrip(" ")
    if head.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value.strip()):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """:func:`csv_cell` of each value."""
    return [csv_cell(v) for v in values]
