"""Yokogawa WT310-class SCPI simulator on a pseudo-terminal or a TCP socket (127.0.0.1).

Speaks the WT300 command set that :mod:`drivers.wt310` uses, long or short mnemonics,
compound messages (``;``, relative headers), replies terminated by CR+LF.  It keeps its
state: numeric format, items, ranges and auto-range, update rate, integration, the EESR
register with its transition filters and an error queue.  Unknown headers queue error
``113,"Undefined header"``, bad parameters ``224,"Illegal parameter value"``, and changing
the rate or ranges while integrating ``813,"Cannot be set while integration is running"``
(code chosen by this simulator).  ``:COMMunicate:WAIT 1`` blocks until the end of the next
data update, as on the meter.

Every update period the meter's P is the average of the signal over that period; U is
230 V, I = P / (U * PF); WH integrates while integration runs.  When I (or U) exceeds 140 % of
its range, I, P, S and LAMBda read ``INF`` (over range); the ``nan`` fault
reports P as ``NAN``.  Faults (``garbage``, ``partial``, ``nan``, ``silent``, ``drop``)
apply to ``VALue?`` replies; ``drop`` unplugs the pty or closes the socket.  ``hostile=``
(:data:`HOSTILE`) turns it into a broken device ``hostile_at`` s after start.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Callable

from drivers.sim.pty_port import PtyPort
from drivers.sim.simulator import Simulator
from drivers.wt310 import CURRENT_RANGES_A, OVER_RANGE_FACTOR, RATES_S, VOLTAGE_RANGES_V

VOLTS = 230.0
HZ = 50.0
#: ``hostile=`` modes (from ``hostile_at`` s on): a flood of ``;``, random bytes, or an
#: endless line with no terminator
HOSTILE = ("flood", "random", "endless")
IDENTITY = "YOKOGAWA,WT310-D-C1,SIM0000001,F1.05"
#: a WT210 reports its model code (7604xx), not "WT210" (noted in Intel's yoko-tool)
IDENTITY_WT210 = "YOKOGAWA,760401,SIM0000002,F2.01"
#: WT200-family item names -> the simulator's value keys, in the meter's output order
WT200_ITEMS = {"V": "U", "A": "I", "W": "P", "VA": "S", "VAR": "Q", "PF": "LAMB", "DEGR": "PHI",
               "VHZ": "FU", "AHZ": "FI", "WH": "WH", "WHP": "WH", "WHM": "ZERO", "AH": "ZERO",
               "AHP": "ZERO", "AHM": "ZERO", "VPK": "U", "APK": "I", "TIME": "TIME", "MATH": "ZERO"}
MNEMONICS = (
    "NUMeric", "FORMat", "NORMal", "NUMber", "ITEM", "VALue", "INPut", "VOLTage", "CURRent", "RANGe",
    "AUTO", "RATE", "INTEGrate", "STARt", "STOP", "RESet", "STATe", "MODE", "COMMunicate", "WAIT",
    "HEADer", "REMote", "VERBose", "STATus", "ERRor", "EESR", "FILTer", "SYSTem", "ASCii", "FLOat",
    "CONFigure", "SAMPle", "MEASure", *WT200_ITEMS,
)
_SHORT = {m.upper(): "".join(c for c in m if c.isupper()) for m in MNEMONICS}
_SHORT.update({s: s for s in list(_SHORT.values())})
FUNCTIONS = {"U": "U", "I": "I", "P": "P", "S": "S", "Q": "Q", "LAMB": "LAMB", "LAMBDA": "LAMB",
             "FU": "FU", "FI": "FI", "WH": "WH", "TIME": "TIME", "PHI": "PHI"}
ERRORS = {113: "Undefined header", 224: "Illegal parameter value", 813: "Cannot be set while integration is running"}


class SCPIError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _node(word: str) -> str:
    m = re.fullmatch(r"([A-Za-z*]+)(\d*)", word)
    if not m:
        raise SCPIError(113)
    base = m.group(1).upper()
    if base not in _SHORT:
        raise SCPIError(113)
    return _SHORT[base] + m.group(2)


def _on_off(arg: str) -> bool:
    a = arg.strip().upper()
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise SCPIError(224)


def _value_with_unit(arg: str, unit: str) -> float:
    a = arg.strip().upper()
    scale = 1.0
    for suffix, s in (("M" + unit, 1e-3), (unit, 1.0)):
        if a.endswith(suffix):
            a, scale = a[: -len(suffix)], s
            break
    try:
        return float(a) * scale
    except ValueError:
        raise SCPIError(224) from None


def _nr3(v: float, digits: int = 4) -> str:
    if v != v:
        return "NAN"
    if v in (float("inf"), float("-inf")):
        return "INF"
    return f"{v:.{digits}E}"


class WT310Simulator(Simulator):
    kind = "wt310"
    options = {"transport": "pty", "rate": 1.0, "model": "wt310", "hostile": "", "hostile_at": 0.0}

    # -- state ----------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.fmt = "ASC"
        self.items: list[str] = ["U,1", "I,1", "P,1", "S,1", "Q,1", "LAMB,1", "PHI,1", "FU,1", "FI,1", "WH,1"]
        self.n_items = 10
        self.vrange, self.irange = 300.0, 2.0
        self.vauto = self.iauto = True
        self.rate_s = float(self.opts["rate"])
        self.integ = "RES"
        self.wh = 0.0
        self.eesr = 0
        self.filters: dict[int, str] = {}
        self.errors: list[int] = []
        self.header = False
        self.values: dict[str, float] = {"U": VOLTS, "I": 0.0, "P": 0.0, "S": 0.0, "Q": 0.0, "LAMB": 1.0,
                                         "PHI": 0.0, "FU": HZ, "FI": HZ, "TIME": 0.0}
        self.updates = 0
        self.meas_items = {name: name in ("V", "A", "W", "PF") for name in WT200_ITEMS}

    def _update(self) -> None:
        """One data update: new averages, integration, EESR UPD transition."""
        e = self.energy_j()
        t = self._last_t  # the integrator's own time of e
        p = (e - self._e_last) / (t - self._t_last) if t > self._t_last else self.power_w()
        self._e_last, self._t_last = e, t
        pf = 0.93
        amps = p / (VOLTS * pf)
        if self.iauto:
            self.irange = next((r for r in CURRENT_RANGES_A if amps <= r), CURRENT_RANGES_A[-1])
        with self.cond:
            if self.integ == "STAR":
                self.wh += (e - self._e_integ) / 3600.0
            self._e_integ = e
            v = dict(U=VOLTS, I=amps, P=p, S=VOLTS * amps, Q=VOLTS * amps * (1 - pf * pf) ** 0.5,
                     LAMB=pf, PHI=0.0, FU=HZ, FI=HZ)
            if amps > OVER_RANGE_FACTOR * self.irange or VOLTS > OVER_RANGE_FACTOR * self.vrange:
                for k in ("I", "P", "S", "Q", "LAMB"):
                    v[k] = float("inf")
            self.values.update(v)
            self.updates += 1
            if self.filters.get(1) in ("FALL", "BOTH"):
                self.eesr |= 1
            self.cond.notify_all()

    def _ticker(self) -> None:
        next_t = self.now() + self.rate_s
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_t - self.now()))
            if self._stop.is_set():
                return
            self._update()
            next_t += self.rate_s
            if next_t < self.now():
                next_t = self.now() + self.rate_s

    # -- SCPI -----------------------------------------------------------------------------
    def handle_message(self, message: str, send: Callable[[bytes], None]) -> None:
        """Execute one program message; send the (joined) response message, if any."""
        replies: list[str] = []
        path: list[str] = []
        value_reply = False
        for unit in message.split(";"):
            unit = unit.strip()
            if not unit:
                continue
            header, _, arg = unit.partition(" ")
            query = header.endswith("?")
            header = header.rstrip("?")
            try:
                if header.startswith("*"):
                    nodes = [header.upper()]
                else:
                    rel = not header.startswith(":")
                    nodes = [_node(w) for w in header.lstrip(":").split(":")]
                    if rel and path:
                        nodes = path[:-1] + nodes
                    path = nodes
                key = ":".join(nodes)
                if key == "WAIT" or key == "COMM:WAIT":
                    self._wait(int(arg or 1))
                    continue
                out = self._execute(key, arg.strip(), query)
            except SCPIError as exc:
                with self.cond:
                    self.errors.append(exc.code)
                continue
            if out is not None:
                replies.append(out)
                value_reply |= key in ("NUM:NORM:VAL", "MEAS:VAL")
        if not replies:
            return
        data = ";".join(replies).encode("latin-1") + b"\r\n"
        if value_reply:
            if self.faults.hit("silent"):
                return
            if self.faults.hit("garbage"):
                data = self.faults.garbage_bytes(len(data) - 2).replace(b"\n", b"?") + b"\r\n"
            elif self.faults.hit("partial"):
                data = data[: max(1, len(data) // 2)]
        send(data)

    def _wait(self, mask: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: bool(self.eesr & mask) or self._stop.is_set() or self._dropped,
                               timeout=max(5.0, 3 * self.rate_s))

    def _execute(self, key: str, arg: str, query: bool) -> str | None:  # noqa: C901 - a command table
        with self.cond:
            integrating = self.integ == "STAR"
            if key == "*IDN":
                return IDENTITY_WT210 if self.wt200 else IDENTITY
            # the two command sets: map WT200 headers onto the shared state, refuse the other set's
            if self.wt200:
                if key.startswith(("NUM", "INP:")) or key == "RATE":
                    raise SCPIError(113)
                key = {"CONF:VOLT:RANG": "INP:VOLT:RANG", "CONF:CURR:RANG": "INP:CURR:RANG",
                       "CONF:VOLT:AUTO": "INP:VOLT:AUTO", "CONF:CURR:AUTO": "INP:CURR:AUTO",
                       "SAMP:RATE": "RATE"}.get(key, key)
                if key.startswith("MEAS:ITEM:"):
                    name = key[10:]
                    if name not in WT200_ITEMS:
                        raise SCPIError(113)
                    if query:
                        return "1" if self.meas_items[name] else "0"
                    self.meas_items[name] = _on_off(arg)
                    return None
                if key == "MEAS:VAL":
                    return self._values_reply_wt200()
            elif key.startswith(("CONF", "SAMP", "MEAS")):
                raise SCPIError(113)
            if key == "*OPT":
                return "C1,EX1"
            if key == "*CLS":
                self.errors.clear()
                self.eesr = 0
                return None
            if key == "*RST":
                self._reset_state()
                return None
            if key in ("COMM:REM", "COMM:VERB"):
                return None if not query else "1"
            if key == "COMM:HEAD":
                if query:
                    return "1" if self.header else "0"
                self.header = _on_off(arg)
                return None
            if key == "STAT:ERR":
                if not self.errors:
                    return '0,"No error"'
                code = self.errors.pop(0)
                return f'{code},"{ERRORS.get(code, "Error")}"'
            if key == "STAT:EESR":
                value, self.eesr = self.eesr, 0
                return str(value)
            if key.startswith("STAT:FILT"):
                bit = int(key[9:] or 0)
                if not 1 <= bit <= 16:
                    raise SCPIError(113)
                if query:
                    return self.filters.get(bit, "NEV")
                word = arg.upper()
                for full, short in (("RISE", "RISE"), ("FALL", "FALL"), ("BOTH", "BOTH"), ("NEVER", "NEV")):
                    if word in (full, short):
                        self.filters[bit] = short
                        return None
                raise SCPIError(224)
            if key == "NUM:FORM":
                if query:
                    return {"ASC": "ASCII", "FLO": "FLOAT"}[self.fmt]
                word = _SHORT.get(arg.upper())
                if word not in ("ASC", "FLO"):
                    raise SCPIError(224)
                self.fmt = word
                return None
            if key == "NUM:NORM:NUM":
                if query:
                    return str(self.n_items)
                n = int(arg) if arg.isdigit() else 0
                if not 1 <= n <= 10:
                    raise SCPIError(224)
                self.n_items = n
                return None
            if key.startswith("NUM:NORM:ITEM"):
                k = int(key[13:] or 0)
                if not 1 <= k <= 10:
                    raise SCPIError(113)
                if query:
                    return self.items[k - 1]
                fn, _, el = arg.upper().partition(",")
                if fn.strip() not in FUNCTIONS or (el and el.strip() not in ("1",)):
                    raise SCPIError(224)
                self.items[k - 1] = f"{FUNCTIONS[fn.strip()]},{el.strip() or '1'}"
                return None
            if key == "NUM:NORM:VAL":
                return self._values_reply()
            if key in ("INP:VOLT:RANG", "INP:CURR:RANG"):
                volt = key == "INP:VOLT:RANG"
                if query:
                    return _nr3(self.vrange if volt else self.irange, 1)
                if integrating:
                    raise SCPIError(813)
                v = _value_with_unit(arg, "V" if volt else "A")
                allowed = VOLTAGE_RANGES_V if volt else CURRENT_RANGES_A
                match = [r for r in allowed if abs(r - v) <= 1e-9 * max(1.0, r)]
                if not match:
                    raise SCPIError(224)
                if volt:
                    self.vrange, self.vauto = match[0], False
                else:
                    self.irange, self.iauto = match[0], False
                return None
            if key in ("INP:VOLT:AUTO", "INP:CURR:AUTO"):
                volt = key == "INP:VOLT:AUTO"
                if query:
                    return "1" if (self.vauto if volt else self.iauto) else "0"
                if integrating:
                    raise SCPIError(813)
                if volt:
                    self.vauto = _on_off(arg)
                else:
                    self.iauto = _on_off(arg)
                return None
            if key == "RATE":
                if query:
                    return _nr3(self.rate_s, 1)
                if integrating:
                    raise SCPIError(813)
                a = arg.upper()
                try:
                    secs = float(a[:-2]) / 1000 if a.endswith("MS") else float(a.rstrip("S"))
                except ValueError:
                    raise SCPIError(224) from None
                if not any(abs(secs - r) < 1e-9 for r in RATES_S):
                    raise SCPIError(224)
                self.rate_s = secs
                return None
            if key == "INTEG:STAR":
                if self.integ == "STAR":
                    raise SCPIError(813)
                self.integ = "STAR"
                self._e_integ = self.energy_j()
                return None
            if key == "INTEG:STOP":
                if self.integ != "STAR":
                    raise SCPIError(813)
                self.integ = "STOP"
                return None
            if key == "INTEG:RES":
                if integrating:
                    raise SCPIError(813)
                self.integ, self.wh = "RES", 0.0
                return None
            if key in ("INTEG:STAT", "INTEG:STATE"):
                return {"STAR": "START", "STOP": "STOP", "RES": "RESET"}[self.integ]
            raise SCPIError(113)

    def _values_reply_wt200(self) -> str:
        nan = self.faults.hit("nan")
        out = []
        for name, on in self.meas_items.items():
            if not on:
                continue
            key = WT200_ITEMS[name]
            v = self.wh if key == "WH" else 0.0 if key == "ZERO" else self.values.get(key, float("nan"))
            if nan and key == "P":
                v = float("nan")
            out.append("9.91E+37" if v != v else "9.9E+37" if abs(v) == float("inf") else f"{v:.4E}")
        return ",".join(out)

    def _values_reply(self) -> str:
        vals: list[float] = []
        nan = self.faults.hit("nan")
        for item in self.items[: self.n_items]:
            fn = item.split(",")[0]
            v = self.wh if fn == "WH" else self.values.get(fn, float("nan"))
            if nan and fn == "P":
                v = float("nan")
            vals.append(v)
        if self.fmt == "FLO":
            payload = struct.pack(f">{len(vals)}f", *vals)
            return f"#4{len(payload):04d}".encode().decode() + payload.decode("latin-1")
        return ",".join(_nr3(v, 5 if fn == "WH" else 4) for v, fn in
                        zip(vals, (i.split(",")[0] for i in self.items[: self.n_items])))

    # -- transports -----------------------------------------------------------------------
    def start(self) -> str:
        if self.opts["transport"] not in ("pty", "tcp"):
            from drivers.base import MeterConfigError
            raise MeterConfigError("sim:wt310: transport must be pty or tcp")
        if not any(abs(float(self.opts["rate"]) - r) < 1e-9 for r in RATES_S):
            from drivers.base import MeterConfigError
            raise MeterConfigError(f"sim:wt310: rate must be one of {RATES_S}")
        self.cond = threading.Condition()
        if str(self.opts["model"]).lower() not in ("wt310", "wt210"):
            from drivers.base import MeterConfigError
            raise MeterConfigError("sim:wt310: model must be wt310 or wt210")
        self.wt200 = str(self.opts["model"]).lower() == "wt210"
        self._reset_state()
        self._stop = threading.Event()
        self._dropped = False
        self._e_last = self.energy_j()
        self._t_last = self._last_t
        self._e_integ = self._e_last
        self._threads = [threading.Thread(target=self._ticker, name="sim-wt310-tick", daemon=True)]
        if self.opts["hostile"]:
            if self.opts["hostile"] not in HOSTILE:
                from drivers.base import MeterConfigError
                raise MeterConfigError(f"sim:wt310: hostile must be one of {', '.join(HOSTILE)}")
            self._threads.append(threading.Thread(target=self._hostile, name="sim-wt310-hostile", daemon=True))
        if self.opts["transport"] == "pty":
            self.port = PtyPort("ttyWT310")
            self._threads.append(threading.Thread(target=self._serve_pty, name="sim-wt310", daemon=True))
            uri = f"serial:{self.port.path}?protocol=wt310&baud=9600"
        else:
            self._listener = self._listen(0)
            self.tcp_port = self._listener.getsockname()[1]
            self._conns: list[socket.socket] = []
            self._threads.append(threading.Thread(target=self._serve_tcp, name="sim-wt310", daemon=True))
            uri = f"tcp://127.0.0.1:{self.tcp_port}?protocol=wt310"
        for t in self._threads:
            t.start()
        return uri

    def stop(self) -> None:
        if not hasattr(self, "_stop"):
            return
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        if self.opts["transport"] == "pty":
            for t in self._threads:
                t.join(timeout=2)
            self.port.close()
        else:
            self._close_tcp()
            for t in self._threads:
                t.join(timeout=2)

    def _hostile(self) -> None:
        """From ``hostile_at`` s on, a broken device: floods ``;``, random bytes, or one line
        that never ends, on the pty or every open connection (writes never block)."""
        import select

        mode = self.opts["hostile"]
        self._stop.wait(float(self.opts["hostile_at"]))
        while not self._stop.is_set():
            if mode == "flood":
                data = b";" * 4096
            elif mode == "random":
                data = self.faults.garbage_bytes(4096)
            else:  # endless: digits, never a terminator
                data = b"1" * 4096
            if self.opts["transport"] == "pty":
                fd = self.port.master
                try:
                    if fd is not None and select.select([], [fd], [], 0.05)[1]:
                        self.port.write(data)
                except (OSError, ValueError):
                    pass
            else:
                for c in list(getattr(self, "_conns", [])):
                    try:
                        c.send(data)
                    except OSError:
                        pass
            self._stop.wait(0.002)

    def _set_dropped(self, dropped: bool) -> None:
        with self.cond:
            self._dropped = dropped
            self.cond.notify_all()

    def _serve_pty(self) -> None:
        buf = b""
        while not self._stop.is_set():
            if self.faults.dropped(self.now()):
                if self.port.plugged:
                    self._set_dropped(True)
                    self.port.unplug()
                self._stop.wait(0.02)
                continue
            if not self.port.plugged:
                self.port.replug()
                self._set_dropped(False)
                buf = b""
            data = self.port.read(0.05)
            if not data:
                continue
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                self.handle_message(line.decode("latin-1").strip("\r"), self.port.write)
            if len(buf) > 8192:
                buf = b""

    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(4)
        s.settimeout(0.05)
        return s

    def _close_tcp(self) -> None:
        for c in list(getattr(self, "_conns", [])):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._conns = []
        if getattr(self, "_listener", None) is not None:
            self._listener.close()
            self._listener = None

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            if self.faults.dropped(self.now()):
                if self._listener is not None:
                    self._set_dropped(True)
                    self._close_tcp()
                self._stop.wait(0.02)
                continue
            if self._listener is None:
                try:
                    self._listener = self._listen(self.tcp_port)
                except OSError:
                    self._stop.wait(0.05)
                    continue
                self._set_dropped(False)
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(0.05)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            threading.Thread(target=self._serve_conn, args=(conn,), name="sim-wt310-conn", daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        def send(data: bytes) -> None:
            try:
                conn.sendall(data)
            except OSError:
                pass

        buf = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                self.handle_message(line.decode("latin-1").strip("\r"), send)
        try:
            conn.close()
        except OSError:
            pass
