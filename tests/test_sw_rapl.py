"""rapl: zone discovery and naming, wrap-around, permissions, vanishing zones, live fake tree."""

from __future__ import annotations

import time

import pytest

from drivers.base import MeterConfigError, MeterDisconnected
from drivers.fakes.powercap import FakePowercap, FakeZone, typical_zones
from drivers.rapl import RaplMeter, list_zones
from drivers.registry import make_meter


class Clock:
    def __init__(self):
        self.ns = 5_000_000_000

    def __call__(self):
        return self.ns

    def tick(self, s):
        self.ns += int(round(s * 1e9))


def server_tree(tmp_path):
    zones = typical_zones(packages=2, dram=True, psys=True)
    zones.append(FakeZone("intel-rapl-mmio:0", "package-0", 20.0))
    return FakePowercap(tmp_path / "powercap", zones)


def test_zone_names_and_channel_ids(tmp_path):
    fake = server_tree(tmp_path)
    m = RaplMeter(root=fake.root)
    chans = {c.id: c for c in m.open()}
    assert list(chans) == [
        "rapl.package-0", "rapl.package-0.core", "rapl.package-0.dram",
        "rapl.package-1", "rapl.package-1.core", "rapl.package-1.dram",
        "rapl.psys", "rapl.mmio.package-0",
    ]
    assert chans["rapl.package-0"].scope == "package"
    assert chans["rapl.package-1.dram"].scope == "dram"
    assert chans["rapl.package-0.core"].scope == "core"
    assert chans["rapl.psys"].scope == "psys"
    assert all(c.primary == "energy_j" and c.source == "measured" for c in chans.values())
    assert chans["rapl.package-0.dram"].info["max_energy_range_uj"] == 65_712_999_613
    assert chans["rapl.package-0"].info["power_ceiling_w"] == 125.0


def test_selector_and_meter_name(tmp_path):
    fake = server_tree(tmp_path)
    m = make_meter(f"rapl:package-1?root={fake.root}&name=cpu")
    assert [c.id for c in m.open()] == ["cpu.package-1", "cpu.package-1.core", "cpu.package-1.dram"]
    m = make_meter(f"rapl:package-0.dram,psys?root={fake.root}")
    assert [c.id for c in m.open()] == ["rapl.package-0.dram", "rapl.psys"]
    m = make_meter(f"rapl:package-7?root={fake.root}")
    with pytest.raises(MeterConfigError, match="available: package-0"):
        m.open()


def test_energy_and_power_from_counter(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones(packages=1, dram=False))
    clock = Clock()
    m = RaplMeter(root=fake.root, clock_ns=clock)
    m.open()
    r0 = m.read()
    assert r0.values["rapl.package-0"] == {"energy_j": 0.0}  # no power before two polls
    fake.add_energy("intel-rapl:0", 12.5)
    fake.add_energy("intel-rapl:0:0", 4.0)
    clock.tick(0.5)
    r1 = m.read().values
    assert r1["rapl.package-0"]["energy_j"] == pytest.approx(12.5)
    assert r1["rapl.package-0"]["power_w"] == pytest.approx(25.0)
    assert r1["rapl.package-0.core"]["power_w"] == pytest.approx(8.0)


