"""A fake ``pynvml`` (nvidia-ml-py) module with simulated GPUs, for tests and ``calibrate demo``.

:class:`FakeNvml` has the same function names, constants, return units and error classes
as nvidia-ml-py's ``pynvml`` (checked against nvidia-ml-py 13.x): ``NVMLError(code)``
becomes the matching ``NVMLError_<Name>`` subclass, e.g. ``NVMLError_NotSupported``
(3), ``NVMLError_GpuIsLost`` (15), ``NVMLError_LibraryNotFound`` (12).  Pass an instance
wherever the module would go (``NvmlMeter(nvml=FakeNvml(...))``) or use
``nvml?fake=a100,v100`` (tests and demo only; the registry routes it to :func:`from_uri`).

Each :class:`FakeGpu` integrates its power (W: a number or a callable of seconds) on its
own clock into the total-energy counter (mJ, Volta and newer; ``NotSupported`` on
Pascal and older, like the real library), serves ``nvmlDeviceGetPowerUsage`` (mW) and
the power field values 185/186 (average: Ampere and newer only), and can be made to
vanish (``lose()``: every call then raises ``NVMLError_GpuIsLost``, after hanging for
``stall_s`` if given).
"""

from __future__ import annotations

import string
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# -- constants, same values as pynvml -------------------------------------------------------
NVML_SUCCESS = 0
_ERRORS = {
    "UNINITIALIZED": 1, "INVALID_ARGUMENT": 2, "NOT_SUPPORTED": 3, "NO_PERMISSION": 4,
    "ALREADY_INITIALIZED": 5, "NOT_FOUND": 6, "INSUFFICIENT_SIZE": 7, "INSUFFICIENT_POWER": 8,
    "DRIVER_NOT_LOADED": 9, "TIMEOUT": 10, "IRQ_ISSUE": 11, "LIBRARY_NOT_FOUND": 12,
    "FUNCTION_NOT_FOUND": 13, "CORRUPTED_INFOROM": 14, "GPU_IS_LOST": 15, "RESET_REQUIRED": 16,
    "OPERATING_SYSTEM": 17, "LIB_RM_VERSION_MISMATCH": 18, "IN_USE": 19, "MEMORY": 20,
    "NO_DATA": 21, "GPU_NOT_FOUND": 28, "UNKNOWN": 999,
}
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_DEVICE_ARCH_KEPLER, NVML_DEVICE_ARCH_MAXWELL, NVML_DEVICE_ARCH_PASCAL = 2, 3, 4
NVML_DEVICE_ARCH_VOLTA, NVML_DEVICE_ARCH_TURING, NVML_DEVICE_ARCH_AMPERE = 5, 6, 7
NVML_DEVICE_ARCH_ADA, NVML_DEVICE_ARCH_HOPPER, NVML_DEVICE_ARCH_BLACKWELL = 8, 9, 10


class NVMLError(Exception):
    """Same shape as pynvml.NVMLError: ``NVMLError(code)`` returns the code's subclass."""

    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value: int) -> NVMLError:  # noqa: D102
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        names = {v: k for k, v in _ERRORS.items()}
        return names.get(self.value, f"NVML Error with code {self.value}").replace("_", " ").title()


def _make_error_classes() -> dict[str, type]:
    out: dict[str, type] = {}
    for err, code in _ERRORS.items():
        cls_name = "NVMLError_" + string.capwords(err, "_").replace("_", "")

        def gen_new(val: int) -> Callable[..., Any]:
            def new(typ: type, *args: Any) -> Any:
                return NVMLError.__new__(typ, val)
            return new

        cls = type(cls_name, (NVMLError,), {"__new__": gen_new(code)})
        NVMLError._valClassMapping[code] = cls
        out[cls_name] = cls
    return out


_ERROR_CLASSES = _make_error_classes()
globals().update(_ERROR_CLASSES)


def _err(name: str) -> NVMLError:
    return NVMLError(_ERRORS[name])


# -- devices ---------------------------------------------------------------------------------
Watts = float | Callable[[float], float]

