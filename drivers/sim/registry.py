"""The simulator registry: which simulator serves each ``sim:KIND``, and building one."""

from __future__ import annotations

import importlib
from typing import Any

from drivers.base import MeterConfigError
from drivers.sim.simulator import Simulator

#: kind -> "module:Class"
SIMULATORS: dict[str, str] = {
    "wattsup": "drivers.sim.wattsup:WattsUpSimulator",
    "wt310": "drivers.sim.wt310:WT310Simulator",
    "sdm120": "drivers.sim.modbus_sim:SDMSimulator",
    "sdm230": "drivers.sim.modbus_sim:SDMSimulator",
    "sdm630": "drivers.sim.modbus_sim:SDMSimulator",
    "tasmota": "drivers.sim.plugs_sim:TasmotaSimulator",
    "shelly": "drivers.sim.plugs_sim:ShellySimulator",
    "redfish": "drivers.sim.redfish_sim:RedfishSimulator",
    "prometheus": "drivers.sim.prometheus_sim:PrometheusSimulator",
}



def simulator_class(kind: str) -> type[Simulator]:
    if kind not in SIMULATORS:
        raise MeterConfigError(f"unknown simulator {kind!r}; known: {', '.join(sorted(SIMULATORS))}")
    module, _, cls = SIMULATORS[kind].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise MeterConfigError(f"simulator {kind!r} is not available ({exc})") from None


def make_simulator(kind: str, **opts: Any) -> Simulator:
    cls = simulator_class(kind)
    if "model" in cls.options and "model" not in opts:
        opts["model"] = kind
    return cls(**opts)
