"""What software meters this machine offers (``calibrate meters``), and why one is unavailable.

:func:`available_meters` returns one dict per meter URI::

    {"uri": "rapl:package-0", "available": False,
     "detail": "package-0 (intel-rapl:0): energy_uj is root-only",
     "fix": "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj ..."}

covering RAPL zones (readable or not), NVIDIA GPUs through NVML, the utilisation model
(always available) and CodeCarbon (installed or not).  Serial ports are listed by
``drivers.probe``.  Nothing here raises: every failure becomes an entry with a fix.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from drivers.base import MeterConfigError, MeterError


def _entry(uri: str, available: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"uri": uri, "available": available, "detail": detail, "fix": fix}


def rapl_entries(root: str | Path = "/sys/class/powercap", read_file: Any = None) -> list[dict[str, Any]]:
    """One entry per RAPL zone under ``root`` (or one saying why there is none)."""
    from drivers.rapl import DEFAULT_ROOT, fix_hint, list_zones, read_sysfs

    read = read_file or read_sysfs
    uri_root = "" if str(root) == DEFAULT_ROOT else f"?root={root}"
    try:
        zones = list_zones(root, read)
    except MeterConfigError as exc:
        msg = str(exc).removeprefix("rapl: ")
        return [_entry(f"rapl{uri_root}", False, msg,
                       "needs Linux powercap with RAPL (sudo modprobe intel_rapl_msr); "
                       "bare metal, not a VM; otherwise use cpu-model")]
    out = []
    for z in zones:
        problems: list[str] = []
        wrap = None
        for attr in ("energy_uj", "max_energy_range_uj"):
            try:
                value = int(read(z.path / attr).strip())
                if attr == "max_energy_range_uj":
                    wrap = value / 1e6
            except PermissionError:
                problems.append(f"{attr} is root-only (CVE-2020-8694)")
            except (OSError, ValueError) as exc:
                problems.append(f"{attr} unreadable ({exc})")
        detail = f"{z.qualified} ({z.dirname})"
        if problems:
            out.append(_entry(f"rapl:{z.qualified}{uri_root}", False, f"{detail}: {'; '.join(problems)}",
                              fix_hint(root).removeprefix("fix: ")))
        else:
            out.append(_entry(f"rapl:{z.qualified}{uri_root}", True,
                              f"{detail}: measured energy counter, wraps at {wrap:.0f} J"))
    return out


def nvml_entries(nvml: Any = None) -> list[dict[str, Any]]:
    """One entry per NVIDIA GPU NVML sees (or one saying why none)."""
    from drivers.nvml import INSTALL_HINT, NvmlMeter

    meter = NvmlMeter(nvml=nvml)
    try:
        channels = meter.open()
    except MeterError as exc:
        return [_entry("nvml", False, str(exc).removeprefix("nvml: ").split(";")[0], INSTALL_HINT)]
    except Exception as exc:  # an unexpected library failure must not break `calibrate meters`
        return [_entry("nvml", False, f"NVML failed: {exc}", INSTALL_HINT)]
    try:
        out = []
        for ch in channels:
            i = ch.info
            energy = ("energy counter" if ch.primary == "energy_j"
                      else "NO energy counter: power integrated by calibrate")
            limit = i.get("enforced_power_limit_w")
            out.append(_entry(
                f"nvml:{i['index']}", True,
                f"{i.get('name')} ({i.get('architecture')}), {energy}"
                + (f", limit {limit:g} W" if limit else "") + f", driver {i.get('driver_version')}"))
        for part in meter.skipped:
            out.append(_entry("nvml", False, f"{part} -- SKIPPED", "this GPU exposes no power sensor to NVML"))
        return out
    finally:
        meter.close()


def cpu_model_entry(stat_path: str = "/proc/stat") -> dict[str, Any]:
    """The utilisation model: available wherever /proc/stat is."""
    from drivers.cpu_model import CpuModelMeter

    m = CpuModelMeter(stat_path=stat_path)
    assumed = ", ".join(f"{k.removesuffix('_w')} assumed" for k in m.assumed) or "given"
    detail = (f"MODELLED from CPU utilisation: idle {m.idle_w:.1f} W, max {m.max_w:.1f} W ({assumed}; "
              f"CPU {m.cpu_model!r})")
    if not Path(stat_path).is_file():
        return _entry("cpu-model", False, f"{stat_path} not found", "cpu-model needs Linux /proc/stat")
    return _entry("cpu-model", True, detail,
                  "measure idle and full-load watts, or fit them (cpu_model.fit_idle_max), "
                  "and pass cpu-model?idle=W&max=W" if m.assumed else "")


def codecarbon_entry() -> dict[str, Any]:
    """CodeCarbon installed or not (not imported: that is slow)."""
    if importlib.util.find_spec("codecarbon") is None:
        return _entry("codecarbon", False, "CodeCarbon is not installed",
                      "pip install 'calibrate[codecarbon]'")
    try:
        from importlib.metadata import version

        ver = version("codecarbon")
    except Exception:
        ver = "?"
    return _entry("codecarbon", True,
                  f"CodeCarbon {ver}: its own estimate (CPU via RAPL when readable, else a TDP model; "
                  "RAM modelled; GPUs via NVML)")


def available_meters(powercap_root: str | Path = "/sys/class/powercap", nvml: Any = None,
                     stat_path: str = "/proc/stat", rapl_read_file: Any = None) -> list[dict[str, Any]]:
    """Software meters of this machine: RAPL zones, NVML GPUs, cpu-model, codecarbon."""
    return [*rapl_entries(powercap_root, rapl_read_file), *nvml_entries(nvml),
            cpu_model_entry(stat_path), codecarbon_entry()]
