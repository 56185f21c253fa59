"""``rapl``, ``rapl:package-0``, ``rapl?root=DIR``: RAPL energy counters through Linux powercap.

Why our own reader and not pyRAPL/pyJoules: pyRAPL (last release 0.2.3.1, 2019) and
pyJoules 0.5.1 subtract raw counters with no wrap-around handling, claim Intel only,
hard-code ``/sys/class/powercap`` (so they cannot be tested or pointed at another tree)
and carry fixes that were never released.  The powercap interface is a handful of text
files, so a small reader of our own is the careful choice: zones are matched by their
``name`` file, the counter is unwrapped with ``max_energy_range_uj``, and the root is
replaceable (tests and ``calibrate demo`` use :mod:`drivers.fakes.powercap`).

Zones are the directories ``intel-rapl:N`` (``package-N``, or ``psys``), their subzones
``intel-rapl:N:M`` (``core``, ``uncore``, ``dram``) and ``intel-rapl-mmio:N[:M]`` (some
laptops).  AMD Zen CPUs appear through the same driver and naming (package and core).

Channel id rule (``<meter>`` is the meter name, ``rapl`` by default):

* top-level zone ``intel-rapl:N``            -> ``<meter>.<name>``              (rapl.package-0, rapl.psys)
* subzone ``intel-rapl:N:M``                 -> ``<meter>.<parent name>.<name>`` (rapl.package-0.dram)
* MMIO zone ``intel-rapl-mmio:N[:M]``        -> the same with ``mmio.`` first    (rapl.mmio.package-0)
* a qualified name that is still not unique gets ``@<zone directory>`` appended.

``rapl:SEL[,SEL...]`` keeps the zones whose qualified name (without ``<meter>.``) equals
SEL or starts with ``SEL.``: ``rapl:package-0`` is package 0 with its subzones,
``rapl:package-0.dram`` only its DRAM zone.

Each channel's primary reading is ``energy_j``: ``energy_uj`` unwrapped with
``max_energy_range_uj`` (:class:`drivers.base.CounterUnwrapper`); ``power_w`` is the
energy difference over the time between this meter's consecutive polls (absent on the
first poll).  Subzone energy is *included* in its package: never add them up.
Each poll re-reads every ``energy_uj`` through :class:`drivers.kernel_files.AttrFile`
(kept open and re-read with ``pread`` on a real sysfs: about 1.3 us a zone instead of
27 us through ``open()``).

Permissions: since CVE-2020-8694 (PLATYPUS) ``energy_uj`` is mode 0400 (root only).  An
unreadable ``energy_uj`` *or* ``max_energy_range_uj`` is a MeterConfigError naming the
fix -- never a fallback: CodeCarbon produced negative energies when only ``energy_uj``
was readable (#1309).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
from drivers.kernel_files import GONE, AttrFile, read_bytes

DEFAULT_ROOT = "/sys/class/powercap"
ZONE_DIR = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)((?::\d+)*)$")
SCOPES = {"core": "core", "uncore": "uncore", "dram": "dram", "psys": "psys"}
ReadFile = Callable[[Path], str]


def read_sysfs(path: Path) -> str:
    """Text of one sysfs attribute (one open/read/close; the poll path uses :class:`AttrFile`)."""
    return read_bytes(path).decode(errors="replace")


def fix_hint(root: str | Path) -> str:
    """The one-line fix for root-only RAPL files under ``root``."""
    r = str(root).rstrip("/")
    return (f"fix: sudo chmod o+r {r}/intel-rapl:*/energy_uj {r}/intel-rapl:*/max_energy_range_uj "
            "(until reboot; make it permanent with a udev rule or a sysfsutils 'mode = 0444' line), "
            "or run calibrate as root")


def scope_of(name: str) -> str:
    """Channel scope of a zone ``name`` (package-N -> package, dram -> dram, ...)."""
    if name.startswith("package"):
        return "package"
    return SCOPES.get(name, "cpu")


@dataclass
class Zone:
    """One powercap zone: its directory, ``name``, qualified name and counter range (uJ)."""

    path: Path
    dirname: str
    name: str
    qualified: str = ""
    parent: str | None = None  # parent zone directory name
    max_range_uj: int | None = None
    power_ceiling_w: float | None = None  # highest constraint power in the zone, if any
    unwrap: CounterUnwrapper = field(default_factory=lambda: CounterUnwrapper(None))
    channel: str = ""  # channel id, set when the meter opens
    energy_file: AttrFile | None = None  # energy_uj, polled (kept open on a real sysfs)


def list_zones(root: str | Path, read_file: ReadFile | None = None) -> list[Zone]:
    """All RAPL zones under ``root`` with names and qualified names (no counter reads).

    Raises MeterConfigError if ``root`` has no RAPL zone.
    """
    root = Path(root)
    read_file = read_file or read_sysfs
    if not root.is_dir():
        raise MeterConfigError(
            f"rapl: {root} does not exist: no Linux powercap here (needs Linux with the "
            "intel_rapl_msr / rapl driver loaded: sudo modprobe intel_rapl_msr), or pass rapl?root=DIR")
    found: list[tuple[tuple[Any, ...], Zone]] = []
    for entry in root.iterdir():
        m = ZONE_DIR.match(entry.name)
        if not m or not entry.is_dir():
            continue
        try:
            name = read_file(entry / "name").strip()
        except PermissionError:
            name = entry.name
        except OSError:
            continue
        parts = tuple(int(x) for x in m.group(3).split(":")[1:])
        parent = f"{m.group(1)}:{m.group(2)}{''.join(':' + str(p) for p in parts[:-1])}" if parts else None
        key = (m.group(1), int(m.group(2)), parts)
        found.append((key, Zone(path=entry, dirname=entry.name, name=name or entry.name, parent=parent)))
    if not found:
        raise MeterConfigError(
            f"rapl: no RAPL zone (intel-rapl:N) under {root}: this CPU or kernel exposes no RAPL "
            "through powercap (try sudo modprobe intel_rapl_msr; inside VMs RAPL is usually absent)")
    found.sort(key=lambda kz: kz[0])
    zones = [z for _, z in found]
    by_dir = {z.dirname: z for z in zones}

    def qualify(z: Zone) -> str:
        parent = by_dir.get(z.parent) if z.parent else None
        q = f"{qualify(parent)}.{z.name}" if parent else z.name
        if not parent and z.dirname.startswith("intel-rapl-mmio"):
            q = f"mmio.{q}"
        return q

    seen: dict[str, int] = {}
    for z in zones:
        z.qualified = qualify(z)
        seen[z.qualified] = seen.get(z.qualified, 0) + 1
    for z in zones:
        if seen[z.qualified] > 1:
            z.qualified = f"{z.qualified}@{z.dirname}"
    return zones


def select_zones(zones: list[Zone], selector: str) -> list[Zone]:
    """Zones matching ``package-0`` / ``package-0.dram`` / comma-separated list ("" = all)."""
    if not selector:
        return list(zones)
    wanted = [s.strip() for s in selector.split(",") if s.strip()]
    out: list[Zone] = []
    for sel in wanted:
        hit = [z for z in zones if z.qualified == sel or z.qualified.startswith(sel + ".")
               or z.dirname == sel]
        if not hit:
            raise MeterConfigError(f"rapl: no zone {sel!r}; available: "
                                   f"{', '.join(z.qualified for z in zones)}")
        out.extend(z for z in hit if z not in out)
    return out


class RaplMeter(Meter):
    """RAPL zones under a powercap root; per zone ``energy_j`` (primary) and ``power_w``."""

    local = True  # reads never block: polled in the recorder's shared local thread

    kind = "rapl"
    default_interval_s = 0.5  # energy is cumulative: the interval only sets power_w's window
    min_interval_s = 0.01  # a sysfs read: local and cheap

    def __init__(self, root: str | Path = DEFAULT_ROOT, zones: str = "", name: str | None = None,
                 interval_s: float | None = None, read_file: ReadFile | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns, keep_open: bool | None = None) -> None:
        super().__init__(name, interval_s)
        self.root = Path(root)
        self.keep_open = keep_open  # None: keep energy_uj open only on a real sysfs (AttrFile)
        self.selector = zones
        self._read_file = read_file  # None: read_sysfs when opening (monkeypatchable), AttrFile per poll
        self._clock = clock_ns
        self.zones: list[Zone] = []
        self._last: dict[str, tuple[int, float]] = {}  # zone dir -> (t_ns, energy_j)

    def _read(self, path: Path) -> str:
        return (self._read_file or read_sysfs)(path)

    def _read_int(self, path: Path, what: str) -> int:
        try:
            text = self._read(path)
        except PermissionError:
            raise MeterConfigError(
                f"{self.name}: cannot read {path} ({what} is root-only since CVE-2020-8694); "
                f"{fix_hint(self.root)}") from None
        except FileNotFoundError:
            raise MeterConfigError(f"{self.name}: {path} missing: not a RAPL zone") from None
        try:
            return int(text.strip())
        except ValueError:
            raise MeterConfigError(f"{self.name}: {path} holds {text[:30]!r}, not an integer") from None

    def _ceiling(self, zone: Zone) -> float | None:
        best = None
        for f in zone.path.glob("constraint_*_*power*_uw"):
            if not (f.name.endswith("_max_power_uw") or f.name.endswith("_power_limit_uw")):
                continue
            try:
                uw = int(self._read(f).strip())
            except (OSError, ValueError):
                continue
            if uw > 0:
                best = max(best or 0.0, uw / 1e6)
        return best

    def open(self) -> list[Channel]:
        self.close()
        zones = select_zones(list_zones(self.root, self._read), self.selector)
        for z in zones:
            z.max_range_uj = self._read_int(z.path / "max_energy_range_uj", "max_energy_range_uj")
            if z.max_range_uj <= 0:
                raise MeterConfigError(f"{self.name}: {z.path}/max_energy_range_uj is "
                                       f"{z.max_range_uj}: cannot unwrap this counter")
            self._read_int(z.path / "energy_uj", "energy_uj")
            z.unwrap = CounterUnwrapper(float(z.max_range_uj))
            z.power_ceiling_w = self._ceiling(z)
            z.channel = f"{self.name}.{z.qualified}"
            z.energy_file = AttrFile(z.path / "energy_uj", keep_open=self.keep_open)
        self.zones = zones
        self.notes = [n for n in self.notes if "wraps every" not in n]
        self.channels = []
        for z in zones:
            wrap_s = z.max_range_uj / 1e6 / z.power_ceiling_w if z.power_ceiling_w else None
            if wrap_s is not None and wrap_s < 2 * self.interval_s:
                self.notes.append(
                    f"{self.name}.{z.qualified}: counter wraps every {wrap_s:.2f} s at its "
                    f"{z.power_ceiling_w:g} W limit but is polled every {self.interval_s:g} s: "
                    "wraps may be missed, poll faster (interval=)")
            self.channels.append(Channel(
                id=f"{self.name}.{z.qualified}", scope=scope_of(z.name), source="measured",
                quantities=("energy_j", "power_w"), window_s=self.interval_s,
                update_interval_s=0.001, energy_resolution_j=1e-6, primary="energy_j",
                info={"zone": z.dirname, "name": z.name, "path": str(z.path),
                      "max_energy_range_uj": z.max_range_uj, "wrap_j": z.max_range_uj / 1e6,
                      "power_ceiling_w": z.power_ceiling_w, "parent": z.parent,
                      "note": ("subzone energy is included in its package" if z.parent else
                               "MMIO interface to the same package energy as intel-rapl: do not add"
                               if z.dirname.startswith("intel-rapl-mmio") else None)},
            ))
        return self.channels

    def read(self) -> Reading:
        if not self.zones:
            raise MeterDisconnected(f"{self.name}: not open")
        hook = self._read_file
        t0 = self._clock()
        raws: list[int] = []
        for z in self.zones:
            try:
                raw = hook(z.path / "energy_uj") if hook else z.energy_file.read()  # type: ignore[union-attr]
            except PermissionError:
                raise MeterReadError(f"{self.name}: {z.path}/energy_uj became unreadable",
                                     code="exception") from None
            except OSError as exc:
                if exc.errno in GONE:
                    raise MeterDisconnected(f"{self.name}: {z.path}/energy_uj vanished") from None
                raise MeterReadError(f"{self.name}: {z.path}/energy_uj: {exc}", code="exception") from None
            try:
                raws.append(int(raw))
            except ValueError:
                raise MeterReadError(f"{self.name}: {z.path}/energy_uj holds {raw[:30]!r}",
                                     code="garbage") from None
        t_ns = (t0 + self._clock()) // 2
        values: dict[str, dict[str, float]] = {}
        flags: dict[str, str] = {}
        for z, raw in zip(self.zones, raws):
            ch = z.channel
            if z.max_range_uj and not 0 <= raw <= z.max_range_uj:
                flags[ch] = "range"
            energy = z.unwrap.update(float(raw)) / 1e6
            v = {"energy_j": energy}
            last = self._last.get(z.dirname)
            if last is not None and t_ns > last[0]:
                dt = (t_ns - last[0]) / 1e9
                v["power_w"] = (energy - last[1]) / dt
                if z.power_ceiling_w and z.max_range_uj and dt * z.power_ceiling_w > z.max_range_uj / 1e6:
                    flags.setdefault(ch, "wrap-risk")  # longer than one wrap at the zone's limit
            self._last[z.dirname] = (t_ns, energy)
            values[ch] = v
        return Reading(values, flags=flags)

    def close(self) -> None:
        for z in self.zones:
            if z.energy_file is not None:
                z.energy_file.close()
        self.zones = []
        self._last = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.root), "zones": self.selector or "all",
                "channels": {c.id: c.info.get("zone") for c in self.channels}}


def from_uri(uri: Any) -> RaplMeter:
    """``rapl[:SEL[,SEL]]?root=DIR`` -> RaplMeter (SEL: package-0, package-0.dram, psys, ...)."""
    return RaplMeter(root=uri.take("root", DEFAULT_ROOT), zones=uri.target,
                     name=uri.name, interval_s=uri.interval_s)
