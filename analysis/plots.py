"""Figures for reports (matplotlib, Agg backend).  Computing lives elsewhere: each plot
draws given arrays (s, W, J) and summary figures on an ``ax`` (a matplotlib Axes; a new
figure when None) and returns that Axes.  :func:`png` renders a figure at the HTML edge;
:func:`figure_png` draws one plot on a new figure and returns its PNG bytes;
:func:`render` gives one figure in several formats (PNG, SVG, PDF) for export.  Names
(channels, phases, workloads) are drawn as written: controls stripped
(:func:`analysis.escape.plot_text`), never parsed as mathtext (``$x^2$`` is shown as those
five characters), and shortened with an ellipsis where a figure has no room for them.

Every figure is laid out by matplotlib's constrained layout, so that tick labels, axis
labels and legends lie inside the figure; tick labels are few enough not to overlap
(at most ``MAX_TICKS`` per axis, scientific offsets for large or tiny values).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from analysis.escape import plot_text
from analysis.numbers import fmt_number, is_missing

__all__ = ["FIGSIZE", "bland_altman_plot", "figure_png", "leaf_phases", "new_axes", "pareto_front", "pareto_plot",
           "phase_depths", "phase_energy_figsize", "phase_energy_plot", "png", "power_traces", "render",
           "residuals_plot", "scatter_fit"]

FIGSIZE = {"power_traces": (10, 4), "scatter_fit": (4.6, 4.2), "bland_altman_plot": (4.6, 4.2),
           "residuals_plot": (4.6, 3.0), "pareto_plot": (5.5, 4)}
MAX_TICKS = 6  # major ticks per axis at most
NAME_LEN = 36  # a channel name in an axis label or legend (characters)
PHASE_LEN = 28  # a phase name on the phase bar chart's axis
MAX_PHASE_BARS = 40  # phases drawn on the bar chart (the table has them all)
DPI = 110


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _literal_legend(legend: Any) -> Any:
    """Legend entries are names: shown as written, never parsed as mathtext."""
    if legend is not None:
        for t in legend.get_texts():
            t.set_parse_math(False)
    return legend


def _name(s: Any, max_len: int = NAME_LEN) -> str:
    return plot_text(s, max_len)


def _num(v: Any, digits: int = 1) -> str:
    return fmt_number(v, digits, missing="\u2013")


def _tidy_ticks(ax: Any, x: bool = True, y: bool = True, xbins: int = MAX_TICKS, ybins: int = MAX_TICKS) -> None:
    """Few major ticks, and an offset or a power of ten for values over 10^4 or under
    10^-3, so that tick labels stay short and do not run into each other."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for on, axis, bins in ((x, ax.xaxis, xbins), (y, ax.yaxis, ybins)):
        if not on:
            continue
        axis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]))
        fmt = ScalarFormatter(useOffset=True, useMathText=False)
        fmt.set_powerlimits((-3, 4))
        axis.set_major_formatter(fmt)


def new_axes(figsize: tuple[float, float]) -> Any:
    """A new figure of ``figsize`` (inches), constrained layout, with one Axes; returns the Axes."""
    _, ax = _plt().subplots(figsize=figsize, layout="constrained")
    return ax


