"""Watts Up? Pro simulator on a pseudo-terminal: answers #V/#H/#C/#R/#L like the meter.

After ``#L,W,3,E,,N;`` it sends a ``#d`` packet every N s whose watts are the average of
the signal over that interval, with the WH register counting in 0.1 Wh.  ``hostile=``
(:data:`HOSTILE`) makes it a broken device ``hostile_at`` s after start.
"""

from __future__ import annotations

import math
import threading
import time

from drivers.sim.pty_port import PtyPort
from drivers.sim.simulator import Simulator
from drivers.wattsup import FIELDS

VOLTS = 230.0
HZ = 50.0
#: ``hostile=`` modes (from ``hostile_at`` s on, once logging runs): ``flood`` sends valid data
#: packets back to back, ``random`` random bytes, ``endless`` a packet that never ends
HOSTILE = ("flood", "random", "endless")


class WattsUpSimulator(Simulator):
    kind = "wattsup"
    options = {"pf": 0.93, "hostile": "", "hostile_at": 0.0}

    def start(self) -> str:
        self.port = PtyPort("ttyWATTSUP")
        self._stop = threading.Event()
        self._interval: int | None = None
        self._next_t = 0.0
        self._e_last = self.energy_j()
        self._t_last = self.now()
        self._wh_base = 0.0
        self._thread = threading.Thread(target=self._serve, name="sim-wattsup", daemon=True)
        self._thread.start()
        return f"serial:{self.port.path}?protocol=wattsup"

    def stop(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._thread.join(timeout=2)
            self.port.close()

    # -- protocol ---------------------------------------------------------------------
    def _handle(self, packet: str) -> None:
        parts = packet.strip("#;").split(",")
        cmd = parts[0].upper() if parts else ""
        if cmd == "V":
            self.port.write(b"#v,-,8,WattsUpPro,SIM,1,0,0,0,0,0;\r\n")
        elif cmd == "H":
            self.port.write(("#h,-,18," + ",".join(FIELDS) + ";\r\n").encode())
        elif cmd == "R":
            self._wh_base = self.energy_j()
        elif cmd == "L" and len(parts) >= 6 and parts[3].upper() == "E":
            try:
                self._interval = max(1, int(parts[5] or 1))
            except ValueError:
                return
            self._e_last, self._t_last = self.energy_j(), self.now()
            self._next_t = self._t_last + self._interval
        elif cmd == "L":
            self._interval = None

    def _data_packet(self) -> bytes:
        e, t = self.energy_j(), self.now()
        watts = (e - self._e_last) / (t - self._t_last) if t > self._t_last else self.power_w()
        self._e_last, self._t_last = e, t
        pf = float(self.opts["pf"])
        va = watts / pf
        amps = va / VOLTS
        wh = (e - self._wh_base) / 3600.0
        w_field = "_" if self.faults.hit("nan") else str(round(watts * 10))
        vals = [w_field, str(round(VOLTS * 10)), str(round(amps * 1000)), str(math.floor(wh * 10)),
                "_", "_", "_", str(round(watts * 10)), str(round(VOLTS * 10)), str(round(amps * 1000)),
                str(round(watts * 10)), str(round(VOLTS * 10)), str(round(amps * 1000)),
                str(round(pf * 100)), "_", "_", str(round(HZ * 10)), str(round(va * 10))]
        return ("#d,-,18," + ",".join(vals) + ";\r\n").encode()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            t = self.now()
            if self.faults.dropped(t):
                if self.port.plugged:
                    self.port.unplug()
                self._stop.wait(0.05)
                continue
            if not self.port.plugged:
                self.port.replug()
                buf = b""
            timeout = 0.05
            data = self.port.read(timeout)
            if data:
                buf += data
                while b";" in buf:
                    packet, _, buf = buf.partition(b";")
                    start = packet.rfind(b"#")
                    if start >= 0:
                        self._handle(packet[start:].decode("ascii", "replace") + ";")
            hostile = self.opts["hostile"]
            if hostile and self._interval and self.now() >= float(self.opts["hostile_at"]):
                import select

                fd = self.port.master
                if hostile == "flood":
                    data = self._data_packet() * 20
                elif hostile == "random":
                    data = self.faults.garbage_bytes(2048)
                else:
                    data = b"#d,-,18," + b"1" * 2048
                try:
                    if fd is not None and select.select([], [fd], [], 0.01)[1]:
                        self.port.write(data)
                except (OSError, ValueError):
                    pass
                time.sleep(0.001)
                continue
            if self._interval and self.now() >= self._next_t:
                self._next_t += self._interval
                if self.faults.hit("silent"):
                    self._e_last, self._t_last = self.energy_j(), self.now()
                    continue
                out = self._data_packet()
                if self.faults.hit("garbage"):
                    out = self.faults.garbage_bytes(len(out) - 2) + b";\r\n"
                elif self.faults.hit("partial"):
                    out = out[: len(out) // 2]
                self.port.write(out)
            time.sleep(0)
