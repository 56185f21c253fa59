"""nvml: fake pynvml with counters, old GPUs without an energy counter, lost GPUs, no driver."""

from __future__ import annotations

import pytest

from drivers.base import MeterConfigError, MeterDisconnected
from drivers.fakes import nvml as fakenv
from drivers.fakes.nvml import FakeGpu, FakeNvml
from drivers.nvml import NvmlMeter
from drivers.registry import make_meter


class Clock:
    def __init__(self):
        self.s = 100.0

    def __call__(self):
        return self.s

    def ns(self):
        return int(round(self.s * 1e9))


def two_gpus(clock):
    return FakeNvml([FakeGpu.model("h100", 0, power=300.0, clock=clock),
                     FakeGpu.model("p100", 1, power=150.0, clock=clock)])


def test_fake_matches_real_pynvml_api():
    pynvml = pytest.importorskip("pynvml")
    nv = FakeNvml()
    for fn in ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
               "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage",
               "nvmlDeviceGetFieldValues", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetName",
               "nvmlDeviceGetUUID", "nvmlSystemGetDriverVersion", "nvmlDeviceGetArchitecture"):
        assert callable(getattr(pynvml, fn)) and callable(getattr(nv, fn))
    for const in ("NVML_FI_DEV_POWER_AVERAGE", "NVML_FI_DEV_POWER_INSTANT", "NVML_ERROR_GPU_IS_LOST",
                  "NVML_ERROR_NOT_SUPPORTED", "NVML_DEVICE_ARCH_VOLTA", "NVML_DEVICE_ARCH_AMPERE"):
        assert getattr(nv, const) == getattr(pynvml, const)
    for cls in ("NVMLError_GpuIsLost", "NVMLError_NotSupported", "NVMLError_LibraryNotFound",
                "NVMLError_DriverNotLoaded", "NVMLError_NoPermission"):
        assert getattr(nv, cls)().value == getattr(pynvml, cls)().value
    err = nv.NVMLError(15)
    assert isinstance(err, nv.NVMLError_GpuIsLost) and isinstance(err, nv.NVMLError)


def test_channels_and_info():
    clock = Clock()
    m = NvmlMeter(nvml=two_gpus(clock))
    a, b = m.open()
    assert (a.id, b.id) == ("nvml.0", "nvml.1")
    assert a.primary == "energy_j" and a.scope == "gpu"
    assert a.info["name"] == "NVIDIA H100 80GB HBM3" and a.info["uuid"].startswith("GPU-")
    assert a.info["driver_version"] == "550.54.15"
    assert a.info["enforced_power_limit_w"] == 700.0
    assert a.window_s == 1.0  # Hopper: power usage is a 1 s average
    assert set(a.quantities) >= {"power_instant_w", "power_average_w"}
    # Pascal: no counter -> power primary, energy integrated by us, said loudly
    assert b.primary == "power_w" and "INTEGRATED BY CALIBRATE" in b.info["energy"]
    assert "power_average_w" not in b.quantities
    assert any("nvml.1" in n and "no NVML energy counter" in n for n in m.notes)


def test_energy_counter_and_fallback_integration():
    clock = Clock()
    nv = two_gpus(clock)
    m = NvmlMeter(nvml=nv, clock_ns=clock.ns)
    m.open()
    r = m.read().values
    assert r["nvml.0"]["energy_j"] == 0.0 and r["nvml.1"]["energy_j"] == 0.0
    clock.s += 2.0
    r = m.read().values
    assert r["nvml.0"]["energy_j"] == pytest.approx(600.0, abs=1e-3)  # 300 W x 2 s, from the counter
    assert r["nvml.0"]["power_w"] == pytest.approx(300.0)
    assert r["nvml.0"]["power_instant_w"] == pytest.approx(300.0)
    assert r["nvml.1"]["energy_j"] == pytest.approx(300.0)  # 150 W x 2 s, integrated by us
    nv.gpus[0].power = 100.0
    nv.gpus[1].power = 50.0
    clock.s += 1.0
    r = m.read().values
    # the counter integrates the true trapezoid (300 -> 100 over 1 s = 200 J)
    assert r["nvml.0"]["energy_j"] == pytest.approx(800.0, abs=1e-3)
    assert r["nvml.1"]["energy_j"] == pytest.approx(400.0)
    assert nv.gpus[0].truth_j() == pytest.approx(800.0, abs=1e-3)