#: model key -> (name, architecture, enforced limit W, idle W)
MODELS: dict[str, tuple[str, int, float, float]] = {
    "h100": ("NVIDIA H100 80GB HBM3", NVML_DEVICE_ARCH_HOPPER, 700.0, 70.0),
    "a100": ("NVIDIA A100-SXM4-40GB", NVML_DEVICE_ARCH_AMPERE, 400.0, 55.0),
    "rtx3090": ("NVIDIA GeForce RTX 3090", NVML_DEVICE_ARCH_AMPERE, 350.0, 30.0),
    "t4": ("Tesla T4", NVML_DEVICE_ARCH_TURING, 70.0, 10.0),
    "v100": ("Tesla V100-SXM2-16GB", NVML_DEVICE_ARCH_VOLTA, 300.0, 40.0),
    "p100": ("Tesla P100-PCIE-16GB", NVML_DEVICE_ARCH_PASCAL, 250.0, 30.0),
}


@dataclass
class FieldValue:
    """Like pynvml.c_nvmlFieldValue_t: fieldId, scopeId, timestamp (us), nvmlReturn, value."""

    fieldId: int
    scopeId: int = 0
    timestamp: int = 0
    latencyUsec: int = 0
    valueType: int = NVML_VALUE_TYPE_UNSIGNED_INT
    nvmlReturn: int = NVML_SUCCESS
    value: Any = None


@dataclass
class FakeGpu:
    """One simulated GPU; ``power`` in W (number or callable of seconds since creation)."""

    name: str = MODELS["a100"][0]
    arch: int = NVML_DEVICE_ARCH_AMPERE
    limit_w: float = 400.0
    power: Watts = 55.0
    uuid: str = ""
    energy_mj_start: float = 123_456_789.0  # the counter counts since the driver loaded
    lost: bool = False
    stall_s: float = 0.0  # while lost, each call hangs this long before failing (driver timeouts)
    clock: Callable[[], float] = time.monotonic
    _t0: float = field(default=0.0, repr=False)
    _last_t: float = field(default=0.0, repr=False)
    _last_p: float = field(default=0.0, repr=False)
    _energy_mj: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._t0 = self._last_t = self.clock()
        self._last_p = self.power_at(0.0)
        self._energy_mj = self.energy_mj_start

    @classmethod
    def model(cls, key: str, index: int = 0, **kw: Any) -> FakeGpu:
        name, arch, limit, idle = MODELS[key]
        kw.setdefault("power", idle)
        return cls(name=name, arch=arch, limit_w=limit,
                   uuid=f"GPU-fake{index:04d}-{key}-0000-0000-000000000000", **kw)

    def power_at(self, t: float) -> float:
        return float(self.power(t)) if callable(self.power) else float(self.power)

    def advance(self) -> float:
        """Integrate power up to now (trapezoid); returns the current power (W)."""
        with self._lock:
            now = self.clock()
            p = self.power_at(now - self._t0)
            self._energy_mj += 0.5 * (p + self._last_p) * (now - self._last_t) * 1e3
            self._last_t, self._last_p = now, p
            return p

    def truth_j(self) -> float:
        """Energy since creation (J), what a correct reader reports as a difference."""
        self.advance()
        return (self._energy_mj - self.energy_mj_start) / 1e3

    @property
    def has_energy_counter(self) -> bool:
        return self.arch >= NVML_DEVICE_ARCH_VOLTA

    def lose(self, stall_s: float = 0.0) -> None:
        """The GPU falls off the bus: every call on it raises NVMLError_GpuIsLost.

        ``stall_s`` > 0: each call first hangs that long (s), as the real library does
        while the driver waits for a GPU that no longer answers.
        """
        self.stall_s = stall_s
        self.lost = True


