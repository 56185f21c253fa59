"""Numbers for people and for JSON: one formatter, one float cleaner.

:func:`fmt_number` is what every table (terminal, Markdown, HTML) prints a number with:
``"-"`` (or ``missing``) for None, NaN and inf.  :func:`finite_or_none` is the single-float
form of :func:`analysis.session_format.json_safe` (strict JSON has no NaN/inf).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = ["finite_or_none", "fmt_number", "is_missing"]


def is_missing(v: Any) -> bool:
    """True for None and for a real number that is NaN or infinite."""
    if v is None:
        return True
    return isinstance(v, Real) and not isinstance(v, bool) and not math.isfinite(float(v))


def finite_or_none(v: Any) -> float | None:
    """``v`` as a plain float, or None when it is None, NaN or infinite."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_number(v: Any, digits: int = 1, unit: str = "", *, missing: str = "-", grouping: bool = True,
               style: str = "f") -> str:
    """``v`` with ``digits`` decimals (``style="f"``) or significant digits (``"g"``) and
    ``unit`` appended (e.g. ``" W"``); thousands separated unless ``grouping`` is False.

    ``missing`` for None/NaN/inf; a value that is not a number is shown as ``str(v)``.
    """
    if is_missing(v):
        return missing
    if not isinstance(v, Real):
        return str(v)
    sep = "," if grouping else ""
    return f"{v:{sep}.{digits}{style}}{unit}"