def test_gpu_lost_is_disconnect_not_crash():
    clock = Clock()
    nv = two_gpus(clock)
    m = NvmlMeter(nvml=nv, clock_ns=clock.ns)
    m.open()
    m.read()
    nv.gpus[1].lose()
    with pytest.raises(MeterDisconnected, match="lost"):
        m.read()
    m.close()
    with pytest.raises(MeterDisconnected):  # reopen while still lost: try again later
        m.open()
    nv.gpus[1].lost = False
    assert len(m.open()) == 2
    assert nv._init_count == 1  # every failed open shut NVML down again


def test_no_library_or_driver_is_config_error():
    for nv in (FakeNvml(library_missing=True), FakeNvml(driver_missing=True)):
        m = NvmlMeter(nvml=nv)
        with pytest.raises(MeterConfigError) as exc:
            m.open()
        assert "\n" not in str(exc.value) and "nvidia-ml-py" in str(exc.value)


def test_index_selection_and_bad_index():
    nv = FakeNvml([FakeGpu.model("a100", i) for i in range(3)])
    m = NvmlMeter(indices=[2], nvml=nv)
    assert [c.id for c in m.open()] == ["nvml.2"]
    with pytest.raises(MeterConfigError, match="no GPU 5"):
        NvmlMeter(indices=[5], nvml=FakeNvml()).open()
    with pytest.raises(MeterConfigError):
        make_meter("nvml:x")


def test_gpu_without_power_or_energy():
    class NoPower(FakeNvml):
        def nvmlDeviceGetPowerUsage(self, h):
            raise fakenv.NVMLError(fakenv._ERRORS["NOT_SUPPORTED"])

    nv = NoPower([FakeGpu.model("p100", 0), FakeGpu.model("a100", 1)])
    m = NvmlMeter(nvml=nv)
    # a100 has a counter, p100 neither: skipped loudly when reading all GPUs
    (ch,) = m.open()
    assert ch.id == "nvml.1" and "power_w" not in ch.quantities
    assert set(m.read().values["nvml.1"]) == {"energy_j", "power_instant_w", "power_average_w"}
    assert any("SKIPPED" in n for n in m.notes)
    with pytest.raises(MeterConfigError, match="neither"):
        NvmlMeter(indices=[0], nvml=nv).open()


def test_uri_fake_and_options():
    m = make_meter("nvml:1?fake=v100,t4&signal=constant:42&name=gpu")
    (ch,) = m.open()
    assert ch.id == "gpu.1" and ch.info["name"] == "Tesla T4"
    assert any("SIMULATED" in n for n in m.notes)
    assert m.read().values["gpu.1"]["power_w"] == pytest.approx(42.0)
    with pytest.raises(MeterConfigError):
        make_meter("nvml?signal=constant:1")
    with pytest.raises(MeterConfigError):
        make_meter("nvml?fake=quantum")


def test_field_value_decoding_with_real_struct():
    pynvml = pytest.importorskip("pynvml")
    from drivers.nvml import field_number

    fv = pynvml.c_nvmlFieldValue_t()
    fv.fieldId = pynvml.NVML_FI_DEV_POWER_INSTANT
    fv.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    fv.value.uiVal = 287_500
    assert field_number(fv) / 1e3 == 287.5
    fv.valueType = pynvml.NVML_VALUE_TYPE_DOUBLE
    fv.value.dVal = 12.25
    assert field_number(fv) == 12.25
