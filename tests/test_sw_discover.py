"""discover: what `calibrate meters` lists, with reasons and fixes."""

from __future__ import annotations

from drivers.discover import available_meters, cpu_model_entry, nvml_entries, rapl_entries
from drivers.fakes.nvml import FakeGpu, FakeNvml
from drivers.fakes.powercap import FakePowercap, typical_zones


def test_rapl_zones_readable_and_not(tmp_path):
    fake = FakePowercap(tmp_path, typical_zones(packages=1, dram=True))
    fake.make_root_only("intel-rapl:0:1", "energy_uj")
    entries = {e["uri"].split("?")[0]: e for e in rapl_entries(fake.root, fake.read_file)}
    assert set(entries) == {"rapl:package-0", "rapl:package-0.core", "rapl:package-0.dram"}
    assert entries["rapl:package-0"]["available"] is True
    assert "262143 J" in entries["rapl:package-0"]["detail"]
    dram = entries["rapl:package-0.dram"]
    assert dram["available"] is False and "root-only" in dram["detail"]
    assert "chmod o+r" in dram["fix"]
    assert all(e["uri"].endswith(f"?root={fake.root}") for e in entries.values())


def test_no_powercap(tmp_path):
    (e,) = rapl_entries(tmp_path / "none")
    assert e["available"] is False and "powercap" in e["detail"] and e["fix"]


def test_nvml_entries():
    nv = FakeNvml([FakeGpu.model("h100", 0), FakeGpu.model("p100", 1)])
    a, b = nvml_entries(nv)
    assert a["uri"] == "nvml:0" and a["available"] and "H100" in a["detail"] and "energy counter" in a["detail"]
    assert "NO energy counter" in b["detail"]
    assert nv._init_count == 0  # shut down after listing
    (e,) = nvml_entries(FakeNvml(library_missing=True))
    assert e["available"] is False and "Library Not Found" in e["detail"] and "nvidia-ml-py" in e["fix"]


def test_cpu_model_and_all(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4 5 6 7 8 0 0\n")
    e = cpu_model_entry(str(stat))
    assert e["available"] and "MODELLED" in e["detail"] and "idle=W&max=W" in e["fix"]
    assert cpu_model_entry(str(tmp_path / "nope"))["available"] is False
    fake = FakePowercap(tmp_path / "pc", typical_zones(dram=False))
    all_ = available_meters(fake.root, FakeNvml(), str(stat))
    uris = [x["uri"].split("?")[0] for x in all_]
    assert uris == ["rapl:package-0", "rapl:package-0.core", "nvml:0", "cpu-model", "codecarbon"]
    for x in all_:
        assert set(x) == {"uri", "available", "detail", "fix"}
