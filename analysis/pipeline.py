"""One pass over a session: series -> lags -> windows -> pairs, computed once.

:func:`analyse` returns an :class:`Analysis`, which :func:`analysis.summary.summarize`
(the ``summary.json`` figures), :func:`window_table` (``calibrate fit/correct``) and
:func:`analysis.report.render_html` (the trace plots) all read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.lags import ChannelLag, channel_lag
from analysis.load import SessionData
from analysis.pairing import (
    Pairing,
    comparison_cuts,
    default_window_s,
    paired_windows,
    parse_candidate,
)
from analysis.series import Series, series_of
from analysis.windows import check_window_count

__all__ = ["Analysis", "analyse", "pick_reference", "window_table"]


@dataclass
class Analysis:
    """What one session's analysis computed (times s, powers W, energies J).

    ``series``: every channel with at least 2 good samples; ``left_out``: the others;
    ``lags``: each candidate component's applied lag; ``window_s``: the comparison
    window; ``boundaries_s``/``exclude_s``: phase boundaries trimmed after and gaps
    skipped; ``pairings``: one per candidate expression, in the order given;
    ``warnings``: what the lag estimation said (in the order the lags were computed).
    """

    data: SessionData
    reference: str
    series: dict[str, Series]
    lags: dict[str, ChannelLag]
    window_s: float
    boundaries_s: list[float]
    exclude_s: list[tuple[float, float]]
    pairings: dict[str, Pairing]
    left_out: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def pick_reference(data: SessionData, requested: str | None = None) -> str:
    """The reference channel id: ``requested`` (a channel id or a meter name with one
    channel), else the manifest's (named when the session was recorded), else the first
    measured wall meter, else the first measured channel.

    A modelled channel is the reference only when named (``requested`` or the manifest):
    ValueError (one line) when no measured channel is there to default to.
    """
    ids = list(data.channels)

    def channel_named(name: str) -> str | None:  # a channel id, or a meter with one channel
        if name in data.channels:
            return name
        matches = [c for c in ids if data.channels[c].meter == name]
        return matches[0] if len(matches) == 1 else None

    if requested:
        found = channel_named(requested)
        if found is None:
            raise ValueError(f"no channel {requested!r} in this session; channels: {', '.join(ids)}")
        return found
    manifest_ref = data.manifest.get("reference")
    found = channel_named(manifest_ref) if manifest_ref else None
    if found is not None:
        return found
    # the first wall meter in the order the meters were given (the manifest's order)
    order = [ch["id"] for m in data.manifest.get("meters", []) for ch in m.get("channels", [])]
    ids = [c for c in order if c in data.channels] + [c for c in ids if c not in order]
    measured = [c for c in ids if data.channels[c].source == "measured"]
    walls = [c for c in measured if data.channels[c].scope == "wall"]
    if walls or measured:
        return (walls or measured)[0]
    raise ValueError(f"no measured channel to be the reference (every channel is modelled: {', '.join(ids)}); "
                     "name one with --reference to compare estimates with each other (it is then labelled modelled)")


def analyse(data: SessionData, reference: str | None = None, candidates: list[str] | None = None,
            window_s: float | None = None, max_lag_s: float = 30.0) -> Analysis:
    """Series of every usable channel, the reference, each candidate component's lag (s),
    the comparison window (s) and each candidate's pairs.

    ``candidates``: channel ids or sums (``"a+b"``); default every other usable channel.
    Raises ValueError (one line) for an unknown reference/candidate or no usable channel.
    A candidate whose windows cannot be formed gets a :class:`Pairing` with ``error``.
    """
    series = {cid: series_of(tr) for cid, tr in data.channels.items() if len(tr.ok) >= 2}
    left_out = [cid for cid in data.channels if cid not in series]
    if not series:
        raise ValueError("no channel has at least 2 good samples")
    ref_id = pick_reference(data, reference)
    if ref_id not in series:
        raise ValueError(f"reference {ref_id} has fewer than 2 good samples")
    ref = series[ref_id]
    known = list(series)
    cand_exprs = candidates or [c for c in known if c != ref_id]
    cands = {expr: parse_candidate(expr, known) for expr in cand_exprs}
    all_ids = {ref_id, *[c for parts in cands.values() for c in parts]}
    win = float(window_s) if window_s else default_window_s([series[c] for c in all_ids])
    check_window_count(win, float(ref.t_s[-1] - ref.t_s[0]))  # before any window is cut

    warnings: list[str] = []
    own = data.status == "imported"
    lags = {cid: channel_lag(ref, series[cid], max_lag_s, warnings,
                             own or bool(data.channels[cid].info.get("own_clock")))
            for cid in sorted({c for parts in cands.values() for c in parts})}
    boundaries, exclude = comparison_cuts(data.phases(), win, [series[c] for c in all_ids])
    pairings: dict[str, Pairing] = {}
    for expr, parts in cands.items():
        try:
            wins, ref_w, comp_w = paired_windows(ref, {c: series[c] for c in parts}, lags, win, boundaries, exclude)
            pairings[expr] = Pairing(expr, parts, wins, ref_w, comp_w)
        except ValueError as exc:
            pairings[expr] = Pairing(expr, parts, error=str(exc))
    return Analysis(data, ref_id, series, lags, win, boundaries, exclude, pairings, left_out, warnings)


def window_table(data: SessionData, reference: str | None, components: list[str],
                 window_s: float | None = None, max_lag_s: float = 30.0) -> pd.DataFrame:
    """Tidy per-window mean power (W) of the reference and each component, lag-aligned.

    Columns: t0_s, t1_s (s), reference, one per component (W); attrs hold the reference,
    the window (s), the lags (their ``to_dict()``) and the warnings.
    """
    ref_id = pick_reference(data, reference)
    ids = [ref_id, *components]
    missing = [c for c in ids if c not in data.channels or len(data.channels[c].ok) < 2]
    if missing:
        raise ValueError(f"{data.path}: no usable channel {missing[0]!r}; channels: {', '.join(data.channels)}")
    res = analyse(data, ref_id, ["+".join(components)], window_s, max_lag_s)
    pairing = next(iter(res.pairings.values()))
    if pairing.error is not None:
        raise ValueError(pairing.error)
    wins = pairing.windows_s
    df = pd.DataFrame({"t0_s": wins[:, 0], "t1_s": wins[:, 1], "reference": pairing.reference_w,
                       **pairing.component_w})
    df.attrs.update({"reference": ref_id, "window_s": res.window_s,
                     "lags": {c: res.lags[c].to_dict() for c in components}, "warnings": res.warnings})
    return df
