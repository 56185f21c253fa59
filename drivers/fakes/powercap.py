"""A fake Linux powercap tree (``/sys/class/powercap``) for tests and ``calibrate demo``.

``FakePowercap(root, zones)`` writes real directories and files that
:mod:`drivers.rapl` reads through ``rapl?root=DIR``: per zone ``name``, ``energy_uj``,
``max_energy_range_uj``, ``enabled`` and ``constraint_0_*`` files, plus the
``intel-rapl`` control-type directory a real tree has.  Counters advance either by
hand (:meth:`advance`, deterministic) or in *live* mode (:meth:`start`): a background
thread adds each zone's power (W, a number or a callable of seconds since start) every
``tick_s`` and wraps the counter at ``max_energy_range_uj``, as the hardware does.
Files are replaced atomically (write + rename), so a reader never sees half a number;
``in_place=True`` instead rewrites ``energy_uj`` in place, so a reader can keep it open
and ``pread`` it as it does on sysfs (benchmarks: a concurrent read can, very rarely,
see a torn number, which a real sysfs never shows).
``truth_j(zone)`` is the energy the fake has added, the value a correct reader reports.
For ``calibrate demo`` on a machine without RAPL::

    fake = FakePowercap(folder, host_zones()).start()   # package power follows the real CPU load
    meter_uri = fake.uri                                 # "rapl?root=<folder>"
    ...
    fake.stop()

Tests run as root, where mode 0400 does not stop reads; :meth:`make_root_only` sets the
mode *and* makes :meth:`read_file` (pass it to ``RaplMeter(read_file=...)``) raise
PermissionError, the way an unprivileged user sees it.  :meth:`remove_zone` makes a
zone vanish mid-session.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Watts = float | Callable[[float], float]

#: A real Intel package counter wraps at 262143328850 uJ (about 262 kJ)
INTEL_MAX_RANGE_UJ = 262_143_328_850
#: DRAM and AMD counters often wrap earlier (32-bit counter x energy unit), e.g. 65712999613 uJ
SMALL_MAX_RANGE_UJ = 65_712_999_613


@dataclass
class FakeZone:
    """One zone of the fake tree: directory (``intel-rapl:0:1``), ``name`` and counter state."""

    dirname: str
    name: str
    watts: Watts = 10.0
    max_range_uj: int = INTEL_MAX_RANGE_UJ
    energy_uj: int = 0  # raw counter as the file shows it
    truth_uj: float = 0.0  # total added since creation (never wraps)
    origin_uj: int = 0  # the counter's value when the tree was created
    power_limit_uw: int | None = None

    def power_at(self, t_s: float) -> float:
        return float(self.watts(t_s)) if callable(self.watts) else float(self.watts)


def typical_zones(packages: int = 1, dram: bool = True, psys: bool = False,
                  package_w: float = 25.0, core_w: float = 15.0, dram_w: float = 3.0,
                  max_range_uj: int = INTEL_MAX_RANGE_UJ) -> list[FakeZone]:
    """A desktop/server-like layout: package-N with core (and dram) subzones, optional psys."""
    zones: list[FakeZone] = []
    for n in range(packages):
        zones.append(FakeZone(f"intel-rapl:{n}", f"package-{n}", package_w, max_range_uj,
                              power_limit_uw=125_000_000))
        zones.append(FakeZone(f"intel-rapl:{n}:0", "core", core_w, max_range_uj))
        if dram:
            zones.append(FakeZone(f"intel-rapl:{n}:1", "dram", dram_w, SMALL_MAX_RANGE_UJ))
    if psys:
        zones.append(FakeZone(f"intel-rapl:{packages}", "psys", package_w * 1.6, max_range_uj))
    return zones


class HostUtilisation:
    """This machine's CPU utilisation (0..1) from /proc/stat, re-read at most every ``every_s``."""

    def __init__(self, stat_path: str = "/proc/stat", every_s: float = 0.1) -> None:
        from drivers.cpu_model import read_proc_stat

        self._read = lambda: read_proc_stat(stat_path)
        self.every_s = every_s
        self._lock = threading.Lock()
        self._prev = self._read()
        self._t = time.monotonic()
        self._util = 0.0

    def __call__(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now - self._t >= self.every_s:
                cur = self._read()
                d_total = cur[1] - self._prev[1]
                if d_total > 0:
                    self._util = min(max((cur[0] - self._prev[0]) / d_total, 0.0), 1.0)
                self._prev, self._t = cur, now
            return self._util


def host_zones(stat_path: str = "/proc/stat") -> list[FakeZone]:
    """One package whose power follows this machine's real CPU load (for ``calibrate demo``).

    package = 6 + 45 x util W, core = 2 + 40 x util W, dram = 1.5 + 2 x util W: plausible
    for a desktop CPU; the wall simulator's host signal follows the same load.
    """
    util = HostUtilisation(stat_path)
    return [
        FakeZone("intel-rapl:0", "package-0", lambda t: 6.0 + 45.0 * util(), power_limit_uw=65_000_000),
        FakeZone("intel-rapl:0:0", "core", lambda t: 2.0 + 40.0 * util()),
        FakeZone("intel-rapl:0:1", "dram", lambda t: 1.5 + 2.0 * util(), SMALL_MAX_RANGE_UJ),
    ]


class FakePowercap:
    """A powercap tree under ``root`` whose RAPL counters advance by hand or in a thread."""

    def __init__(self, root: str | Path, zones: list[FakeZone] | None = None,
                 start_uj: dict[str, int] | None = None, in_place: bool = False) -> None:
        self.root = Path(root)
        self.in_place = in_place
        self.root.mkdir(parents=True, exist_ok=True)
        self.zones = {z.dirname: z for z in (zones if zones is not None else typical_zones())}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root_only: set[Path] = set()
        self._t0 = time.monotonic()
        ctl = self.root / "intel-rapl"  # the control type directory of a real tree (no counter)
        ctl.mkdir(exist_ok=True)
        (ctl / "enabled").write_text("1\n")
        for z in self.zones.values():
            if start_uj and z.dirname in start_uj:
                z.energy_uj = start_uj[z.dirname]
            z.origin_uj = z.energy_uj
            self._create(z)

    # -- files ----------------------------------------------------------------------------
    def path(self, dirname: str, attr: str = "") -> Path:
        return self.root / dirname / attr if attr else self.root / dirname

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        mode = 0o400 if path in self._root_only else 0o444
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def _create(self, z: FakeZone) -> None:
        d = self.path(z.dirname)
        d.mkdir(parents=True, exist_ok=True)
        self._write(d / "name", z.name + "\n")
        self._write(d / "enabled", "1\n")
        self._write(d / "max_energy_range_uj", f"{z.max_range_uj}\n")
        self._write(d / "energy_uj", f"{z.energy_uj}\n")
        if z.power_limit_uw:
            self._write(d / "constraint_0_name", "long_term\n")
            self._write(d / "constraint_0_power_limit_uw", f"{z.power_limit_uw}\n")

    def read_file(self, path: Path) -> str:
        """What an unprivileged reader sees: PermissionError for files made root-only."""
        if Path(path) in self._root_only:
            raise PermissionError(13, "Permission denied", str(path))
        with open(path) as fh:
            return fh.read()

    def make_root_only(self, dirname: str, attr: str = "energy_uj") -> None:
        """Mode 0400 on one file, and :meth:`read_file` refuses it (as for a non-root user)."""
        p = self.path(dirname, attr)
        self._root_only.add(p)
        os.chmod(p, 0o400)

    def remove_zone(self, dirname: str) -> None:
        """The zone disappears (driver unloaded, hot-unplug) while a reader polls it."""
        with self._lock:
            self.zones.pop(dirname, None)
            shutil.rmtree(self.path(dirname), ignore_errors=True)

    # -- counters -------------------------------------------------------------------------
    def add_energy(self, dirname: str, joules: float) -> None:
        """Add ``joules`` to one zone's counter, wrapping at its max range."""
        with self._lock:
            z = self.zones[dirname]
            self._add(z, joules * 1e6)

    def _add(self, z: FakeZone, uj: float) -> None:
        z.truth_uj += uj
        # the counter shows whole microjoules of the truth, modulo the wrap value
        z.energy_uj = (z.origin_uj + int(round(z.truth_uj))) % z.max_range_uj
        path = self.path(z.dirname, "energy_uj")
        if self.in_place:
            data = f"{z.energy_uj}\n".encode()
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        else:
            self._write(path, f"{z.energy_uj}\n")

    def advance(self, seconds: float) -> None:
        """Advance every zone by its power (W) times ``seconds`` (power taken at the step's start)."""
        with self._lock:
            t = time.monotonic() - self._t0
            for z in self.zones.values():
                self._add(z, z.power_at(t) * seconds * 1e6)

    def truth_j(self, dirname: str) -> float:
        """Energy added to a zone since the tree was created (J), wrap-free."""
        with self._lock:
            return self.zones[dirname].truth_uj / 1e6

    # -- live mode ------------------------------------------------------------------------
    def start(self, tick_s: float = 0.01) -> FakePowercap:
        """Advance counters in a background thread every ``tick_s`` s (real RAPL: about 1 ms)."""
        if self._thread is not None:
            return self
        self._stop.clear()

        def run() -> None:
            last = time.monotonic()
            while not self._stop.wait(tick_s):
                now = time.monotonic()
                with self._lock:
                    t = now - self._t0
                    for z in self.zones.values():
                        self._add(z, z.power_at(t) * (now - last) * 1e6)
                last = now

        self._thread = threading.Thread(target=run, name="fake-powercap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self) -> FakePowercap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def uri(self) -> str:
        """The meter URI that reads this tree."""
        return f"rapl?root={self.root}"
