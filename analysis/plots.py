"""Figures for reports (matplotlib, Agg backend).  Computing lives elsewhere: each plot
draws given arrays (s, W, J) and summary figures on an ``ax`` (a matplotlib Axes; a new
figure when None) and returns that Axes.  :func:`png` renders a figure at the HTML edge;
:func:`figure_png` draws one plot on a new figure and returns its PNG bytes.  Names (channels,
phases, workloads) are drawn as written: controls stripped (:func:`analysis.escape.plot_text`),
never parsed as mathtext (``$x^2$`` is shown as those five characters)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from analysis.escape import plot_text

__all__ = ["bland_altman_plot", "figure_png", "new_axes", "pareto_front", "pareto_plot", "phase_energy_figsize",
           "phase_energy_plot", "png", "power_traces", "residuals_plot", "scatter_fit"]

FIGSIZE = {"power_traces": (10, 4), "scatter_fit": (4.6, 4.2), "bland_altman_plot": (4.6, 4.2),
           "residuals_plot": (4.6, 3.0), "pareto_plot": (5.5, 4)}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _literal_legend(legend: Any) -> Any:
    """Legend entries are names: shown as written, never parsed as mathtext."""
    for t in legend.get_texts():
        t.set_parse_math(False)
    return legend


def new_axes(figsize: tuple[float, float]) -> Any:
    """A new figure of ``figsize`` (inches) with one Axes; returns the Axes."""
    _, ax = _plt().subplots(figsize=figsize)
    return ax


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (110 dpi, tight); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def figure_png(plot: Callable[..., Any], *args: Any, figsize: tuple[float, float] | None = None,
               **kwargs: Any) -> bytes:
    """Draw ``plot(*args, **kwargs)`` on a new figure (its usual size unless ``figsize``) as PNG."""
    ax = new_axes(figsize or FIGSIZE[plot.__name__])
    plot(*args, ax=ax, **kwargs)
    return png(ax.figure)


def power_traces(traces: dict[str, tuple[np.ndarray, np.ndarray]], phases: list[tuple[str, float, float]],
                 reference: str | None = None, max_points: int = 4000, *, ax: Any = None) -> Any:
    """Power (W) against session time (s) for every channel, phases shaded and labelled."""
    ax = ax if ax is not None else new_axes(FIGSIZE["power_traces"])
    colors = _plt().rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (p_name, a, b) in enumerate(phases):
        ax.axvspan(a, b, color="0.92" if i % 2 == 0 else "0.86", zorder=0)
        ax.text((a + b) / 2, 1.0, plot_text(p_name), transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=7, rotation=0, clip_on=True, parse_math=False)
    for i, (cid, (t, p)) in enumerate(traces.items()):
        step = max(1, len(t) // max_points)
        ax.plot(t[::step], p[::step], lw=1.6 if cid == reference else 1.0, color=colors[i % len(colors)],
                label=plot_text(cid) + (" (reference)" if cid == reference else ""))
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("power (W)")
    _literal_legend(ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    ax.grid(alpha=0.3)
    return ax


def scatter_fit(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any] | None,
                ref_name: str, cand_name: str, *, ax: Any = None) -> Any:
    """Window mean power (W): reference against candidate, identity line and calibration fit."""
    ax = ax if ax is not None else new_axes(FIGSIZE["scatter_fit"])
    ref_name, cand_name = plot_text(ref_name), plot_text(cand_name)
    ax.scatter(cand_w, ref_w, s=14, alpha=0.8)
    lo = float(np.nanmin([cand_w.min(), ref_w.min()])) if len(ref_w) else 0.0
    hi = float(np.nanmax([cand_w.max(), ref_w.max()])) if len(ref_w) else 1.0
    xs = np.linspace(min(lo, 0.0), hi * 1.05, 50)
    ax.plot(xs, xs, ls=":", color="0.5", label="identity")
    if calibration and calibration.get("intercept") is not None:
        a, b = calibration["intercept"], calibration.get("slope")
        label = f"{ref_name} = {a:.1f} + {b:.3f} x" if b is not None else f"{ref_name} = {a:.1f} + x (no gain)"
        ax.plot(xs, a + (1.0 if b is None else b) * xs, color="C3", label=label)
    ax.set_xlabel(f"{cand_name} (W)", parse_math=False)
    ax.set_ylabel(f"{ref_name} (W)", parse_math=False)
    _literal_legend(ax.legend(fontsize=7))
    ax.grid(alpha=0.3)
    return ax


def bland_altman_plot(ref_w: np.ndarray, cand_w: np.ndarray, ba: dict[str, Any], cand_name: str,
                      *, ax: Any = None) -> Any:
    """Difference (candidate - reference, W) against the mean (W), with bias and limits of agreement."""
    ax = ax if ax is not None else new_axes(FIGSIZE["bland_altman_plot"])
    mean = (ref_w + cand_w) / 2
    diff = cand_w - ref_w
    ax.scatter(mean, diff, s=14, alpha=0.8)
    for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
        v = ba.get(key)
        if v is not None:
            ax.axhline(v, ls=style, color="C3")
            ax.text(ax.get_xlim()[1], v, f" {key} {v:.1f}", va="center", fontsize=7, color="C3")
    for key in ("loa_low_ci", "loa_high_ci", "bias_ci"):
        ci = ba.get(key)
        if ci and all(c is not None for c in ci):
            ax.axhspan(ci[0], ci[1], color="C3", alpha=0.08)
    ax.set_xlabel("mean of the two (W)")
    ax.set_ylabel(f"{plot_text(cand_name)} - reference (W)", parse_math=False)
    ax.grid(alpha=0.3)
    return ax


def residuals_plot(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any], *, ax: Any = None) -> Any:
    """Residuals of the calibration fit (W) per window, in time order."""
    ax = ax if ax is not None else new_axes(FIGSIZE["residuals_plot"])
    slope = calibration.get("slope")
    res = ref_w - (calibration["intercept"] + (1.0 if slope is None else slope) * cand_w)
    ax.plot(np.arange(len(res)), res, marker="o", ms=3, lw=0.8)
    ax.axhline(0, color="0.5", ls=":")
    ax.set_xlabel("window (time order)")
    ax.set_ylabel("residual (W)")
    ax.grid(alpha=0.3)
    return ax


def _phase_rows(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in phases if p.get("duration_s", 0) > 0][:30]


def phase_energy_figsize(phases: list[dict[str, Any]], channels: list[str]) -> tuple[float, float]:
    """A figure size (inches) that fits :func:`phase_energy_plot`'s bars."""
    return (max(5.0, 0.6 * len(_phase_rows(phases)) * max(1, len(channels)) / 2), 3.4)