def test_counter_wrapping_many_times_adds_up(tmp_path):
    # a 50 J counter starting near its top, wrapping 11 times in one session
    zones = [FakeZone("intel-rapl:0", "package-0", max_range_uj=50_000_000)]
    fake = FakePowercap(tmp_path, zones, start_uj={"intel-rapl:0": 49_000_000})
    clock = Clock()
    m = RaplMeter(root=fake.root, clock_ns=clock, interval_s=0.1)
    m.open()
    m.read()
    steps = [37.3, 44.9, 12.0, 49.5, 3.25, 48.0] * 10
    for j in steps:
        fake.add_energy("intel-rapl:0", j)
        clock.tick(1.0)
        v = m.read().values["rapl.package-0"]
        assert v["power_w"] == pytest.approx(j, abs=2e-6)  # never a negative or huge spike
    assert v["energy_j"] == pytest.approx(sum(steps), abs=1e-5)
    assert v["energy_j"] == pytest.approx(fake.truth_j("intel-rapl:0"), abs=1e-5)
    assert m.zones[0].unwrap.wraps == int((49.0 + sum(steps)) // 50.0)
    assert m.zones[0].unwrap.wraps > 10


def test_root_only_energy_is_config_error_with_fix(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones())
    fake.make_root_only("intel-rapl:0", "energy_uj")
    m = RaplMeter(root=fake.root, read_file=fake.read_file)
    with pytest.raises(MeterConfigError) as exc:
        m.open()
    msg = str(exc.value)
    assert "\n" not in msg
    assert "CVE-2020-8694" in msg and "chmod o+r" in msg and "max_energy_range_uj" in msg
    assert str(fake.root) in msg


def test_root_only_max_range_is_error_too(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones())
    fake.make_root_only("intel-rapl:0:1", "max_energy_range_uj")
    m = RaplMeter(root=fake.root, read_file=fake.read_file)
    with pytest.raises(MeterConfigError, match="max_energy_range_uj"):
        m.open()


def test_permission_error_injected_with_monkeypatch(tmp_path, monkeypatch):
    import drivers.rapl as rapl

    fake = FakePowercap(tmp_path, typical_zones())

    def deny(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    monkeypatch.setattr(rapl, "read_sysfs", deny)
    m = make_meter(f"rapl?root={fake.root}")
    with pytest.raises(MeterConfigError, match="sudo chmod"):
        m.open()


def test_no_powercap(tmp_path):
    with pytest.raises(MeterConfigError, match="no Linux powercap"):
        RaplMeter(root=tmp_path / "absent").open()
    (tmp_path / "empty" / "intel-rapl").mkdir(parents=True)
    with pytest.raises(MeterConfigError, match="no RAPL zone"):
        RaplMeter(root=tmp_path / "empty").open()


def test_zone_vanishes_mid_session(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones())
    m = RaplMeter(root=fake.root)
    m.open()
    m.read()
    fake.remove_zone("intel-rapl:0:1")
    with pytest.raises(MeterDisconnected, match="vanished"):
        m.read()
    m.close()
    assert "rapl.package-0.dram" not in [c.id for c in m.open()]


def test_control_dir_is_not_a_zone(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones(dram=False))
    assert [z.dirname for z in list_zones(fake.root)] == ["intel-rapl:0", "intel-rapl:0:0"]


def test_wrap_risk_flag_and_note(tmp_path):
    # 1 J counter with a 125 W limit wraps every 8 ms: a 0.5 s poll cannot keep up
    zones = [FakeZone("intel-rapl:0", "package-0", max_range_uj=1_000_000, power_limit_uw=125_000_000)]
    fake = FakePowercap(tmp_path, zones)
    clock = Clock()
    m = RaplMeter(root=fake.root, clock_ns=clock)
    m.open()
    assert any("wraps may be missed" in n for n in m.notes)
    m.read()
    clock.tick(0.5)
    assert m.read().flags == {"rapl.package-0": "wrap-risk"}


def test_live_tree_wraps_and_matches_truth(tmp_path):
    # 100 W into a 10 J counter: wraps every 100 ms; poll every ~5 ms
    zones = [FakeZone("intel-rapl:0", "package-0", 100.0, max_range_uj=10_000_000)]
    fake = FakePowercap(tmp_path, zones)
    m = make_meter(fake.uri)
    m.open()
    m.read()
    truth0 = fake.truth_j("intel-rapl:0")
    fake.start(tick_s=0.002)
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        m.read()
        time.sleep(0.004)
    fake.stop()
    v = m.read().values["rapl.package-0"]
    truth = fake.truth_j("intel-rapl:0") - truth0
    assert truth > 20.0  # several wraps happened
    assert v["energy_j"] == pytest.approx(truth, abs=1e-5)


def test_host_zones_follow_real_load(tmp_path):
    from drivers.fakes.powercap import host_zones

    stat = tmp_path / "stat"
    stat.write_text("cpu  0 0 0 100 0 0 0 0 0 0\n")
    zones = host_zones(str(stat))
    zones[0].watts(0.0)
    stat.write_text("cpu  100 0 0 100 0 0 0 0 0 0\n")  # fully busy since
    time.sleep(0.11)
    assert zones[0].power_at(0.0) == pytest.approx(51.0)
    fake = FakePowercap(tmp_path / "pc", zones)
    assert [c.id for c in make_meter(fake.uri).open()] == [
        "rapl.package-0", "rapl.package-0.core", "rapl.package-0.dram"]
