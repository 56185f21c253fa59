"""Report figures fit for a paper: no two tick labels overlap, none is clipped by the
figure, with awkward data (long channel names, many phases, wide value ranges)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis import plots

LONG = "rapl.package-0+rapl.package-0.dram+nvml.0:" + "x" * 60  # an 100-character channel sum
LONG_REF = "wall-meter-in-the-rack-next-to-the-window-" + "y" * 40


def _labels(ax):
    """The visible tick labels of ``ax`` (both axes) whose ticks lie in the view."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        eps = 1e-9 * max(1.0, abs(hi - lo))
        for tick in axis.get_major_ticks():
            if lo - eps <= tick.get_loc() <= hi + eps and tick.label1.get_visible() and tick.label1.get_text():
                out.append((axis.axis_name, tick.label1))
    return out


def check_layout(ax, min_labels: int = 2) -> dict[str, int]:
    """Draw the figure; assert no two tick labels of one axis overlap, every tick label,
    axis label, legend and text lies inside the figure.  Returns the label count per axis."""
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    page = fig.bbox
    labels = _labels(ax)
    counts = {"x": 0, "y": 0}
    for name, _t in labels:
        counts[name] += 1
    for name in ("x", "y"):
        boxes = [(t.get_text(), t.get_window_extent(r)) for n, t in labels if n == name]
        for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), f"{name} tick labels {ta!r} and {tb!r} overlap"
    assert counts["x"] + counts["y"] >= min_labels
    others = [ax.xaxis.label, ax.yaxis.label, *ax.texts]
    if ax.get_legend() is not None:
        others.append(ax.get_legend())
    for art in [t for _, t in labels] + [o for o in others if o.get_visible() and (not hasattr(o, "get_text") or o.get_text())]:
        bb = art.get_window_extent(r)
        assert bb.x0 >= page.x0 - 0.5 and bb.y0 >= page.y0 - 0.5 and bb.x1 <= page.x1 + 0.5 and bb.y1 <= page.y1 + 0.5, (
            f"{art.get_text() if hasattr(art, 'get_text') else type(art).__name__!r} is clipped: {bb} outside {page}")
    texts = [t.get_window_extent(r) for t in ax.texts if t.get_text()]
    for a, b in itertools.combinations(texts, 2):
        assert not a.overlaps(b), "phase labels overlap"
    return counts


@pytest.fixture(autouse=True)
def _close():
    yield
    plots._plt().close("all")


WIDE = [(0.0012, 0.0019), (95.0, 100.0), (1.0e5, 9.87e5), (123456.7, 123456.9)]


@pytest.mark.parametrize("lo,hi", WIDE)
def test_bland_altman_and_scatter_and_residuals_ticks_fit(lo, hi):
    rng = np.random.default_rng(1)
    ref = np.linspace(lo, hi, 40)
    cand = ref * 1.03 + (hi - lo) * 0.01 * rng.standard_normal(40)
    d = cand - ref
    ba = {"bias": float(d.mean()), "loa_low": float(d.mean() - 2 * d.std()), "loa_high": float(d.mean() + 2 * d.std()),
          "bias_ci": [float(d.mean() - d.std() / 5), float(d.mean() + d.std() / 5)], "loa_low_ci": [None, None]}
    cal = {"intercept": 0.5 * lo, "slope": 0.97}
    ax = plots.bland_altman_plot(ref, cand, ba, LONG)
    c = check_layout(ax)
    assert c["x"] >= 2 and c["y"] >= 2
    assert ax.get_ylim()[0] <= ba["loa_low"] and ax.get_ylim()[1] >= ba["loa_high"]
    ax = plots.scatter_fit(ref, cand, cal, LONG_REF, LONG)
    c = check_layout(ax)
    assert c["x"] >= 2 and c["y"] >= 2
    ax = plots.residuals_plot(ref, cand, cal)
    check_layout(ax)


def test_scatter_axes_fit_the_data_and_clip_the_identity_line():
    cand = np.linspace(10.0, 80.0, 30)  # a component meter far below the wall
    ref = 100.0 + 2.0 * cand
    ax = plots.scatter_fit(ref, cand, {"intercept": 100.0, "slope": 2.0}, "wall", "cpu")
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert 5 < x0 < 10 and 80 < x1 < 85  # fitted to the candidate, not stretched to 0
    assert 110 < y0 < 120 and 260 < y1 < 270
    labels = ax.get_legend_handles_labels()[1]
    assert not any("identity" in lab for lab in labels)  # y = x never meets these axes: not drawn, not named
    check_layout(ax)
    ax = plots.scatter_fit(ref, ref * 1.01, {"intercept": 0.0, "slope": 1.0}, "wall", "tool")
    ident = [ln for ln in ax.get_lines() if "identity" in str(ln.get_label())][0]
    xs = ident.get_xdata()
    assert min(xs) >= ax.get_xlim()[0] and max(xs) <= ax.get_xlim()[1]


