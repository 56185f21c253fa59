"""``codecarbon?country=FRA&measure_power_secs=1``: CodeCarbon's own estimate, recorded as a meter.

Runs CodeCarbon's ``OfflineEmissionsTracker`` in this process (offline: no API, no
geolocation lookup, no files written) and records its running cumulative energy per
component as channels ``codecarbon.cpu``, ``.gpu``, ``.ram`` and ``.total`` (``energy_j``
primary, from kWh; ``power_w`` is the energy difference between two recorded steps over
their time difference -- ``EmissionsData.cpu_power`` etc. are running averages since the
start, not the step's power).

How the live values are obtained (CodeCarbon 3.x has no public live getter): the
tracker is given a custom output handler (a ``codecarbon.output_methods.base_output.
BaseOutput`` through the public ``output_handlers=`` argument) and
``api_call_interval=1``, so CodeCarbon calls our ``live_out(total, delta)`` after every
one of its own measurement steps with an ``EmissionsData`` holding the cumulative
``cpu_energy``/``gpu_energy``/``ram_energy``/``energy_consumed`` (kWh).  This is the
least fragile route: it uses only documented extension points, does not call private
measurement methods (which would add measurements CodeCarbon would not make on its own
and change its numbers), and needs no polling of ``emissions.csv``.  The meter is
therefore a *push* meter: ``read()`` waits for CodeCarbon's next step and stamps it with
the time the step finished.

Measured or modelled per component is CodeCarbon's own decision, read from the tracker's
hardware list (``tracker._hardware``, private: the one internal we touch, with a
fallback to "unknown"): CPU through RAPL / Power Gadget / EMI / powermetrics is
measured, CPU ``constant`` (a TDP fraction) or ``cpu_load`` is modelled, RAM is always
modelled, GPUs (NVML) are measured.  A component whose cumulative energy goes negative
or decreases (as in the seed study's data and CodeCarbon #1309) is flagged per reading
(``Reading.flags``) and noted, never hidden.

``measure_power_secs``: CodeCarbon's default is 15 s; we default to 1 s so its trace can
be aligned, and accept >= 0.5 s.  CodeCarbon 3.3 does not validate the value (its
scheduler is a ``threading.Timer``), but its utilisation monitor runs every 1 s, so
shorter steps only repeat CodeCarbon's model on stale utilisation.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from drivers.base import Channel, Meter, MeterConfigError, MeterReadError, Reading

KWH_J = 3.6e6
MIN_STEP_S = 0.5
DEFAULT_COUNTRY = "USA"
MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "windows_emi", "apple_powermetrics",
                      "powermetrics"}
COMPONENTS = ("cpu", "gpu", "ram")


def component_sources(hardware: list[Any]) -> dict[str, tuple[str, str]]:
    """{component: (measured|modelled|unknown, CodeCarbon's description)} from ``tracker._hardware``."""
    out: dict[str, tuple[str, str]] = {}
    for h in hardware:
        cls = type(h).__name__
        try:
            desc = str(h.description())
        except Exception:
            desc = cls
        part = getattr(h, "chip_part", None)
        if cls == "CPU":
            mode = getattr(h, "_mode", None)
            if mode is None:
                out["cpu"] = ("unknown", desc)
            else:
                src = "measured" if mode in MEASURED_CPU_MODES else "modelled"
                if getattr(h, "_is_generic_tdp", False):
                    desc += " (generic TDP: CPU not in CodeCarbon's table)"
                out["cpu"] = (src, f"{desc} mode={mode}")
        elif cls == "GPU":
            out["gpu"] = ("measured", desc)
        elif cls == "RAM":
            out["ram"] = ("modelled", desc)
        elif cls in ("Raspberry", "AppleSiliconChip") and part:
            out[str(part).lower()] = ("measured", desc)
        else:
            out.setdefault("other", ("unknown", desc))
    return out


class CodeCarbonMeter(Meter):
    """CodeCarbon's cumulative energy per component (J), one reading per CodeCarbon step."""

    kind = "codecarbon"
    default_interval_s = 1.0
    min_interval_s = MIN_STEP_S  # CodeCarbon's own step floor
    push = True  # read() waits for CodeCarbon's next step: the recorder reads back to back

    def __init__(self, country: str = DEFAULT_COUNTRY, measure_power_secs: float | None = None,
                 name: str | None = None, tracker_factory: Any = None) -> None:
        step = float(measure_power_secs) if measure_power_secs else self.default_interval_s
        super().__init__(name, step)
        if step < MIN_STEP_S:
            raise MeterConfigError(f"{self.name}: measure_power_secs must be >= {MIN_STEP_S} s "
                                   f"(CodeCarbon samples utilisation every 1 s), got {step}")
        self.country = country.upper()
        self.measure_power_secs = step
        self.read_timeout_s = max(3 * step, 2.0)  # read() gives up waiting for a step (s)
        self._factory = tracker_factory
        self.tracker: Any = None
        self.sources: dict[str, tuple[str, str]] = {}
        self._cond = threading.Condition()
        self._snap: tuple[int, int, dict[str, float]] | None = None  # seq, t_ns, kWh
        self._seq_read = 0
        self._prev: dict[str, float] = {}  # component -> energy J at the previous read
        self._prev_ns = 0
        self._warned: set[str] = set()
        self._base_notes: list[str] = []
        self.version: str | None = None

    # -- CodeCarbon callback (its scheduler thread) ----------------------------------------------
    def on_emissions(self, total: Any) -> None:
        """Store one cumulative ``EmissionsData`` (kWh) with the time it arrived."""
        t_ns = time.monotonic_ns()
        kwh = {"cpu": float(total.cpu_energy), "gpu": float(total.gpu_energy),
               "ram": float(total.ram_energy), "total": float(total.energy_consumed)}
        with self._cond:
            seq = self._snap[0] + 1 if self._snap else 1
            self._snap = (seq, t_ns, kwh)
            self._cond.notify_all()

    def _make_tracker(self, handler: Any) -> Any:
        from codecarbon import OfflineEmissionsTracker

        return OfflineEmissionsTracker(
            country_iso_code=self.country, measure_power_secs=self.measure_power_secs,
            api_call_interval=1, output_methods=[], output_handlers=[handler],
            emissions_endpoint=None, log_level="error", allow_multiple_runs=True, pue=1.0,
            project_name="calibrate", tracking_mode="machine",
        )

    # -- Meter -----------------------------------------------------------------------------------
    def open(self) -> list[Channel]:
        self.close()
        if not self._base_notes:
            self._base_notes = list(self.notes)
        meter = self
        if self._factory is not None:
            handler = type("CalibrateHandler", (), {"live_out": lambda s, t, d: meter.on_emissions(t),
                                                    "out": lambda s, t, d: None})()
            self.tracker = self._factory(handler)
        else:
            try:
                import codecarbon
                from codecarbon.input import DataSource
                from codecarbon.output_methods.base_output import BaseOutput
            except ImportError:
                raise MeterConfigError(f"{self.name}: CodeCarbon is not installed; "
                                       "pip install 'calibrate[codecarbon]'") from None
            self.version = getattr(codecarbon, "__version__", None)
            if self.country not in DataSource().get_global_energy_mix_data():
                raise MeterConfigError(f"{self.name}: country {self.country!r} unknown to CodeCarbon; "
                                       "give an ISO 3166 alpha-3 code, e.g. codecarbon?country=FRA")
            logging.getLogger("codecarbon").setLevel(logging.ERROR)

            class CalibrateHandler(BaseOutput):
                def live_out(self, total: Any, delta: Any) -> None:
                    meter.on_emissions(total)

            self.tracker = self._make_tracker(CalibrateHandler())
            # OfflineEmissionsTracker.__init__ swallows exceptions (@suppress): check it built
            if getattr(self.tracker, "_scheduler", None) is None:
                self.tracker = None
                raise MeterConfigError(f"{self.name}: CodeCarbon's tracker failed to initialise "
                                       "(check ~/.codecarbon.config and CODECARBON_* variables)")
        self._snap, self._seq_read, self._prev, self._prev_ns, self._warned = None, 0, {}, 0, set()
        try:
            self.tracker.start()
        except Exception as exc:
            self.close()
            raise MeterConfigError(f"{self.name}: CodeCarbon's tracker failed to start "
                                   f"({type(exc).__name__}: {exc})") from None
        self.sources = component_sources(list(getattr(self.tracker, "_hardware", []) or []))
        self.notes = list(self._base_notes)
        self.notes_explain_modelled = False
        self.notes.append(f"{self.name}: CodeCarbon {self.version or ''} steps every "
                          f"{self.measure_power_secs:g} s (its default is 15 s); country {self.country} "
                          "only affects CodeCarbon's own CO2, not the energy recorded")
        self.channels = []
        for comp in (*COMPONENTS, "total"):
            if comp == "total":
                srcs = {s for s, _ in self.sources.values()}
                src = "measured" if srcs == {"measured"} else "modelled"
                how = "sum of CodeCarbon's components: " + ", ".join(
                    f"{c} {s}" for c, (s, _) in sorted(self.sources.items()))
            elif comp in self.sources:
                src, how = self.sources[comp]
                if src == "unknown":
                    src = "modelled"
                    how += " (measured/modelled could not be determined: assumed modelled)"
            else:
                self.notes.append(f"{self.name}: CodeCarbon tracks no {comp.upper()} here; "
                                  f"no {self.name}.{comp} channel (not a 0 J reading)")
                continue
            if src == "modelled" and comp != "total":
                self.notes.append(f"{self.name}.{comp}: MODELLED by CodeCarbon ({how})")
                self.notes_explain_modelled = True
            self.channels.append(Channel(
                id=f"{self.name}.{comp}", scope="system" if comp == "total" else comp,
                source=src, quantities=("energy_j", "power_w"),
                window_s=self.measure_power_secs, update_interval_s=self.measure_power_secs,
                primary="energy_j",
                info={"codecarbon": how, "codecarbon_version": self.version, "country": self.country,
                      "measure_power_secs": self.measure_power_secs},
            ))
        return self.channels

    def request_stop(self) -> None:
        """Also wakes a ``read()`` waiting for CodeCarbon's next step (it then times out)."""
        super().request_stop()
        with self._cond:
            self._cond.notify_all()

    def read(self) -> Reading:
        if self.tracker is None:
            raise MeterReadError(f"{self.name}: not open", code="exception")
        timeout = self.read_timeout_s
        with self._cond:
            def fresh() -> bool:
                return self._snap is not None and self._snap[0] > self._seq_read

            self._cond.wait_for(lambda: fresh() or self.stop_requested, timeout=timeout)
            if not fresh():
                raise MeterReadError(f"{self.name}: no CodeCarbon step within {timeout:g} s",
                                     code="timeout")
            assert self._snap is not None
            seq, t_ns, kwh = self._snap
            self._seq_read = seq
        wanted = [c.id.rpartition(".")[2] for c in self.channels]
        values: dict[str, dict[str, float]] = {}
        flags: dict[str, str] = {}
        for comp in wanted:
            ch = f"{self.name}.{comp}"
            e = kwh[comp] * KWH_J
            values[ch] = {"energy_j": e}
            prev = self._prev.get(comp)
            if prev is not None and t_ns > self._prev_ns:
                values[ch]["power_w"] = (e - prev) / ((t_ns - self._prev_ns) / 1e9)
            problem = None
            if e < 0:
                problem = "negative"
            elif prev is not None and e < prev:
                problem = "non-monotonic"
            if problem:
                flags[ch] = problem
                if problem not in self._warned:
                    self._warned.add(problem)
                    self.notes.append(f"{ch}: CodeCarbon reported {problem} cumulative energy "
                                      f"({(prev if prev is not None else 0):.3f} J -> {e:.3f} J); flagged")
            self._prev[comp] = e
        self._prev_ns = t_ns
        return Reading(values, t_ns=t_ns, rtt_ns=0, flags=flags)

    def close(self) -> None:
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            try:
                tracker.stop()
            except Exception:
                pass

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "country": self.country,
                "measure_power_secs": self.measure_power_secs, "codecarbon_version": self.version,
                "components": {c: {"source": s, "how": h} for c, (s, h) in self.sources.items()}}


def from_uri(uri: Any) -> CodeCarbonMeter:
    """``codecarbon?country=ISO3&measure_power_secs=S`` (``interval`` is the same as measure_power_secs)."""
    if uri.target:
        raise MeterConfigError(f"{uri.raw}: codecarbon takes no target (use codecarbon?country=FRA)")
    step = uri.take("measure_power_secs", None, float)
    interval = uri.interval_s
    if step and interval and step != interval:
        raise MeterConfigError(f"{uri.raw}: give measure_power_secs or interval, not both")
    return CodeCarbonMeter(country=uri.take("country", DEFAULT_COUNTRY), measure_power_secs=step or interval,
                           name=uri.name)
