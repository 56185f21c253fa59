"""Modbus energy-meter simulator (Eastron SDM120/SDM230/SDM630 or any profile) on pymodbus.

A pymodbus server runs on its own asyncio loop in a background thread and serves the
profile's registers, computed from the power signal when a request arrives:

* ``transport=pty`` (default): RTU framing on a pseudo-terminal.  pymodbus cannot serve on
  a pty master fd, so its RTU server listens on ``socket://127.0.0.1:N`` and a byte pump
  copies bytes between the pty and that socket unchanged (the driver sees the real RTU bytes).
* ``transport=socket``: RTU framing over TCP; the driver opens ``socket://127.0.0.1:N``.
* ``transport=tcp``: Modbus TCP (MBAP framing) on 127.0.0.1.

The datastore is our own context object, so addresses reach it unshifted (pymodbus'
sequential blocks add 1 to every address -- the #2839 pitfall -- which we do not use).
The meter refreshes its values every ``update`` s (1 s like an SDM; shorter for tests):
power is the signal's average over the last refresh period, the energy register counts
in the profile's resolution steps (0.01 kWh for an SDM).

``baud`` (pty): the meter's line speed (default: the profile's factory rate); a request the
driver sends at another rate gets no reply, as on a real RS-485 line.  ``hostile`` replaces
the meter by a broken device (:data:`HOSTILE`: random, partial, flood).

Faults: ``exception`` (reply is exception 04, server device failure), ``crc`` (RTU reply
with its CRC flipped), ``garbage`` (reply replaced by random bytes), ``partial`` (reply cut
short), ``silent`` (no reply), ``nan`` (power register holds NaN), ``drop`` (the pty is
unplugged / the TCP server stops listening, then comes back).
"""

from __future__ import annotations

import asyncio
import math
import socket
import termios
import threading
from typing import Any

from drivers.base import MeterConfigError
from drivers.modbus import Profile, Quantity, load_profile, rtu_crc_ok
from drivers.sim.pty_port import PtyPort
from drivers.sim.simulator import Simulator

VOLTS = 230.0
HZ = 50.0
#: ``hostile=`` modes (a broken or malicious device, instead of the meter): ``random`` answers
#: every request with random bytes, ``partial`` with the first half of a valid-looking reply
#: and nothing more, ``flood`` sends random bytes non-stop whether asked or not
HOSTILE = ("random", "partial", "flood")


#: shortest inter-frame silence the pty pump waits for (s); 3.5 characters at 9600 baud is 4 ms
FRAME_GAP_S = 0.01


#: termios speed code -> baud (B9600 -> 9600), built once: the pump looks it up per chunk
_BAUDS: dict[int, int] = {}
for _name in dir(termios):  # sorted: the first name of a code wins
    if _name.startswith("B") and _name[1:].isdigit():
        _BAUDS.setdefault(getattr(termios, _name), int(_name[1:]))


def _baud_of(fd: int | None) -> int | None:
    """The line speed the driver set on the pty (termios output speed), None if unknown."""
    if fd is None:
        return None
    try:
        code = termios.tcgetattr(fd)[5]
    except (OSError, termios.error):
        return None
    return _BAUDS.get(code)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_context(sim: SDMSimulator) -> Any:
    from pymodbus.constants import ExcCodes
    from pymodbus.datastore import ModbusServerContext
    from pymodbus.exceptions import NoSuchIdException

    class MeterContext(ModbusServerContext):
        """Answers reads from the simulator's live register map (addresses unshifted)."""

        def __init__(self) -> None:  # noqa: D107 - no device dict: we are the device
            self.simdevices = []
            self.old_simulator = True

        async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> Any:
            if device_id != sim.unit:
                raise NoSuchIdException(device_id)
            if sim.faults.hit("exception"):
                return ExcCodes.DEVICE_FAILURE
            if func_code != sim.profile.function:
                return ExcCodes.ILLEGAL_ADDRESS
            regs = sim.registers()
            if address + count > sim.top:
                return ExcCodes.ILLEGAL_ADDRESS
            return [regs.get(a, 0) for a in range(address, address + count)]

        async def async_setValues(self, device_id: int, func_code: int, address: int, values: Any) -> Any:
            return ExcCodes.ILLEGAL_FUNCTION

        def device_ids(self) -> list[int]:
            return [sim.unit]

    return MeterContext()