def _nested_phases(n_epochs: int, name_len: int) -> list[dict]:
    rows = [{"phase": "baseline-before", "start_s": 0.0, "end_s": 10.0, "duration_s": 10.0}]
    t = 10.0
    wl = {"phase": "workload", "start_s": t, "end_s": t + n_epochs * 12.0, "duration_s": n_epochs * 12.0}
    rows.append(wl)
    for k in range(1, n_epochs + 1):
        name = f"epoch-{k}-" + "long-phase-name-" * (name_len // 16)
        rows.append({"phase": name[:name_len], "start_s": t, "end_s": t + 10.0, "duration_s": 10.0})
        rows.append({"phase": f"eval-{k}", "start_s": t + 10.0, "end_s": t + 12.0, "duration_s": 2.0})
        t += 12.0
    rows.append({"phase": "baseline-after", "start_s": t, "end_s": t + 10.0, "duration_s": 10.0})
    for r in rows:
        r["wall"] = 150.0 * r["duration_s"]
        r[LONG] = 1.0e6 * r["duration_s"]  # and a wide range: 10^3 .. 10^7 J
    return rows


@pytest.mark.parametrize("n_epochs,name_len", [(2, 10), (18, 70)])
def test_phase_energy_plot_many_long_nested_phases(n_epochs, name_len):
    phases = _nested_phases(n_epochs, name_len)
    chans = ["wall", LONG]
    ax = plots.new_axes(plots.phase_energy_figsize(phases, chans))
    plots.phase_energy_plot(phases, chans, ax=ax)
    counts = check_layout(ax)
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert "workload" not in names  # its sub-phases are drawn, not the whole beside its parts
    assert counts["y"] == 2 * n_epochs + 2 and "eval-1" in names and "baseline-after" in names
    assert all(len(n) <= plots.PHASE_LEN for n in names)


def test_power_traces_many_phases_long_names():
    t = np.linspace(0, 86400.0, 3000)
    traces = {LONG_REF: (t, 100 + 50 * np.sin(t / 5000)), LONG: (t, 1e4 + 10 * np.cos(t / 3000))}
    phases = [(p["phase"], p["start_s"] * 1500, p["end_s"] * 1500) for p in _nested_phases(3, 40)]
    ax = plots.new_axes(plots.FIGSIZE["power_traces"])
    plots.power_traces(traces, phases, LONG_REF, ax=ax)
    check_layout(ax)
    shown = {t.get_text() for t in ax.texts}
    assert "workload" not in shown and "baseline-before" in shown  # wide enough phases are named
    assert not any(s.startswith("eval") for s in shown)  # too narrow for their names: shaded only
    # many adjacent short phases, each named: no two names overlap (checked above)
    phases = [(f"p{k}", 3600.0 * k, 3600.0 * (k + 1)) for k in range(24)]
    ax = plots.new_axes(plots.FIGSIZE["power_traces"])
    plots.power_traces(traces, phases, LONG_REF, ax=ax)
    check_layout(ax)
    assert len(ax.texts) == 24


def test_leaf_phases_and_depths():
    phases = _nested_phases(2, 10)
    names = [p["phase"] for p in phases]
    leaves = [names[i] for i in plots.leaf_phases(phases)]
    assert leaves == ["baseline-before", "epoch-1-", "eval-1", "epoch-2-", "eval-2", "baseline-after"]
    assert plots.phase_depths(phases) == [0, 0, 1, 1, 1, 1, 0]


def test_pareto_front_named_only_when_drawn():
    ax = plots.pareto_plot([(10.0, 0.5, "a")])
    assert ax.get_legend_handles_labels()[1] == ["a", "Pareto front (one run)"]
    ax = plots.pareto_plot([(10.0, 0.5, "a"), (20.0, 0.7, "b"), (30.0, 0.6, "b")])
    labels = ax.get_legend_handles_labels()[1]
    assert "Pareto front" in labels
    line = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"][0]
    assert list(line.get_xdata()) == [10.0, 20.0]
    check_layout(ax)
