"""The report's own ``figures/`` folder in a session: each figure as SVG and PDF and the
window pairs as CSV, for a paper's supplement.

The folder is the report's: it is created with a marker file listing what the report
wrote there, and only those files are ever replaced or removed.  A ``figures`` that the
report did not create (no marker, a symlink, a file) is left alone and nothing is
exported (``FigureFolder.note`` says why).  File names come from :func:`slug`, never
from a channel name as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.session_format import (
    check_path_component,
    safe_name,
    write_bytes_atomic,
    write_text_atomic,
)

__all__ = ["FIGURES_DIR", "MARKER", "FigureFolder", "pairs_csv", "slug"]

FIGURES_DIR = "figures"
MARKER = ".calibrate-figures.json"
FORMAT = "calibrate-figures/1"


def slug(name: str, max_len: int = 40) -> str:
    """A file-name part for ``name`` (a channel or a sum ``a+b``): ``[A-Za-z0-9._-]``, not
    starting with ``.`` or ``-``, at most ``max_len`` characters; when it had to change
    ``name``, a short hash of ``name`` is appended so that two names never share a file."""
    s = safe_name(str(name)).lstrip(".-")[:max_len] or "x"
    if s != name:
        s = f"{s}-{hashlib.sha1(str(name).encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"
    return check_path_component(s, "figure name")


def pairs_csv(windows_s: Sequence[Sequence[float]] | None, reference_w: Sequence[float],
              candidate_w: Sequence[float]) -> str:
    """The window pairs as CSV: ``window_start_s, window_end_s`` (session time, s),
    ``reference_w, candidate_w`` (window mean power, W); a window without its span has
    empty start/end cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["window_start_s", "window_end_s", "reference_w", "candidate_w"])
    spans = list(windows_s or [])
    for i, (r, c) in enumerate(zip(reference_w, candidate_w)):
        a, b = (spans[i][0], spans[i][1]) if i < len(spans) and len(spans[i]) == 2 else ("", "")
        w.writerow([_cell(a), _cell(b), _cell(r), _cell(c)])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None or v == "":
        return ""
    f = float(v)
    return repr(f) if f == f and abs(f) != float("inf") else ""


class FigureFolder:
    """``SESSION/figures``, owned by the report (see the module doc).

    :meth:`write` a file (bytes or text) by name and get its link relative to the
    session folder (None when it was not written); :meth:`finish` removes what an earlier
    report wrote there and this one did not, and records what is there now.
    """

    def __init__(self, session: str | Path) -> None:
        self.session = Path(session)
        self.path = self.session / FIGURES_DIR
        self.note: str | None = None
        self.previous: set[str] = set()
        self.written: list[str] = []
        marker = self.path / MARKER
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            self.note = f"{FIGURES_DIR} in the session folder is not a folder the report made: figures not exported"
        elif self.path.is_dir():
            try:
                data = json.loads(marker.read_text()) if marker.is_file() and not marker.is_symlink() else None
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), list):
                self.note = (f"{FIGURES_DIR}/ in the session folder was not made by calibrate's report: "
                             "left alone, figures not exported")
            else:
                self.previous = {f for f in data["files"] if isinstance(f, str) and _is_plain(f)}
        else:
            try:
                self.path.mkdir()
            except OSError as exc:
                self.note = f"cannot create {FIGURES_DIR}/ ({exc.strerror}): figures not exported"
            else:
                self._save_marker()

    @property
    def usable(self) -> bool:
        """True when files can be exported."""
        return self.note is None

    def _save_marker(self, extra: str | None = None) -> None:
        files = sorted(self.previous | set(self.written) | ({extra} if extra else set()))
        write_text_atomic(self.path / MARKER, json.dumps({"format": FORMAT, "files": files}, indent=1) + "\n")

    def write(self, name: str, content: bytes | str) -> str | None:
        """Write ``figures/name`` (``name`` one safe path component) and return its link,
        relative to the session folder; None when exporting is off or ``name`` there is
        not the report's."""
        if not self.usable:
            return None
        check_path_component(name, "figure file")
        target = self.path / name
        if (target.exists() or target.is_symlink()) and name not in self.previous:
            return None  # someone else's: never overwritten
        if name not in self.previous and name not in self.written:
            self._save_marker(extra=name)  # listed before it exists: a crash leaves nothing unowned
        write_bytes_atomic(target, content.encode("utf-8") if isinstance(content, str) else content)
        if name not in self.written:
            self.written.append(name)
        return f"{FIGURES_DIR}/{name}"

    def finish(self) -> None:
        """Remove the files an earlier report wrote here and this one did not; save the marker."""
        if not self.usable:
            return
        for name in self.previous - set(self.written):
            p = self.path / name
            if p.is_file() and not p.is_symlink():
                p.unlink()
        self.previous = set()
        self._save_marker()


def _is_plain(name: str) -> bool:
    try:
        check_path_component(name)
    except ValueError:
        return False
    return True
