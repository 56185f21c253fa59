"""Results that say when they mean nothing: each caveat on a session whose truth is known.

Sessions are imported from generated 1 Hz traces (the importer writes a real session
folder), so each test knows what the right answer is and which warning it must carry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from analysis.caveats import (
    MIN_WINDOWS,
    accuracy_check,
    calibration_caveats,
    near_constant,
    window_caveats,
)
from analysis.importer import TraceSpec, import_traces
from analysis.intervals import LOG_METHOD, mean_ci
from analysis.load import load_session
from analysis.session_format import EVENTS_FILE
from analysis.summary import summarize
from analysis.text_report import summary_text
from calibrate.cli import main

T = np.arange(0.0, 600.0, 1.0)  # 10 minutes at 1 Hz
LOAD = np.where((T // 30) % 2 == 0, 20.0, 80.0)  # W: a square wave, 30 s half periods


def _session(tmp_path: Path, traces: dict[str, tuple[np.ndarray, str]], t: np.ndarray = T,
             reference: str | None = None) -> Path:
    """A session folder of ``traces``: name -> (W per sample of ``t``, "scope/source")."""
    specs = []
    for name, (w, kind) in traces.items():
        csv = tmp_path / f"{name}.csv"
        csv.write_text("timestamp,power_w\n" + "".join(f"{1.7e9 + a:.3f},{b:.6f}\n" for a, b in zip(t, w)))
        specs.append(TraceSpec.parse(f"{name}={csv}@{kind}"))
    return import_traces(tmp_path / "s", specs, reference=reference)


def _noise(scale: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, T.size)


def _summary(folder: Path, **kw: object) -> dict:
    return summarize(load_session(folder), window_s=kw.pop("window_s", 10.0), **kw)  # type: ignore[arg-type]


def _codes(entry: dict) -> list[str]:
    assert len(entry["warnings"]) == len(entry["warning_codes"])
    return entry["warning_codes"]


def test_a_good_candidate_carries_no_caveat(tmp_path: Path) -> None:
    # wall = pkg + 40 W: gain 1, constant bias; enough windows, long enough windows
    s = _summary(_session(tmp_path, {"wall": (LOAD + 40 + _noise(0.3), "wall/measured"),
                                     "pkg": (LOAD + _noise(0.3, 2), "package/measured")}))
    a = s["agreement"][0]
    assert _codes(a) == [] and a["label"] == "wall = a + b x pkg"
    assert a["calibration"]["slope"] == pytest.approx(1.0, abs=0.02)
    assert a["calibration"]["intercept"] == pytest.approx(40.0, abs=1.0)
    assert s["reference_modelled"] is False and s["warnings"] == []


def test_proportional_bias_is_named(tmp_path: Path) -> None:
    # wall = 30 + 1.3 x pkg: the difference grows with the level
    s = _summary(_session(tmp_path, {"wall": (30 + 1.3 * LOAD + _noise(0.3), "wall/measured"),
                                     "pkg": (LOAD + _noise(0.3, 2), "package/measured")}))
    a = s["agreement"][0]
    assert "proportional_bias" in _codes(a)
    assert a["bland_altman"]["proportional_bias"]["p_value"] < 0.05
    text = summary_text(s, "DIR")
    assert "proportional bias" in text and re.search(r"wall = (29\.\d|30\.\d) W \+ 1\.(29|30)\d x pkg", text)


def test_near_constant_candidate_gets_no_gain(tmp_path: Path) -> None:
    # CodeCarbon's RAM estimate: 3 W give or take a millwatt, while the wall swings by 60 W
    s = _summary(_session(tmp_path, {"wall": (50 + LOAD + _noise(0.3), "wall/measured"),
                                     "ram": (3.0 + _noise(0.001, 3), "dram/modelled")}))
    a = s["agreement"][0]
    assert "near_constant_candidate" in _codes(a)
    assert a["calibration"]["slope"] is None  # no "wall = 1,088 W + -47 x ram"
    assert "+ -" not in summary_text(s, "DIR") and "nearly constant" in summary_text(s, "DIR")


def test_negative_gain_is_flagged(tmp_path: Path) -> None:
    s = _summary(_session(tmp_path, {"wall": (50 + LOAD + _noise(0.3), "wall/measured"),
                                     "inv": (100 - 0.5 * LOAD + _noise(0.3, 4), "package/measured")}))
    a = s["agreement"][0]
    assert a["calibration"]["slope"] < 0 and "negative_gain" in _codes(a)
    assert "inv does not track" in " ".join(a["warnings"])


def test_negative_intercept_beyond_its_ci_is_flagged(tmp_path: Path) -> None:
    # wall = -200 + 13.5 x cand: a scaled, partial view extrapolated to zero
    cand = 20 + LOAD / 4
    s = _summary(_session(tmp_path, {"wall": (-200 + 13.5 * cand + _noise(0.5), "wall/measured"),
                                     "cc": (cand + _noise(0.02, 5), "system/modelled")}))
    a = s["agreement"][0]
    cal = a["calibration"]
    assert cal["intercept"] == pytest.approx(-200, abs=10) and cal["intercept_ci"][1] < 0
    assert "negative_intercept" in _codes(a)


def test_a_gain_indistinguishable_from_zero_is_flagged(tmp_path: Path) -> None:
    # a candidate that is pure noise around 30 W (5% CV): no relation to the wall's load
    s = _summary(_session(tmp_path, {"wall": (50 + LOAD + _noise(0.3), "wall/measured"),
                                     "rnd": (30 + _noise(1.5, 7), "package/measured")}))
    a = s["agreement"][0]
    lo, hi = a["calibration"]["slope_ci"]
    assert lo < 0 < hi and "gain_not_significant" in _codes(a)


def test_windows_shorter_than_the_meter_are_flagged(tmp_path: Path) -> None:
    folder = _session(tmp_path, {"wall": (50 + LOAD + _noise(0.3), "wall/measured"),
                                 "pkg": (LOAD + _noise(0.3, 2), "package/measured")})
    a = _summary(folder, window_s=0.25)["agreement"][0]
    assert "window_shorter_than_meter" in _codes(a)
    msg = a["warnings"][_codes(a).index("window_shorter_than_meter")]
    assert f"n = {a['n_windows']}" in msg and "--window 1" in msg
    assert "window_shorter_than_meter" not in _codes(_summary(folder, window_s=2.0)["agreement"][0])


def test_few_windows_are_flagged_and_marked_in_the_table(tmp_path: Path) -> None:
    t = np.arange(0.0, 60.0, 1.0)
    load = np.where((t // 10) % 2 == 0, 20.0, 80.0)
    s = _summary(_session(tmp_path, {"wall": (50 + load, "wall/measured"), "pkg": (load + 0.1 * np.sin(t), "package/measured")},
                          t=t), window_s=10.0)
    a = s["agreement"][0]
    assert 3 <= a["n_windows"] < MIN_WINDOWS and "few_windows" in _codes(a)
    assert "(too few: indicative only)" in summary_text(s, "DIR")


def test_a_modelled_reference_is_refused_unless_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _session(tmp_path, {"model": (50 + LOAD, "system/modelled"), "cc": (LOAD + _noise(0.3), "package/modelled")})
    with pytest.raises(ValueError, match="no measured channel"):
        _summary(folder)
    assert main(["report", str(folder)]) == 2  # one line, exit 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference" in err
    s = _summary(folder, reference="model")
    assert s["reference"] == "model" and s["reference_modelled"] is True
    assert "modelled_reference" in _codes(s["meters"]["model"])
    assert s["emissions"]["energy_modelled"] is True and "co2_from_model" in _codes(s["emissions"])
    text = summary_text(s, "DIR")
    assert "model (reference, MODELLED)" in text and "from the MODELLED model" in text
    assert "model = " in text and "wall =" not in text


def test_a_measured_channel_is_the_default_reference_over_a_modelled_wall(tmp_path: Path) -> None:
    folder = _session(tmp_path, {"est": (50 + LOAD, "wall/modelled"), "pkg": (LOAD + _noise(0.3), "package/measured")})
    assert _summary(folder)["reference"] == "pkg"


def _with_result(folder: Path, **result: object) -> Path:
    with open(folder / EVENTS_FILE, "a") as f:  # the importer wrote the file empty
        f.write(json.dumps({"t_ns": 1_700_000_100 * 10**9, "kind": "result", **result}) + "\n")
    man = json.loads((folder / "session.json").read_text())
    man["workload"] = {"name": "resnet18", "parameters": {"num_classes": 10, "val_size": 1000}}
    (folder / "session.json").write_text(json.dumps(man))
    return folder


@pytest.mark.parametrize(("accuracy", "at_chance"), [(0.102, True), (0.118, True), (0.62, False)])
def test_accuracy_at_chance_is_flagged(tmp_path: Path, accuracy: float, at_chance: bool) -> None:
    folder = _with_result(_session(tmp_path, {"wall": (50 + LOAD, "wall/measured")}),
                          accuracy=accuracy, num_classes=10, val_samples=1000)
    s = _summary(folder)
    w = s["workload"]
    assert w["accuracy"] == pytest.approx(accuracy)
    assert ("accuracy_at_chance" in _codes(w)) is at_chance
    assert w["accuracy_vs_chance"]["chance"] == pytest.approx(0.1)
    lo, hi = w["accuracy_vs_chance"]["ci"]
    assert lo < accuracy < hi
    assert ("AT CHANCE" in summary_text(s, "DIR")) is at_chance


def test_accuracy_check_needs_a_sample_count() -> None:
    info, caveats = accuracy_check(0.1, 10, None)
    assert info == {} and caveats == []
    info, caveats = accuracy_check(0.3, 10, 20)  # 6 of 20: CI [0.15, 0.52] holds 0.1? no
    assert info["ci"][0] > 0.1 and caveats == []
    info, caveats = accuracy_check(0.2, 10, 20)  # 4 of 20: CI [0.08, 0.42] holds chance
    assert [c.code for c in caveats] == ["accuracy_at_chance"]


def test_mean_ci_of_a_positive_quantity_cannot_go_below_zero() -> None:
    # the campaign seen: two runs of very different energy gave a t CI of [-584, 1530] J
    r = mean_ci([100.0, 846.0], what="energy")
    assert r.method == LOG_METHOD and r.ci[0] > 0 and r.ci[1] > 846
    assert any("only 2 runs" in w for w in r.warnings)
    plain = mean_ci([-1.0, 2.0, 3.0], what="x")
    assert plain.ci[0] < 0 and plain.method and "log" not in plain.method
    three = mean_ci([10.0, 11.0, 12.0])
    assert three.warnings == [] and three.ci[0] < 11 < three.ci[1]
    assert three.geometric_mean == pytest.approx((10 * 11 * 12) ** (1 / 3))


def test_pure_checks_on_their_own() -> None:
    assert near_constant([3.0, 3.0001, 2.9999]) is not None
    assert near_constant([20.0, 80.0, 20.0]) is None
    assert near_constant([10.0, 10.5, 10.0, 10.5], resolution_w=0.5) is not None  # within its step
    assert window_caveats(5.0, {"w": (1.0, 1.0)}, 100) == []
    [c] = window_caveats(0.1, {"w": (1.0, 1.0), "r": (0.05, None)}, 279)
    assert "(about 27)" in c.message and "w (1 s)" in c.message and "r (" not in c.message
    assert calibration_caveats({"slope": None, "intercept": 3.0}, "wall", "ram") == []
