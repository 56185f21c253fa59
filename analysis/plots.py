"""Figures for reports (matplotlib, Agg backend).  Computing lives elsewhere: these
functions take arrays and summary dicts and return PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def power_traces(traces: dict[str, tuple[np.ndarray, np.ndarray]], phases: list[tuple[str, float, float]],
                 reference: str | None = None, max_points: int = 4000) -> bytes:
    """Power (W) against session time (s) for every channel, phases shaded and labelled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (p_name, a, b) in enumerate(phases):
        ax.axvspan(a, b, color="0.92" if i % 2 == 0 else "0.86", zorder=0)
        ax.text((a + b) / 2, 1.0, p_name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=7, rotation=0, clip_on=True)
    for i, (cid, (t, p)) in enumerate(traces.items()):
        step = max(1, len(t) // max_points)
        ax.plot(t[::step], p[::step], lw=1.6 if cid == reference else 1.0, color=colors[i % len(colors)],
                label=cid + (" (reference)" if cid == reference else ""))
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("power (W)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _png(fig)


def scatter_fit(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any] | None,
                ref_name: str, cand_name: str) -> bytes:
    """Window mean power: reference against candidate, identity line and calibration fit."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(cand_w, ref_w, s=14, alpha=0.8)
    lo = float(np.nanmin([cand_w.min(), ref_w.min()])) if len(ref_w) else 0.0
    hi = float(np.nanmax([cand_w.max(), ref_w.max()])) if len(ref_w) else 1.0
    xs = np.linspace(min(lo, 0.0), hi * 1.05, 50)
    ax.plot(xs, xs, ls=":", color="0.5", label="identity")
    if calibration and calibration.get("intercept") is not None:
        a, b = calibration["intercept"], calibration.get("slope")
        label = f"{ref_name} = {a:.1f} + {b:.3f} x" if b is not None else f"{ref_name} = {a:.1f} + x (no gain)"
        ax.plot(xs, a + (1.0 if b is None else b) * xs, color="C3", label=label)
    ax.set_xlabel(f"{cand_name} (W)")
    ax.set_ylabel(f"{ref_name} (W)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def bland_altman_plot(ref_w: np.ndarray, cand_w: np.ndarray, ba: dict[str, Any], cand_name: str) -> bytes:
    """Difference (candidate - reference) against the mean, with bias and limits of agreement."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
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
    ax.set_ylabel(f"{cand_name} - reference (W)")
    ax.grid(alpha=0.3)
    return _png(fig)


def residuals_plot(ref_w: np.ndarray, cand_w: np.ndarray, calibration: dict[str, Any]) -> bytes:
    """Residuals of the calibration fit (W) per window, in time order."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    slope = calibration.get("slope")
    res = ref_w - (calibration["intercept"] + (1.0 if slope is None else slope) * cand_w)
    ax.plot(np.arange(len(res)), res, marker="o", ms=3, lw=0.8)
    ax.axhline(0, color="0.5", ls=":")
    ax.set_xlabel("window (time order)")
    ax.set_ylabel("residual (W)")
    ax.grid(alpha=0.3)
    return _png(fig)


def phase_energy_plot(phases: list[dict[str, Any]], channels: list[str]) -> bytes:
    """Energy per phase (J) for each channel, grouped bars."""
    plt = _plt()
    rows = [p for p in phases if p.get("duration_s", 0) > 0][:30]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(rows) * max(1, len(channels)) / 2), 3.4))
    width = 0.8 / max(1, len(channels))
    x = np.arange(len(rows))
    for i, cid in enumerate(channels):
        vals = [r.get(cid) if r.get(cid) is not None else np.nan for r in rows]
        ax.bar(x + i * width, vals, width, label=cid)
    ax.set_xticks(x + 0.4 - width / 2, [r["phase"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("energy (J)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (energy, accuracy) points no other point beats on both (less energy, more accuracy)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(points: list[tuple[float, float, str]]) -> bytes:
    """Accuracy against energy (J) per run, coloured by workload, Pareto front drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    labels = sorted({p[2] for p in points})
    for i, lab in enumerate(labels):
        xs = [p[0] for p in points if p[2] == lab]
        ys = [p[1] for p in points if p[2] == lab]
        ax.scatter(xs, ys, label=lab, color=f"C{i % 10}")
    front = pareto_front([(p[0], p[1]) for p in points])
    fx = [points[i][0] for i in front]
    fy = [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="0.4", ls="--", label="Pareto front")
    ax.set_xlabel("energy (J)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)