def render(fig: Any, formats: Sequence[str] = ("png",), close: bool = True) -> dict[str, bytes]:
    """The figure in each of ``formats`` (``png`` at 110 dpi, ``svg``, ``pdf``) as bytes;
    closed afterwards unless ``close`` is False.  No timestamps in SVG/PDF (reproducible files)."""
    out: dict[str, bytes] = {}
    try:
        for f in formats:
            buf = io.BytesIO()
            meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(f)
            fig.savefig(buf, format=f, dpi=DPI, metadata=meta)
            out[f] = buf.getvalue()
            if fig.get_layout_engine() is not None:  # laid out once: the other formats keep it
                fig.set_layout_engine("none")
    finally:
        if close:
            _plt().close(fig)
    return out


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (110 dpi); the figure is closed."""
    return render(fig, ("png",))["png"]


def figure_png(plot: Callable[..., Any], *args: Any, figsize: tuple[float, float] | None = None,
               **kwargs: Any) -> bytes:
    """Draw ``plot(*args, **kwargs)`` on a new figure (its usual size unless ``figsize``) as PNG."""
    ax = new_axes(figsize or FIGSIZE[plot.__name__])
    plot(*args, ax=ax, **kwargs)
    return png(ax.figure)


# --------------------------------------------------------------------------- phases
def phase_depths(phases: Sequence[Any]) -> list[int]:
    """How many other phases contain each phase (0: top level).  ``phases``: dicts with
    ``start_s`` and ``end_s`` (or ``duration_s``), or (name, start s, end s) tuples."""
    spans = [_span(p) for p in phases]
    eps = 1e-6
    out = []
    for i, (a, b) in enumerate(spans):
        out.append(sum(1 for j, (c, d) in enumerate(spans)
                       if j != i and c <= a + eps and b <= d + eps and (d - c) > (b - a) + eps))
    return out


def leaf_phases(phases: Sequence[Any]) -> list[int]:
    """Indices of the phases that contain no other phase (``epoch-1`` and ``eval-1``, not
    the ``workload`` around them): what a chart draws, so that no part is drawn beside its
    whole as if it were separate."""
    spans = [_span(p) for p in phases]
    eps = 1e-6
    return [i for i, (a, b) in enumerate(spans)
            if not any(j != i and a <= c + eps and d <= b + eps and (b - a) > (d - c) + eps
                       for j, (c, d) in enumerate(spans))]


def _span(p: Any) -> tuple[float, float]:
    if isinstance(p, dict):
        a = float(p.get("start_s") or 0.0)
        b = p.get("end_s")
        return a, float(b) if b is not None else a + float(p.get("duration_s") or 0.0)
    return float(p[1]), float(p[2])


def power_traces(traces: dict[str, tuple[np.ndarray, np.ndarray]], phases: list[tuple[str, float, float]],
                 reference: str | None = None, max_points: int = 4000, *, ax: Any = None) -> Any:
    """Power (W) against session time (s) for every channel; the innermost phases shaded,
    each labelled where its span has room for the name."""
    ax = ax if ax is not None else new_axes(FIGSIZE["power_traces"])
    colors = _plt().rcParams["axes.prop_cycle"].by_key()["color"]
    leaves = [phases[i] for i in leaf_phases(phases)]
    t_all = [float(np.nanmin(t)) for t, _ in traces.values() if len(t)] + [a for _, a, _ in leaves]
    t_end = [float(np.nanmax(t)) for t, _ in traces.values() if len(t)] + [b for _, _, b in leaves]
    t0, t1 = (min(t_all), max(t_end)) if t_all else (0.0, 1.0)
    axes_w_pt = ax.figure.get_figwidth() * 72 * 0.75  # the plotting area, roughly (pt)
    for i, (p_name, a, b) in enumerate(leaves):
        ax.axvspan(a, b, color="0.92" if i % 2 == 0 else "0.86", zorder=0, lw=0)
        label = plot_text(p_name, PHASE_LEN)
        room_pt = (b - a) / max(t1 - t0, 1e-9) * axes_w_pt
        if room_pt >= 7 * 0.62 * len(label) + 4:  # 7 pt text: about 0.6 em a character
            ax.text((a + b) / 2, 1.0, label, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7, clip_on=False, parse_math=False)
    for i, (cid, (t, p)) in enumerate(traces.items()):
        step = max(1, len(t) // max_points)
        ax.plot(t[::step], p[::step], lw=1.6 if cid == reference else 1.0, color=colors[i % len(colors)],
                label=_name(cid) + (" (reference)" if cid == reference else ""))
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("power (W)")
    _tidy_ticks(ax, xbins=10)
    if traces:
        _literal_legend(ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    ax.grid(alpha=0.3)
    return ax


# --------------------------------------------------------------------------- agreement
def _finite(*arrays: np.ndarray) -> list[np.ndarray]:
    arrs = [np.asarray(a, dtype=float) for a in arrays]
    ok = np.ones(arrs[0].shape, bool)
    for a in arrs:
        ok &= np.isfinite(a)
    return [a[ok] for a in arrs]


def _padded(lo: float, hi: float, share: float = 0.05) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    pad = (hi - lo) * share if hi > lo else max(abs(hi) * 0.05, 0.5)
    return lo - pad, hi + pad


def scatter_fit(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any] | None,
                ref_name: str, cand_name: str, *, ax: Any = None) -> Any:
    """Window mean power (W): reference against candidate, with the calibration fit and the
    identity line, both clipped to axes fitted to the data."""
    ax = ax if ax is not None else new_axes(FIGSIZE["scatter_fit"])
    ref_w, cand_w = _finite(ref_w, cand_w)
    rn, cn = _name(ref_name, 32), _name(cand_name, 32)
    ax.scatter(cand_w, ref_w, s=14, alpha=0.8)
    xlim = _padded(float(cand_w.min()), float(cand_w.max())) if len(cand_w) else (0.0, 1.0)
    ylim = _padded(float(ref_w.min()), float(ref_w.max())) if len(ref_w) else (0.0, 1.0)
    xs = np.linspace(xlim[0], xlim[1], 50)
    if max(xlim[0], ylim[0]) < min(xlim[1], ylim[1]):  # y = x passes through the axes
        ident = np.linspace(max(xlim[0], ylim[0]), min(xlim[1], ylim[1]), 2)
        ax.plot(ident, ident, ls=":", color="0.5", label="identity (y = x)")
    if calibration and not is_missing(calibration.get("intercept")):
        a, b = float(calibration["intercept"]), calibration.get("slope")
        gain = 1.0 if is_missing(b) else float(b)
        label = (f"fit: a = {_num(a)} W, b = {_num(gain, 3)}" if not is_missing(b)
                 else f"fit: a = {_num(a)} W, no gain")
        ax.plot(xs, a + gain * xs, color="C3", label=label)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(f"{cn} (W)", parse_math=False)
    ax.set_ylabel(f"{rn} (W)", parse_math=False)
    _tidy_ticks(ax, xbins=5, ybins=6)
    if ax.get_legend_handles_labels()[0]:
        _literal_legend(ax.legend(fontsize=7, loc="best"))
    ax.grid(alpha=0.3)
    return ax


def bland_altman_plot(ref_w: np.ndarray, cand_w: np.ndarray, ba: dict[str, Any], cand_name: str,
                      *, ax: Any = None) -> Any:
    """Difference (candidate - reference, W) against the mean of the two (W), with the bias,
    the limits of agreement and their confidence intervals (shaded)."""
    ax = ax if ax is not None else new_axes(FIGSIZE["bland_altman_plot"])
    ref_w, cand_w = _finite(ref_w, cand_w)
    mean = (ref_w + cand_w) / 2
    diff = cand_w - ref_w
    ax.scatter(mean, diff, s=14, alpha=0.8)
    ys = list(diff)
    for key, style, what in (("bias", "-", "bias"), ("loa_low", "--", "limits of agreement"), ("loa_high", "--", None)):
        v = ba.get(key)
        if not is_missing(v):
            label = (f"bias {_num(v)} W" if key == "bias" else
                     f"{what} {_num(ba.get('loa_low'))} to {_num(ba.get('loa_high'))} W" if what else None)
            ax.axhline(v, ls=style, color="C3", label=label)
            ys.append(float(v))
    for key in ("loa_low_ci", "loa_high_ci", "bias_ci"):
        ci = ba.get(key)
        if ci and len(ci) == 2 and not any(is_missing(c) for c in ci):
            ax.axhspan(ci[0], ci[1], color="C3", alpha=0.08, lw=0)
            ys += [float(ci[0]), float(ci[1])]
    if len(mean):
        ax.set_xlim(*_padded(float(mean.min()), float(mean.max())))
    if ys:
        lo, hi = _padded(min(ys), max(ys), 0.08)
        ax.set_ylim(lo, hi + 0.25 * (hi - lo))  # room for the legend above the points
    ax.set_xlabel("mean of the two (W)")
    ax.set_ylabel(f"{_name(cand_name, 24)} \u2212 reference (W)", parse_math=False)
    _tidy_ticks(ax, xbins=5, ybins=6)
    if ax.get_legend_handles_labels()[0]:
        _literal_legend(ax.legend(fontsize=7, loc="upper right"))
    ax.grid(alpha=0.3)
    return ax


def residuals_plot(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any], *, ax: Any = None) -> Any:
    """Residuals of the calibration fit (W) per window, in time order."""
    ax = ax if ax is not None else new_axes(FIGSIZE["residuals_plot"])
    slope = calibration.get("slope")
    res = np.asarray(ref_w, float) - (float(calibration["intercept"]) + (1.0 if is_missing(slope) else float(slope))
                                      * np.asarray(cand_w, float))
    ax.plot(np.arange(len(res)), res, marker="o", ms=3, lw=0.8)
    ax.axhline(0, color="0.5", ls=":")
    ax.set_xlabel("window (time order)")
    ax.set_ylabel("residual (W)")
    _tidy_ticks(ax, xbins=6, ybins=5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    return ax


# --------------------------------------------------------------------------- energy
def _phase_rows(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [p for p in phases if (p.get("duration_s") or 0) > 0]
    return [rows[i] for i in leaf_phases(rows)][:MAX_PHASE_BARS]


def phase_energy_figsize(phases: list[dict[str, Any]], channels: list[str]) -> tuple[float, float]:
    """A figure size (inches) that fits :func:`phase_energy_plot`'s bars: a band per phase."""
    n = len(_phase_rows(phases))
    return (7.0, max(2.6, 0.9 + n * max(0.2, 0.09 * max(1, len(channels)) + 0.06)))


