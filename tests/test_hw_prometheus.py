"""The Prometheus driver against its simulator (sim:prometheus) over real HTTP on 127.0.0.1."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.characterize import characterize
from analysis.session_format import trace_path
from calibrate.session import Session
from drivers.base import Channel, MeterConfigError, MeterError, MeterReadError
from drivers.prometheus import (
    PRESETS,
    PrometheusMeter,
    channel_ids,
    is_selector,
    parse_reply,
    prom_duration_s,
    sample_value,
    series_key,
)
from drivers.registry import make_meter
from drivers.sim.registry import make_simulator


def start(**opts):
    opts = {"signal": "constant:200", "scrape": 0.1, "collect": 0.05, "silent_s": 1.0, "seed": 4, **opts}
    s = make_simulator("prometheus", **opts)
    s.uri = s.start()
    return s


@pytest.fixture
def sim():
    s = start()
    yield s
    s.stop()


def meter(sim, extra: str = "", timeout: float = 0.5):
    return make_meter(f"{sim.uri}&timeout={timeout}&interval=0.05{extra}")


def fresh(m, n: int = 1, limit_s: float = 3.0, need: tuple[str, ...] = (), stamped: bool = False):
    """The next ``n`` readings that carry new samples (of every quantity in ``need``: under
    load one poll may see a new power sample and the energy one only at the next;
    ``stamped``: from one scrape, so the reading carries that scrape's time)."""
    out, end = [], time.monotonic() + limit_s
    while len(out) < n and time.monotonic() < end:
        r = m.read()
        if any(r.values.values()) and all(q in v for v in r.values.values() for q in need) \
                and (r.t_ns is not None or not stamped):
            out.append(r)
        else:
            time.sleep(0.02)
    assert len(out) == n, "no new samples"
    return out


# --------------------------------------------------------------------------- readings
def test_dcgm_power_and_energy(sim):
    m = meter(sim)
    (ch,) = m.open()
    assert (ch.id, ch.scope, ch.primary, ch.energy_resolution_j) == (m.name, "gpu", "energy_j", 1e-3)
    assert ch.quantities == ("power_w", "energy_j", "age_s")
    assert ch.update_interval_s == pytest.approx(0.1)  # the target's scrapeInterval
    assert ch.info["time"] == "scrape" and ch.info["labels"]["modelName"].startswith("NVIDIA")
    a, b = fresh(m, 2, need=("power_w", "energy_j"), stamped=True)
    va, vb = a.values[m.name], b.values[m.name]
    assert va["power_w"] == vb["power_w"] == 200.0
    dt = (b.t_ns - a.t_ns) / 1e9
    assert dt == pytest.approx(round(dt / 0.1) * 0.1, abs=0.003) and dt > 0.05  # whole scrape periods
    assert vb["energy_j"] - va["energy_j"] == pytest.approx(200.0 * dt, abs=0.5)  # mJ -> J (stamps in ms)
    assert va["age_s"] == 0.0  # stamped at the scrape itself


def test_scrape_timestamps_are_used_and_repeats_are_not_recorded():
    s = start(scrape=0.3)
    try:
        m = meter(s)
        m.open()
        readings = []
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            readings.append((time.monotonic_ns(), m.read()))
            time.sleep(0.04)
        new = [(t, r) for t, r in readings if r.values]
        assert 3 <= len(new) <= 5  # one per scrape (1 s / 0.3 s), not one per poll (~20)
        assert m.repeats >= len(readings) - len(new) - 1
        stamps = [r.t_ns for _, r in new]
        assert all(t_poll > r.t_ns for t_poll, r in new)  # a sample is older than the poll that got it
        assert np.diff(stamps) / 1e9 == pytest.approx(0.3, abs=0.005)
        # the newest reading is stamped at the simulator's newest scrape, on the session clock
        ts_sim = s.samples[0][-1][0] if stamps[-1] / 1e9 > s.t0 + s.samples[0][-2][0] + 0.1 else s.samples[0][-2][0]
        assert stamps[-1] / 1e9 == pytest.approx(s.t0 + ts_sim, abs=0.01)
    finally:
        s.stop()


def test_several_series_are_several_channels():
    s = start(gpus=2, hosts=2)
    try:
        m = meter(s)
        chs = m.open()
        ids = [c.id for c in chs]
        assert sorted(ids) == [f"{m.name}.node{h}.{g}" for h in (0, 1) for g in (0, 1)]
        (r,) = fresh(m)
        for c in chs:
            assert r.values[c.id]["power_w"] == 200.0 + 10.0 * int(c.info["labels"]["gpu"])
            assert c.info["labels"]["UUID"].startswith("GPU-")
    finally:
        s.stop()


def test_custom_selector_kind_and_unit(sim):
    base = sim.uri.split("?")[0]
    m = make_meter(f'{base}?query=DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0"}}&kind=energy&unit=mJ&name=e')
    (ch,) = m.open()
    assert ch.quantities == ("energy_j", "age_s") and ch.id == "e"
    (r,) = fresh(m)
    assert r.values["e"]["energy_j"] >= 1e6  # the counter since the simulated boot, in J
    with pytest.raises(MeterConfigError, match="unit"):
        make_meter(f"{base}?query=x&kind=power&unit=J")
    with pytest.raises(MeterConfigError, match="preset"):
        make_meter(f"{base}?preset=bogus")
    with pytest.raises(MeterConfigError, match="token_file"):
        make_meter(f"{base}?preset=dcgm&token=abc")


def test_double_idle_reading_fault():
    s = start(signal="constant:80", double=100.0)
    try:
        m = meter(s)
        m.open()
        (r,) = fresh(m)
        assert r.values[m.name]["power_w"] == 160.0
    finally:
        s.stop()


# --------------------------------------------------------------------------- faults
def test_bad_query_is_a_config_error_with_prometheus_message(sim):
    base = sim.uri.split("?")[0]
    with pytest.raises(MeterConfigError, match="bad_data.*parse error") as exc:
        make_meter(f"{base}?query=sum(DCGM_FI_DEV_POWER_USAGE&kind=power&timeout=0.5").open()
    assert "\n" not in str(exc.value)


def test_empty_result_at_open_names_the_query(sim):
    base = sim.uri.split("?")[0]
    with pytest.raises(MeterConfigError, match="DCGM_FI_DEV_NOPE.*selects no series"):
        make_meter(f"{base}?query=DCGM_FI_DEV_NOPE&timeout=0.5").open()


def test_samples_stopping_later_are_flagged_stale(sim):
    m = meter(sim, "&stale=0.3")
    m.open()
    fresh(m)
    sim.faults.stale = [(sim.now(), 60.0)]  # no scrape succeeds any more
    time.sleep(0.5)
    flags = [m.read().flags for _ in range(3)]
    assert flags[-1] == {m.name: "stale"}
    sim.faults.stale = []
    (r,) = fresh(m)
    assert r.flags == {}


@pytest.mark.parametrize("fault,code", [("silent", "timeout"), ("exception", "exception"),
                                        ("error", "exception"), ("garbage", "garbage"), ("partial", "garbage")])
def test_faults_are_coded_read_errors_and_the_next_read_works(sim, fault, code):
    m = meter(sim, timeout=0.3)
    m.open()
    setattr(sim.faults, fault, 1.0)
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert exc.value.code == code
    if fault == "error":
        assert "execution" in str(exc.value)
    setattr(sim.faults, fault, 0.0)
    fresh(m)


@pytest.mark.parametrize("fault,code", [("nan", "nan"), ("inf", "range")])
def test_nan_and_inf_samples(sim, fault, code):
    m = meter(sim)
    m.open()
    fresh(m)
    setattr(sim.faults, fault, 1.0)
    time.sleep(0.15)
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert exc.value.code == code
    setattr(sim.faults, fault, 0.0)
    (r,) = fresh(m)
    assert r.values[m.name]["power_w"] == 200.0


def test_5xx_at_open_is_a_config_error(sim):
    sim.faults.exception = 1.0
    with pytest.raises(MeterConfigError, match="no usable reply"):
        meter(sim).open()


def test_unreachable_is_a_config_error():
    from drivers.sim.modbus_sim import free_port

    with pytest.raises(MeterConfigError, match="cannot reach"):
        make_meter(f"prometheus://127.0.0.1:{free_port()}?preset=dcgm&timeout=0.3").open()


def test_counter_reset_keeps_energy_monotonic(sim):
    m = meter(sim)
    m.open()
    (a,) = fresh(m)
    e0 = a.values[m.name]["energy_j"]
    sim.faults.resets = [sim.now() + 0.01]
    time.sleep(0.25)
    (r,) = fresh(m)
    assert "energy_j:reset" in r.flags[m.name] and m.resets == 1
    e1 = r.values[m.name]["energy_j"]
    dt = (r.t_ns - a.t_ns) / 1e9
    assert e0 < e1 <= e0 + 200.0 * dt + 0.5  # counted on from the reset, never lost or doubled
    (b,) = fresh(m)
    dtb = (b.t_ns - r.t_ns) / 1e9
    assert b.values[m.name]["energy_j"] - e1 == pytest.approx(200.0 * dtb, abs=0.5)


# --------------------------------------------------------------------------- token and sessions
def test_token_file_is_needed_and_never_recorded(tmp_path):
    s = start(auth=1)
    try:
        with pytest.raises(MeterConfigError, match="bearer token"):
            make_meter(s.uri.split("?")[0] + "?preset=dcgm&timeout=0.5").open()
    finally:
        s.stop()
    with Session(["sim:prometheus?signal=constant:150&scrape=0.1&collect=0.05&auth=1&interval=0.05"],
                 out=tmp_path / "s") as sess:
        time.sleep(0.6)
    token = sess.meters[0].sim.token
    assert token and len(token) >= 24
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert token.encode() not in p.read_bytes(), p
    rows = list(csv.DictReader(trace_path(tmp_path / "s", "prometheus").open()))
    values = [float(r["power_w"]) for r in rows if r["power_w"]]
    assert values and all(v == 150.0 for v in values)
    assert 3 <= len(values) <= 8  # one per scrape over ~0.6 s, not one per poll


def test_token_file_is_checked(tmp_path):
    p = tmp_path / "tok"
    p.write_text("abc def\n")
    p.chmod(0o600)
    with pytest.raises(MeterConfigError, match="printable"):
        make_meter(f"prometheus://127.0.0.1?preset=dcgm&token_file={p}")
    p.write_text("abc\n")
    p.chmod(0o644)
    with pytest.raises(MeterConfigError, match="chmod 600"):
        make_meter(f"prometheus://127.0.0.1?preset=dcgm&token_file={p}")


def test_characterize_recovers_the_scrape_period(tmp_path):
    """A square wave on the machine clock (edges every 1 s) read through sim:prometheus
    scraping every 0.25 s; the load edges are known, so characterize gets them directly."""
    half, scrape = 1.0, 0.25
    uri = (f"sim:prometheus?signal=square:100,300@{2 * half}&timebase=machine&scrape={scrape}&collect=0.05"
           "&noise=0.5&seed=2&interval=0.05")
    with Session([uri], out=tmp_path / "s") as sess:
        time.sleep(4.6)
    rows = list(csv.DictReader(trace_path(tmp_path / "s", "prometheus").open()))
    t = np.array([int(r["t_ns"]) / 1e9 for r in rows if r["power_w"]])
    p = np.array([float(r["power_w"]) for r in rows if r["power_w"]])
    assert sess.start_ns  # the session clock is CLOCK_MONOTONIC, the signal's
    edges = np.arange(math.ceil(t[0] / half), math.floor(t[-1] / half) + 1) * half
    c = characterize(t, p, edges)
    assert c.update_period_s == pytest.approx(scrape, abs=scrape)
    assert c.n_edges >= 3
    assert abs(c.delay_s) <= scrape + 0.05  # stamped at the scrape: no poll delay on top


# --------------------------------------------------------------------------- helpers
def test_helpers():
    assert is_selector('DCGM_FI_DEV_POWER_USAGE{gpu="0",Hostname=~"n.*"}') and is_selector("up")
    assert not is_selector("sum(x)") and not is_selector("rate(x[1m])") and not is_selector("x + y")
    assert prom_duration_s("1m30s") == 90.0 and prom_duration_s("500ms") == 0.5 and prom_duration_s("15") is None
    assert sample_value("12.5", "w") == 12.5
    ids = channel_ids("p", [{"__name__": "x", "gpu": g, "Hostname": "h", "UUID": f"U{g}"} for g in "01"])
    assert ids == ["p.0", "p.1"]
    assert channel_ids("p", [{"instance": "a b/c"}]) == ["p"]
    assert len(set(channel_ids("p", [{"a": "x/y"}, {"a": "x y"}]))) == 2
    assert set(PRESETS) == {"dcgm", "kepler", "kepler-0.7", "scaphandre", "node-hwmon"}


# --------------------------------------------------------------------------- fuzz
SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
VALUE = st.sampled_from(["1", "200.5", "NaN", "+Inf", "-Inf", "-5", "1e400", "", "x", "1_0"]) | SCALAR
PAIR = st.one_of(st.lists(SCALAR | VALUE, max_size=3), st.tuples(
    st.floats(min_value=-1, max_value=2e10) | SCALAR, VALUE).map(list))
LABELS = st.dictionaries(st.sampled_from(["gpu", "__name__", "UUID", "x"]), st.sampled_from(["0", "1"]) | SCALAR,
                         max_size=3)
SERIES = st.fixed_dictionaries({}, optional={"metric": LABELS | SCALAR, "value": PAIR,
                                             "values": st.lists(PAIR, max_size=3) | SCALAR})
DOC = st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(["success", "error", "x"]) | SCALAR,
    "errorType": SCALAR, "error": SCALAR,
    "data": st.fixed_dictionaries({}, optional={
        "resultType": st.sampled_from(["vector", "matrix", "scalar", "string"]) | SCALAR,
        "result": st.lists(SERIES, max_size=3) | PAIR | SCALAR}) | SCALAR}) | SCALAR


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOC)
def test_hostile_documents_raise_only_meter_errors(doc):
    try:
        parse_reply(doc, "w")
    except MeterError:
        pass
    m = PrometheusMeter("127.0.0.1", 1, queries=PRESETS["dcgm"][0], name="p")
    m.channels = [Channel(id="p.0"), Channel(id="p.1")]
    m._by_key = {series_key({"gpu": "0"}): "p.0", series_key({"gpu": "1"}): "p.1"}
    m._opened, m._synced_at = True, time.monotonic()
    m._last_new = {"p.0": time.monotonic(), "p.1": time.monotonic()}
    m._get = lambda path: doc  # type: ignore[method-assign]
    for _ in range(2):
        try:
            r = m.read()
        except MeterError:
            continue
        for vals in r.values.values():
            assert all(isinstance(v, float) and math.isfinite(v) for v in vals.values())