class SDMSimulator(Simulator):
    kind = "sdm"
    options = {"model": "sdm120", "transport": "pty", "unit": 1, "update": 1.0, "pf": 0.93, "baud": 0,
               "hostile": ""}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.profile: Profile = load_profile(str(self.opts["model"]))
        self.kind = self.profile.name
        self.unit = int(self.opts["unit"])
        #: the meter's line speed (pty only; 0 = the profile's factory default): a request sent
        #: at another rate is line noise to a real meter, which does not answer
        self.baud = int(self.opts["baud"]) or self.profile.default_baud
        self.hostile = str(self.opts["hostile"] or "")
        if self.hostile and self.hostile not in HOSTILE:
            raise MeterConfigError(f"sim: hostile={self.hostile!r}; use one of {', '.join(HOSTILE)}")
        if self.opts["transport"] not in ("pty", "socket", "tcp"):
            raise MeterConfigError("sim: Modbus transport must be pty, socket or tcp")
        self.top = max(q.address + q.count for q in self.profile.quantities.values()) + 80
        self._regs: dict[int, int] = {}
        self._next_update = 0.0
        self._e_last = 0.0
        self._t_last = self._last_t  # the integrator's own start (s; CLOCK_MONOTONIC with timebase=machine)
        self.requests = 0

    # -- the meter's registers ------------------------------------------------------------
    def registers(self) -> dict[int, int]:
        """The register map now (refreshed every ``update`` s)."""
        self.requests += 1
        t = self.now()
        if t >= self._next_update or not self._regs:
            e = self.energy_j()
            t = self._last_t  # the integrator's own time of e
            p = (e - self._e_last) / (t - self._t_last) if t > self._t_last else self.power_w()
            self._e_last, self._t_last = e, t
            self._next_update = t + float(self.opts["update"])
            pf = float(self.opts["pf"])
            amps = p / (VOLTS * pf)
            values = {"power_w": p, "voltage_v": VOLTS, "current_a": amps, "apparent_va": VOLTS * amps,
                      "pf": pf, "freq_hz": HZ}
            eq = self.profile.quantities.get("energy_j")
            if eq is not None:
                step = eq.resolution_j or 0.0
                values["energy_j"] = math.floor(e / step) * step if step else e
            regs: dict[int, int] = {}
            for name, q in self.profile.quantities.items():
                for i, r in enumerate(q.encode(values.get(name, 0.0), self.profile.word_order)):
                    regs[q.address + i] = r
            self._regs = regs
        if self.faults.hit("nan"):
            q: Quantity = self.profile.quantities["power_w"]
            regs = dict(self._regs)
            for i, r in enumerate(q.encode(float("nan"), self.profile.word_order)):
                regs[q.address + i] = r
            return regs
        return self._regs

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Server-side byte hook: corrupt outgoing replies as the fault plan says."""
        if not sending:
            return data
        if self.hostile == "random":
            return self.faults.garbage_bytes(len(data))
        if self.hostile == "partial":
            return data[: max(1, len(data) // 2)]
        if self.hostile == "flood":
            return self.faults.garbage_bytes(1 << 16)
        if self.faults.hit("silent"):
            return b""
        if self.faults.hit("crc") and self.opts["transport"] != "tcp":
            return data[:-2] + bytes([data[-2] ^ 0x5A, data[-1]])
        if self.faults.hit("garbage"):
            return self.faults.garbage_bytes(len(data))
        if self.faults.hit("partial"):
            return data[: max(1, len(data) // 2)]
        return data

    # -- server ---------------------------------------------------------------------------
    async def _start_server(self) -> None:
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        ctx = _make_context(self)
        if self.opts["transport"] == "tcp":
            self.server = ModbusTcpServer(ctx, address=("127.0.0.1", self.port_no),
                                          trace_packet=self._trace_packet, ignore_missing_devices=True)
        else:
            self.server = ModbusSerialServer(ctx, port=f"socket://127.0.0.1:{self.port_no}",
                                             trace_packet=self._trace_packet, ignore_missing_devices=True)
        await self.server.serve_forever(background=True)

    async def _stop_server(self) -> None:
        if getattr(self, "server", None) is not None:
            await self.server.shutdown()
            self.server = None

    def _call(self, coro: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> str:
        self._stop = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="sim-modbus-loop", daemon=True)
        self._loop_thread.start()
        self.port_no = free_port()
        self._call(self._start_server())
        self._threads: list[threading.Thread] = []
        tr = self.opts["transport"]
        model = str(self.opts["model"])
        spec = self.profile.source if ("/" in model or model.endswith(".toml")) else self.profile.name
        query = f"profile={spec}&unit={self.unit}"
        if tr == "pty":
            self.pty = PtyPort(f"tty{self.profile.name.upper()}")
            self._threads.append(threading.Thread(target=self._pump, name="sim-modbus-pty", daemon=True))
            uri = f"modbus:{self.pty.path}?{query}"
        elif tr == "socket":
            uri = f"modbus:socket://127.0.0.1:{self.port_no}?{query}"
        else:
            self._threads.append(threading.Thread(target=self._watch_drops, name="sim-modbus-drops", daemon=True))
            uri = f"modbus-tcp://127.0.0.1:{self.port_no}?{query}"
        for t in self._threads:
            t.start()
        return uri

    def stop(self) -> None:
        if not hasattr(self, "_stop"):
            return
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        try:
            self._call(self._stop_server())
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(timeout=2)
        self.loop.close()
        if hasattr(self, "pty"):
            self.pty.close()

    def _watch_drops(self) -> None:
        """TCP: stop listening (and drop connections) while the plan says the device is gone."""
        while not self._stop.wait(0.02):
            gone = self.faults.dropped(self.now())
            if gone and getattr(self, "server", None) is not None:
                self._call(self._stop_server())
            elif not gone and getattr(self, "server", None) is None:
                try:
                    self._call(self._start_server())
                except Exception:
                    pass

    def _pump(self) -> None:
        """Copy RTU frames between the pty and the RTU-over-TCP server, unplugging during drops.

        Like a meter's UART, bytes are grouped into frames by the silence after them (3.5
        character times, at least :data:`FRAME_GAP_S` here); a frame with a bad CRC or sent
        at another line speed is dropped unanswered, so line noise before a request (another
        protocol's probe, a half frame) does not spoil the next one.
        """
        import select
        import time

        sock: socket.socket | None = None
        pending, last_rx, wrong_speed = b"", 0.0, False
        gap = max(FRAME_GAP_S, 3.5 * 11 / self.baud)
        while not self._stop.is_set():
            if self.faults.dropped(self.now()):
                if self.pty.plugged:
                    self.pty.unplug()
                if sock is not None:
                    sock.close()
                    sock = None
                pending = b""
                self._stop.wait(0.02)
                continue
            if not self.pty.plugged:
                self.pty.replug()
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port_no), timeout=1.0)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    self._stop.wait(0.05)
                    continue
            master = self.pty.master
            if master is None:
                continue
            try:
                r, _, _ = select.select([master, sock], [], [], gap if pending else 0.05)
            except (OSError, ValueError):
                continue
            try:
                if master in r:
                    data = self.pty.read(0)
                    if data:
                        pending += data
                        last_rx = time.monotonic()
                        wrong_speed |= _baud_of(self.pty._slave) not in (None, self.baud)
                        if len(pending) > 512:  # longer than any RTU frame: noise
                            pending, wrong_speed = b"", False
                if pending and time.monotonic() - last_rx >= gap:
                    frame, pending = pending, b""
                    if not wrong_speed and rtu_crc_ok(frame):
                        sock.sendall(frame)
                    wrong_speed = False
                if self.hostile == "flood":
                    self.pty.write(self.faults.garbage_bytes(512))
                if sock in r:
                    data = sock.recv(4096)
                    if not data:
                        sock.close()
                        sock = None
                        continue
                    self.pty.write(data)
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()