def phase_energy_plot(phases: list[dict[str, Any]], channels: list[str], *, ax: Any = None) -> Any:
    """Energy per phase (J) for each channel, grouped horizontal bars, the innermost phases
    only (a phase drawn with its sub-phases would count their energy twice), in time order
    from the top."""
    ax = ax if ax is not None else new_axes(phase_energy_figsize(phases, channels))
    rows = _phase_rows(phases)
    k = max(1, len(channels))
    height = 0.8 / k
    y = np.arange(len(rows))
    for i, cid in enumerate(channels):
        vals = [r.get(cid) if not is_missing(r.get(cid)) else np.nan for r in rows]
        ax.barh(y + (i - (k - 1) / 2) * height, vals, height, label=_name(cid))
    ax.set_yticks(y, [plot_text(r["phase"], PHASE_LEN) for r in rows], fontsize=7, parse_math=False)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("energy (J)")
    _tidy_ticks(ax, y=False, xbins=6)
    if channels:
        _literal_legend(ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    ax.grid(alpha=0.3, axis="x")
    return ax


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (energy, accuracy) points no other point beats on both (less energy, more accuracy)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(points: list[tuple[float, float, str]], *, ax: Any = None) -> Any:
    """Accuracy against energy (J) per run, coloured by workload; the Pareto front (the runs
    no other beats on both) ringed and joined, and named in the legend only when drawn."""
    ax = ax if ax is not None else new_axes(FIGSIZE["pareto_plot"])
    labels = sorted({p[2] for p in points})
    for i, lab in enumerate(labels):
        xs = [p[0] for p in points if p[2] == lab]
        ys = [p[1] for p in points if p[2] == lab]
        ax.scatter(xs, ys, label=_name(lab), color=f"C{i % 10}", zorder=3)
    front = pareto_front([(p[0], p[1]) for p in points])
    if front:
        fx = [points[i][0] for i in front]
        fy = [points[i][1] for i in front]
        ax.plot(fx, fy, drawstyle="steps-post", color="0.3", ls="--", marker="o", mfc="none", ms=11, zorder=2,
                label="Pareto front" if len(front) > 1 else "Pareto front (one run)")
    ax.set_xlabel("energy (J)")
    ax.set_ylabel("accuracy")
    _tidy_ticks(ax, xbins=5)
    if points:
        _literal_legend(ax.legend(fontsize=7, loc="best"))
    ax.grid(alpha=0.3)
    return ax