def phase_energy_plot(phases: list[dict[str, Any]], channels: list[str], *, ax: Any = None) -> Any:
    """Energy per phase (J) for each channel, grouped bars."""
    ax = ax if ax is not None else new_axes(phase_energy_figsize(phases, channels))
    rows = _phase_rows(phases)
    width = 0.8 / max(1, len(channels))
    x = np.arange(len(rows))
    for i, cid in enumerate(channels):
        vals = [r.get(cid) if r.get(cid) is not None else np.nan for r in rows]
        ax.bar(x + i * width, vals, width, label=plot_text(cid))
    ax.set_xticks(x + 0.4 - width / 2, [plot_text(r["phase"]) for r in rows], rotation=30, ha="right", fontsize=7,
                  parse_math=False)
    ax.set_ylabel("energy (J)")
    _literal_legend(ax.legend(fontsize=7))
    ax.grid(alpha=0.3, axis="y")
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
    """Accuracy against energy (J) per run, coloured by workload, Pareto front drawn."""
    ax = ax if ax is not None else new_axes(FIGSIZE["pareto_plot"])
    labels = sorted({p[2] for p in points})
    for i, lab in enumerate(labels):
        xs = [p[0] for p in points if p[2] == lab]
        ys = [p[1] for p in points if p[2] == lab]
        ax.scatter(xs, ys, label=plot_text(lab), color=f"C{i % 10}")
    front = pareto_front([(p[0], p[1]) for p in points])
    fx = [points[i][0] for i in front]
    fy = [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="0.4", ls="--", label="Pareto front")
    ax.set_xlabel("energy (J)")
    ax.set_ylabel("accuracy")
    _literal_legend(ax.legend(fontsize=7))
    ax.grid(alpha=0.3)
    return ax