class FakeNvml(types.SimpleNamespace):
    """A pynvml-compatible namespace over a list of :class:`FakeGpu`.

    ``library_missing`` / ``driver_missing`` make ``nvmlInit`` fail as on a machine without
    the NVIDIA driver.
    """

    def __init__(self, gpus: list[FakeGpu] | None = None, driver_version: str = "550.54.15",
                 library_missing: bool = False, driver_missing: bool = False) -> None:
        super().__init__(**_ERROR_CLASSES)
        self.NVMLError = NVMLError
        for k, v in globals().items():
            if k.startswith("NVML_") and isinstance(v, int):
                setattr(self, k, v)
        for key, code in _ERRORS.items():
            setattr(self, f"NVML_ERROR_{key}", code)
        self.gpus = gpus if gpus is not None else [FakeGpu.model("a100", 0)]
        self.driver_version = driver_version
        self.library_missing, self.driver_missing = library_missing, driver_missing
        self._init_count = 0
        self.calls = 0

    # -- library --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.library_missing:
            raise _err("LIBRARY_NOT_FOUND")
        if self.driver_missing:
            raise _err("DRIVER_NOT_LOADED")
        self._init_count += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self._init_count -= 1

    def _check_init(self) -> None:
        if self._init_count <= 0:
            raise _err("UNINITIALIZED")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check_init()
        if not 0 <= index < len(self.gpus):
            raise _err("INVALID_ARGUMENT")
        return self._dev(self.gpus[index])

    def _dev(self, h: FakeGpu) -> FakeGpu:
        self.calls += 1
        if self._init_count <= 0:
            raise _err("UNINITIALIZED")
        if h.lost:
            if h.stall_s > 0:
                time.sleep(h.stall_s)
            raise _err("GPU_IS_LOST")
        return h

    # -- identity -------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return self._dev(h).name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return self._dev(h).uuid

    def nvmlDeviceGetArchitecture(self, h: FakeGpu) -> int:
        return self._dev(h).arch

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return int(round(self._dev(h).limit_w * 1e3))  # mW

    # -- power and energy -----------------------------------------------------------------
    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return int(round(self._dev(h).advance() * 1e3))  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        g = self._dev(h)
        if not g.has_energy_counter:
            raise _err("NOT_SUPPORTED")
        g.advance()
        return int(g._energy_mj)  # mJ, truncated like the driver's integer counter

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, field_ids: list[Any]) -> list[FieldValue]:
        g = self._dev(h)
        p = g.advance()
        ts = int(time.time() * 1e6)
        out = []
        for fid in field_ids:
            fid, scope = fid if isinstance(fid, tuple) else (fid, 0)
            fv = FieldValue(fieldId=fid, scopeId=scope, timestamp=ts)
            supported = (fid == NVML_FI_DEV_POWER_INSTANT
                         or (fid == NVML_FI_DEV_POWER_AVERAGE and g.arch >= NVML_DEVICE_ARCH_AMPERE))
            if supported:
                fv.value = types.SimpleNamespace(uiVal=int(round(p * 1e3)))
            else:
                fv.nvmlReturn = _ERRORS["NOT_SUPPORTED"]
                fv.value = types.SimpleNamespace(uiVal=0)
            out.append(fv)
        return out


def from_spec(spec: str, power: Watts | None = None) -> FakeNvml:
    """``a100,v100`` (model keys of MODELS) or ``N`` (N A100s) -> FakeNvml.

    ``power``: the GPUs' power (W) or a signal; default each model's idle power.
    """
    from drivers.base import MeterConfigError

    spec = spec.strip().lower()
    keys = ["a100"] * int(spec) if spec.isdigit() else [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown or not keys:
        raise MeterConfigError(f"nvml?fake={spec}: use N or a comma list of {', '.join(MODELS)}")
    kw = {} if power is None else {"power": power}
    return FakeNvml([FakeGpu.model(k, i, **kw) for i, k in enumerate(keys)])


def from_uri(uri: Any) -> Any:
    """``nvml[:I[,J]]?fake=SPEC[&signal=SIGNAL]``: the production NVML driver reading the
    simulated GPUs of :func:`from_spec` (power following ``signal``, default this host's
    load model).  The registry calls this instead of :func:`drivers.nvml.from_uri` when
    ``fake=`` is given."""
    from drivers.nvml import from_uri as nvml_from_uri
    from drivers.sim.signals import make_signal

    spec = uri.take("fake")
    library = from_spec(spec, power=make_signal(uri.take("signal", None) or "host"))
    meter = nvml_from_uri(uri, nvml=library)
    meter.notes.append(f"{meter.name}: SIMULATED GPUs ({spec}), not real hardware")
    return meter
