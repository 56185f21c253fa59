"""``interval=`` values that cannot work are refused (MeterConfigError naming the meter and
the allowed range), never replaced or run: inf, nan, 0, negative, below the meter's floor
(``Meter.min_interval_s``), above ``Meter.max_interval_s``."""

from __future__ import annotations

import math

import pytest

from calibrate.cli import main
from drivers.base import Meter, MeterConfigError, Reading
from drivers.cpu_model import CpuModelMeter
from drivers.nvml import NvmlMeter
from drivers.plugs import TasmotaPlug
from drivers.rapl import RaplMeter
from drivers.registry import make_meter
from drivers.wattsup import WattsUpMeter
from drivers.wt310 import WT310Meter

URIS = {
    "cpu-model": "cpu-model?idle=5&max=50",
    "tasmota": "tasmota://127.0.0.1:9",
    "shelly": "shelly://127.0.0.1:9?gen=1",
    "modbus-tcp": "modbus-tcp://127.0.0.1:9?profile=sdm630",
    "wattsup": "serial:/dev/null?protocol=wattsup",
    "sim:tasmota": "sim:tasmota",
}
BAD = ["inf", "-inf", "nan", "0", "0.0", "-1", "1e-9", "1e9"]


def _with(uri: str, opt: str) -> str:
    return uri + ("&" if "?" in uri else "?") + opt


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("kind", sorted(URIS))
def test_unworkable_intervals_are_config_errors(kind, value):
    with pytest.raises(MeterConfigError, match="interval") as exc:
        make_meter(_with(URIS[kind], f"interval={value}"))
    text = str(exc.value)
    assert "\n" not in text and " s" in text
    # names the meter (its URI or its name) and what is allowed
    assert {"modbus-tcp": "modbus", "sim:tasmota": "tasmota"}.get(kind, kind) in text
    assert "use " in text or "at most 3600" in text


def test_below_the_floor_names_the_floor():
    with pytest.raises(MeterConfigError, match=r"floor of 0\.05 s"):
        make_meter("tasmota://127.0.0.1:9?interval=0.01")
    with pytest.raises(MeterConfigError, match=r"floor of 1 s"):
        make_meter("serial:/dev/null?protocol=wattsup&interval=0.5")
    with pytest.raises(MeterConfigError, match=r"floor of 0\.01 s"):
        make_meter("cpu-model?idle=5&max=50&interval=0.001")
    with pytest.raises(MeterConfigError, match=r"above the limit of 3600 s"):
        make_meter("cpu-model?idle=5&max=50&interval=7200")


def test_floors_per_driver():
    assert Meter.min_interval_s == 0.01 and Meter.max_interval_s == 3600.0
    assert CpuModelMeter.min_interval_s == RaplMeter.min_interval_s == NvmlMeter.min_interval_s == 0.01
    assert TasmotaPlug.min_interval_s == 0.05
    assert WattsUpMeter.min_interval_s == 1.0
    assert WT310Meter.min_interval_s == 0.1
    from drivers.modbus import ModbusMeter
    assert ModbusMeter.min_interval_s == 0.05


def test_good_intervals_still_work():
    assert make_meter("cpu-model?idle=5&max=50&interval=0.01").interval_s == 0.01
    assert make_meter("cpu-model?idle=5&max=50&interval=3600").interval_s == 3600.0
    assert make_meter("cpu-model?idle=5&max=50").interval_s == CpuModelMeter.default_interval_s
    assert make_meter("tasmota://127.0.0.1:9?interval=0.05").interval_s == 0.05
    assert make_meter("serial:/dev/null?protocol=wattsup&interval=2").interval_s == 2.0


class _Dummy(Meter):
    kind = "dummy"

    def open(self):
        return []

    def read(self):
        return Reading({})


@pytest.mark.parametrize("value", [0, 0.0, -1, math.inf, math.nan, 1e-9, 1e9, "x"])
def test_library_api_refuses_too(value):
    """Meter(interval_s=0) used to mean "the default"; now every unworkable value is an error."""
    with pytest.raises(MeterConfigError, match="dummy: interval"):
        _Dummy(interval_s=value)
    assert _Dummy(interval_s=None).interval_s == 1.0


def test_cli_exit_code_2(capsys, tmp_path):
    rc = main(["run", "--meter", "cpu-model?idle=5&max=50&interval=inf", "--workload", "idle",
               "--duration", "1", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "interval" in err and "Traceback" not in err
