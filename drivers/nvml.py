"""``nvml``, ``nvml:0``, ``nvml:0,2``: NVIDIA GPUs through NVML (package nvidia-ml-py, module ``pynvml``).

Per GPU a channel ``<meter>.<index>`` (``nvml.0``) with

* ``energy_j`` -- ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded,
  Volta and newer), relative to the first poll: the primary reading.
* ``power_w`` -- ``nvmlDeviceGetPowerUsage`` (mW).  On Ampere and newer, except GA100,
  this is a 1 s average; A100/H100 refresh it about every 100 ms from ~25 ms of
  samples, V100/P100 every 20 ms from ~10 ms (Yang et al., SC 2024).
* ``power_instant_w`` / ``power_average_w`` -- field values ``NVML_FI_DEV_POWER_INSTANT``
  (186) and ``NVML_FI_DEV_POWER_AVERAGE`` (185), mW, where this GPU supports them.

GPUs without the energy counter (Pascal and older: ``NotSupported``) fall back to
``power_w`` with ``energy_j`` integrated *by calibrate* (trapezoid between this meter's
polls); the channel's ``primary`` is then ``power_w``, ``info["energy"]`` says so and a
note is printed -- never a silent 0 (CodeCarbon #1316).  A GPU with neither is refused.

``NVMLError_GpuIsLost`` (and GpuNotFound / ResetRequired) during a poll is
:class:`MeterDisconnected` (the recorder records the fault and reopens); no library or
driver is a :class:`MeterConfigError`.  The library is injected (``NvmlMeter(nvml=...)``,
default the real ``pynvml``); ``nvml?fake=a100,v100`` is the registry's way of injecting
the simulated GPUs of :mod:`drivers.fakes.nvml` (tests and ``calibrate demo`` only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.base import (
    Channel,
    CounterUnwrapper,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterReadError,
    Reading,
)

FI_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE, mW
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, mW
ARCH_VOLTA, ARCH_AMPERE = 5, 7
ARCH_NAMES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere",
              8: "Ada", 9: "Hopper", 10: "Blackwell", 13: "Rubin"}
LOST_ERRORS = ("NVMLError_GpuIsLost", "NVMLError_GpuNotFound", "NVMLError_ResetRequired")
INSTALL_HINT = "install the NVIDIA driver (nvidia-smi must work) and nvidia-ml-py"


#: c_nvmlValue_t member per NVML_VALUE_TYPE_* (pynvml: DOUBLE 0, UNSIGNED_INT 1, ... UNSIGNED_SHORT 6)
VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")


def field_number(fv: Any) -> float:
    """The number in an ``nvmlFieldValue_t`` according to its ``valueType``."""
    vt = int(getattr(fv, "valueType", 1))
    member = VALUE_MEMBERS[vt] if 0 <= vt < len(VALUE_MEMBERS) else "uiVal"
    return float(getattr(fv.value, member))


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


@dataclass
class Gpu:
    """State of one opened GPU."""

    index: int
    handle: Any
    channel: str
    has_energy: bool
    has_power: bool = True
    fields: list[int] = field(default_factory=list)  # supported power field ids
    unwrap: CounterUnwrapper = field(default_factory=lambda: CounterUnwrapper(None))
    last: tuple[int, float] | None = None  # (t_ns, power W) for our own integration
    energy_j: float = 0.0


class NvmlMeter(Meter):
    """NVIDIA GPUs via NVML; ``indices`` None = all GPUs.  ``nvml``: a pynvml-like module."""

    # NVML calls answer in microseconds, so NVML shares the recorder's polling thread with
    # RAPL and cpu-model (one wake-up for all).  They can stall for seconds when a GPU falls
    # off the bus: the recorder then moves this meter to a thread of its own (may_stall), so
    # the stall delays the other meters once, by at most that one call.
    local = True
    may_stall = True

    kind = "nvml"
    default_interval_s = 0.2  # NVML power refreshes every 20-100 ms; energy is cumulative
    min_interval_s = 0.01  # an in-process library call

    def __init__(self, indices: list[int] | None = None, name: str | None = None,
                 interval_s: float | None = None, nvml: Any = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(name, interval_s)
        self.indices = indices
        self._nv = nvml
        self._clock = clock_ns
        self.gpus: list[Gpu] = []
        self.driver_version: str | None = None
        self._initialised = False
        self._base_notes: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    @property
    def nv(self) -> Any:
        if self._nv is None:
            try:
                import pynvml  # nvidia-ml-py; imported lazily
            except ImportError:
                raise MeterConfigError(f"{self.name}: Python module pynvml not found; "
                                       "pip install nvidia-ml-py") from None
            self._nv = pynvml
        return self._nv

    def _is(self, exc: BaseException, *names: str) -> bool:
        return any(isinstance(exc, c) for c in (getattr(self.nv, n, None) for n in names)
                   if isinstance(c, type))

    def _call(self, fn: str, *args: Any) -> Any:
        """One NVML call; lost GPU -> MeterDisconnected, other NVML errors -> MeterReadError."""
        try:
            return getattr(self.nv, fn)(*args)
        except self.nv.NVMLError as exc:
            if self._is(exc, *LOST_ERRORS):
                raise MeterDisconnected(f"{self.name}: GPU lost during {fn} ({exc})") from None
            raise MeterReadError(f"{self.name}: {fn}: {exc}", code="exception") from None

    def _optional(self, fn: str, *args: Any) -> Any:
        """A call whose NotSupported / NoPermission just means 'unknown' (None)."""
        try:
            return getattr(self.nv, fn)(*args)
        except self.nv.NVMLError as exc:
            if self._is(exc, *LOST_ERRORS):
                raise MeterDisconnected(f"{self.name}: GPU lost during {fn} ({exc})") from None
            return None
        except AttributeError:  # an older nvidia-ml-py without this function
            return None

    # -- Meter -------------------------------------------------------------------------------
    def open(self) -> list[Channel]:
        self.close()
        if not self._base_notes:
            self._base_notes = list(self.notes)
        nv = self.nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise MeterConfigError(f"{self.name}: NVML unavailable ({exc}); {INSTALL_HINT}") from None
        self._initialised = True
        try:
            return self._open_devices()
        except BaseException:
            self.close()
            raise

    def _open_devices(self) -> list[Channel]:
        nv = self.nv
        count = self._call("nvmlDeviceGetCount")
        if count == 0:
            raise MeterConfigError(f"{self.name}: NVML sees no GPU; {INSTALL_HINT}")
        wanted = list(range(count)) if self.indices is None else self.indices
        bad = [i for i in wanted if not 0 <= i < count]
        if bad:
            raise MeterConfigError(f"{self.name}: no GPU {bad[0]}; NVML sees {count} (0..{count - 1})")
        self.driver_version = _text(self._optional("nvmlSystemGetDriverVersion"))
        self.notes = list(self._base_notes)
        self.skipped = []
        self.channels = []
        for i in wanted:
            h = self._call("nvmlDeviceGetHandleByIndex", i)
            name = _text(self._optional("nvmlDeviceGetName", h))
            uuid = _text(self._optional("nvmlDeviceGetUUID", h))
            arch = self._optional("nvmlDeviceGetArchitecture", h)
            limit_mw = self._optional("nvmlDeviceGetEnforcedPowerLimit", h)
            chan = f"{self.name}.{i}"
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(h)
                has_energy = True
            except nv.NVMLError as exc:
                if self._is(exc, *LOST_ERRORS):
                    raise MeterDisconnected(f"{self.name}: GPU {i} lost ({exc})") from None
                has_energy = False
            has_power = self._optional("nvmlDeviceGetPowerUsage", h) is not None
            fields: list[int] = []
            try:
                for fv in nv.nvmlDeviceGetFieldValues(h, [FI_POWER_AVERAGE, FI_POWER_INSTANT]):
                    if fv.nvmlReturn == 0:
                        fields.append(int(fv.fieldId))
            except nv.NVMLError as exc:
                if self._is(exc, *LOST_ERRORS):
                    raise MeterDisconnected(f"{self.name}: GPU {i} lost ({exc})") from None
            except AttributeError:
                pass
            if not has_energy and not has_power:
                msg = (f"{chan} ({name}): NVML reports neither an energy counter nor power "
                       "on this GPU; it cannot be measured")
                if self.indices is not None:
                    raise MeterConfigError(f"{self.name}: {msg}; drop it from nvml:{i}")
                self.notes.append(f"{msg} -- SKIPPED")
                self.skipped.append(msg)
                continue
            gpu = Gpu(i, h, chan, has_energy, has_power, fields)
            self.gpus.append(gpu)
            # power averaging per architecture (Yang et al., SC 2024; NVML docs)
            one_s_avg = arch is not None and arch >= ARCH_AMPERE and "A100" not in name
            if one_s_avg:
                window, update = 1.0, 0.1
            elif arch is not None and arch >= ARCH_AMPERE:
                window, update = 0.025, 0.1
            elif arch is not None:
                window, update = 0.01, 0.02
            else:
                window, update = None, None
            quantities = ["energy_j", "power_w"] if has_power else ["energy_j"]
            quantities += [q for fid, q in ((FI_POWER_INSTANT, "power_instant_w"),
                                            (FI_POWER_AVERAGE, "power_average_w")) if fid in fields]
            if has_energy:
                energy_how = "nvmlDeviceGetTotalEnergyConsumption (GPU energy counter, mJ)"
            else:
                energy_how = ("INTEGRATED BY CALIBRATE from nvmlDeviceGetPowerUsage between polls: "
                              "this GPU has no energy counter (pre-Volta)")
                self.notes.append(f"{chan} ({name}): no NVML energy counter; energy_j is power "
                                  f"integrated by calibrate every {self.interval_s:g} s, power_w is primary")
            self.channels.append(Channel(
                id=chan, scope="gpu", source="measured", quantities=tuple(quantities),
                window_s=window, update_interval_s=update,
                energy_resolution_j=1e-3 if has_energy else None,
                primary="energy_j" if has_energy else "power_w",
                info={"index": i, "name": name, "uuid": uuid, "driver_version": self.driver_version,
                      "architecture": ARCH_NAMES.get(arch, arch) if arch is not None else None,
                      "enforced_power_limit_w": limit_mw / 1e3 if limit_mw is not None else None,
                      "energy": energy_how,
                      "power_w": "nvmlDeviceGetPowerUsage" + (" (1 s average)" if one_s_avg else ""),
                      "power_fields": [q for q in quantities if q.startswith("power_") and q != "power_w"]},
            ))
        if not self.gpus:
            raise MeterConfigError(f"{self.name}: no GPU with NVML power or energy; see notes")
        return self.channels

    def read(self) -> Reading:
        if not self.gpus:
            raise MeterDisconnected(f"{self.name}: not open")
        values: dict[str, dict[str, float]] = {}
        flags: dict[str, str] = {}
        for g in self.gpus:
            t0 = self._clock()
            v: dict[str, float] = {}
            p_mw = self._call("nvmlDeviceGetPowerUsage", g.handle) if g.has_power else None
            if g.has_energy:
                mj = self._call("nvmlDeviceGetTotalEnergyConsumption", g.handle)
            if g.fields:
                for fv in self._call("nvmlDeviceGetFieldValues", g.handle, g.fields):
                    if fv.nvmlReturn != 0:
                        flags[g.channel] = "field-error"
                        continue
                    q = "power_average_w" if int(fv.fieldId) == FI_POWER_AVERAGE else "power_instant_w"
                    v[q] = field_number(fv) / 1e3  # mW -> W
            t_ns = (t0 + self._clock()) // 2
            if p_mw is not None:
                v["power_w"] = p_mw / 1e3
            if g.has_energy:
                v["energy_j"] = g.unwrap.update(float(mj)) / 1e3
            else:
                p = v["power_w"]  # has_power is true for every GPU without a counter
                if g.last is not None and t_ns > g.last[0]:
                    g.energy_j += 0.5 * (p + g.last[1]) * (t_ns - g.last[0]) / 1e9
                g.last = (t_ns, p)
                v["energy_j"] = g.energy_j
            values[g.channel] = v
        return Reading(values, flags=flags)

    def close(self) -> None:
        self.gpus = []
        if self._initialised:
            self._initialised = False
            try:
                self.nv.nvmlShutdown()
            except Exception:
                pass

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "indices": self.indices, "driver_version": self.driver_version,
                "gpus": {c.id: {k: c.info.get(k) for k in ("name", "uuid", "energy")} for c in self.channels}}


def from_uri(uri: Any, nvml: Any = None) -> NvmlMeter:
    """``nvml[:I[,J]]`` -> NvmlMeter; ``nvml``: the library to use (default pynvml)."""
    indices = None
    if uri.target:
        try:
            indices = [int(x) for x in uri.target.split(",")]
        except ValueError:
            raise MeterConfigError(f"{uri.raw}: nvml:N takes GPU indices (nvml:0 or nvml:0,1)") from None
    return NvmlMeter(indices=indices, name=uri.name, interval_s=uri.interval_s, nvml=nvml)
