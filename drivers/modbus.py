"""Modbus energy meters (RTU on a serial port, or Modbus TCP) with the register map as data.

URIs::

    modbus:/dev/ttyUSB0?profile=sdm120&unit=1&baud=9600&parity=N   (RTU; baud/parity default
                                                                    to the profile's)
    modbus-tcp://HOST:502?profile=sdm630&unit=1                     (Modbus TCP)
    modbus:/dev/ttyUSB0?profile=./mymeter.toml                      (your own profile)

Options: ``profile`` (a built-in name from ``drivers/profiles`` or a path to a ``.toml``),
``unit`` (device id), ``baud``, ``parity`` (N/E/O), ``stopbits``, ``timeout`` (s per request).

Profile schema (TOML; see ``drivers/profiles/sdm120.toml``)::

    [meter]
    model = "Vendor Model"        # recorded in the channel info
    function = 4                  # 4 = input registers (default), 3 = holding registers
    word_order = "big"            # 32-bit values: "big" = high word first (default), "little"
    default_unit = 1              # device id when unit= is not given
    default_baud = 9600           # RTU serial settings when not given in the URI
    default_parity = "N"
    default_stopbits = 1
    update_interval_s = 1.0       # how often the meter refreshes its values (s)
    max_gap = 12                  # quantities at most this many registers apart share a read
    max_block = 80                # at most this many registers per read (Modbus allows 125)

    [quantities.<name>]           # name: power_w (required), energy_j, voltage_v, current_a,
                                  # pf, freq_hz, apparent_va
    address = 0x000C              # 0-based protocol address (register 30013 -> 0x000C)
    type = "float32"              # float32 | int16 | uint16 | int32 | uint32
    scale = 1.0                   # value = raw * scale (before the unit conversion)
    unit = "kWh"                  # energy_j only: kWh | Wh | J (converted to J)
    resolution = 0.01             # energy_j only: register step in `unit` (recorded in J)

Quantities are read in as few requests as the map allows (sorted by address, merged across
gaps up to ``max_gap``).  The cumulative energy register becomes ``energy_j``; its resolution
is recorded and, when it is coarser than :data:`COARSE_ENERGY_J`, power is the primary
reading (an SDM's 0.01 kWh = 36 kJ step is far too coarse for minute-long windows).

Faults: no reply -> ``timeout``; a reply with a bad CRC -> ``crc``; bytes that do not form a
frame -> ``garbage``; a Modbus exception response -> ``exception``; NaN/inf -> ``nan``;
a closed port or connection -> :class:`MeterDisconnected`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.base import (
    STANDARD_QUANTITIES,
    Channel,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterReadError,
    Reading,
)

PROFILE_DIR = Path(__file__).with_name("profiles")
TYPES = {"float32": (2, ">f"), "int16": (1, ">h"), "uint16": (1, ">H"), "int32": (2, ">i"), "uint32": (2, ">I")}
ENERGY_UNITS_J = {"kwh": 3.6e6, "wh": 3600.0, "j": 1.0}
#: an energy register coarser than this (J) is not the primary reading: at 17 W a
#: 1-minute window holds 1 kJ, so 10 J is 1 % quantisation
COARSE_ENERGY_J = 10.0
MODBUS_MAX_REGISTERS = 125
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   10: "gateway path unavailable", 11: "gateway target failed to respond"}


def rtu_crc_ok(frame: bytes) -> bool:
    """Whether an RTU frame ends in the CRC-16 of the bytes before it (pymodbus's CRC, which
    reads the two CRC bytes, low byte first on the wire, as one big-endian int)."""
    from pymodbus.framer import FramerRTU

    return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))


@dataclass(frozen=True)
class Quantity:
    name: str
    address: int
    type: str = "float32"
    scale: float = 1.0
    to_j: float = 1.0  # energy unit -> J
    resolution_j: float | None = None

    @property
    def count(self) -> int:
        return TYPES[self.type][0]

    def decode(self, regs: list[int], word_order: str) -> float:
        if self.count == 2 and word_order == "little":
            regs = [regs[1], regs[0]]
        raw = struct.unpack(TYPES[self.type][1], struct.pack(f">{self.count}H", *regs))[0]
        return float(raw) * self.scale * self.to_j

    def encode(self, value: float, word_order: str) -> list[int]:
        """Registers that hold ``value`` (in the quantity's SI unit); used by the simulator."""
        raw = value / (self.scale * self.to_j)
        if self.type != "float32":
            raw = int(round(raw))
        regs = list(struct.unpack(f">{self.count}H", struct.pack(TYPES[self.type][1], raw)))
        return regs[::-1] if self.count == 2 and word_order == "little" else regs


@dataclass
class Profile:
    """A meter's register map (see the module doc for the TOML schema)."""

    name: str
    model: str
    quantities: dict[str, Quantity]
    function: int = 4
    word_order: str = "big"
    default_unit: int = 1
    default_baud: int = 9600
    default_parity: str = "N"
    default_stopbits: float = 1
    update_interval_s: float | None = None
    max_gap: int = 0
    max_block: int = MODBUS_MAX_REGISTERS
    source: str = ""
    blocks: list[tuple[int, int, list[Quantity]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blocks = plan_blocks(list(self.quantities.values()), self.max_gap, self.max_block)

    @property
    def energy_resolution_j(self) -> float | None:
        q = self.quantities.get("energy_j")
        return q.resolution_j if q else None


def plan_blocks(quantities: list[Quantity], max_gap: int, max_block: int) -> list[tuple[int, int, list[Quantity]]]:
    """Group quantities into (start, count, members) reads: fewest round trips within limits."""
    blocks: list[tuple[int, int, list[Quantity]]] = []
    for q in sorted(quantities, key=lambda q: q.address):
        if blocks:
            start, count, members = blocks[-1]
            gap = q.address - (start + count)
            new_count = q.address + q.count - start
            if gap <= max_gap and new_count <= max_block:
                blocks[-1] = (start, max(count, new_count), [*members, q])
                continue
        blocks.append((q.address, q.count, [q]))
    return blocks


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: tomli is a dependency there
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise MeterConfigError(f"cannot read profile {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MeterConfigError(f"profile {path} is not valid TOML: {exc}") from None


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(spec: str) -> Profile:
    """A built-in profile by name (``sdm120``) or a TOML file by path (``./mymeter.toml``)."""
    if "/" in spec or spec.endswith(".toml") or os.sep in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise MeterConfigError(f"profile file {spec} not found")
    else:
        path = PROFILE_DIR / f"{spec.lower()}.toml"
        if not path.is_file():
            raise MeterConfigError(f"unknown Modbus profile {spec!r}; built in: {', '.join(builtin_profiles())} "
                                   "(or give a path to your own .toml, see drivers/modbus.py)")
    return parse_profile(_load_toml(path), name=path.stem, where=f"profile {path}", source=str(path))


# -- the profile schema (pydantic v2): every key typed, ranged and finite, nothing unknown --
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _MeterTable(BaseModel):
    """``[meter]``: the meter's identity, register function, defaults and read planning."""

    model_config = _STRICT
    model: str | None = Field(None, min_length=1, max_length=200)
    function: Literal[3, 4] = 4
    word_order: Literal["big", "little"] = "big"
    default_unit: int = Field(1, ge=0, le=247)
    default_baud: int = Field(9600, ge=300, le=921600)
    default_parity: Literal["N", "E", "O"] = "N"
    default_stopbits: Literal[1, 2] | float = 1
    update_interval_s: float | None = Field(None, gt=0, le=3600)
    max_gap: int = Field(0, ge=0, le=MODBUS_MAX_REGISTERS)
    max_block: int = Field(MODBUS_MAX_REGISTERS, ge=2, le=MODBUS_MAX_REGISTERS)

    @field_validator("default_stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError("must be 1, 1.5 or 2")
        return float(v)


class _QuantityTable(BaseModel):
    """``[quantities.<name>]``: where a quantity lives and how its registers scale."""

    model_config = _STRICT
    address: int = Field(ge=0, le=0xFFFF)
    type: Literal["float32", "int16", "uint16", "int32", "uint32"] = "float32"
    scale: float = Field(1.0, gt=0, le=1e9)
    unit: str | None = None
    resolution: float | None = Field(None, gt=0, le=1e9)

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        if v is not None and v.lower() not in ENERGY_UNITS_J:
            raise ValueError(f"unit {v[:20]!r}; use kWh, Wh or J")
        return v

    @model_validator(mode="after")
    def _fits(self) -> _QuantityTable:
        if self.address + TYPES[self.type][0] > 0x10000:
            raise ValueError(f"address 0x{self.address:04X} + {TYPES[self.type][0]} registers is past "
                             "the Modbus address space (0..65535)")
        return self


class _ProfileFile(BaseModel):
    model_config = _STRICT
    meter: _MeterTable = Field(default_factory=_MeterTable)
    quantities: dict[str, _QuantityTable]

    @field_validator("quantities", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name in v:
                if name not in STANDARD_QUANTITIES:
                    raise ValueError(f"unknown quantity {str(name)[:40]!r}; use {', '.join(STANDARD_QUANTITIES)}")
            if "power_w" not in v:
                raise ValueError("needs [quantities.power_w]")
        return v

    @model_validator(mode="after")
    def _energy_only(self) -> _ProfileFile:
        for name, q in self.quantities.items():
            if name != "energy_j" and (q.unit is not None or q.resolution is not None):
                raise ValueError(f"quantities.{name}: unit/resolution apply to energy_j only")
        return self


def _first_error(exc: ValidationError) -> str:
    """The first pydantic error as ``key.path: what is allowed (got X)``, one line."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-after"))
    msg = re.sub(r" or instance of \w+", "", str(err.get("msg", "invalid")).removeprefix("Value error, "))
    got = err.get("input")
    tail = f" (got {got!r:.40})" if err.get("type") != "missing" and not isinstance(got, dict) else ""
    text = f"{loc}: {msg}{tail}" if loc else f"{msg}"
    return " ".join(text.split())


def parse_profile(data: Any, name: str, where: str, source: str = "") -> Profile:
    """A :class:`Profile` from a profile's parsed TOML; any flaw -> one-line MeterConfigError."""
    if not isinstance(data, dict) or "quantities" not in data:
        raise MeterConfigError(f"{where}: needs [meter] and [quantities.<name>] tables")
    try:
        doc = _ProfileFile.model_validate(data)
    except ValidationError as exc:
        raise MeterConfigError(f"{where}: {_first_error(exc)}") from None
    quantities: dict[str, Quantity] = {}
    for qname, q in doc.quantities.items():
        to_j = ENERGY_UNITS_J[(q.unit or "kWh").lower()] if qname == "energy_j" else 1.0
        res_j = q.resolution * to_j if q.resolution is not None else None
        quantities[qname] = Quantity(qname, q.address, q.type, q.scale, to_j, res_j)
    m = doc.meter
    return Profile(
        name=name, model=m.model or name, quantities=quantities, function=m.function,
        word_order=m.word_order, default_unit=m.default_unit, default_baud=m.default_baud,
        default_parity=m.default_parity, default_stopbits=float(m.default_stopbits),
        update_interval_s=m.update_interval_s, max_gap=m.max_gap, max_block=m.max_block, source=source,
    )


def rtu_request_bytes(count: int) -> tuple[int, int]:
    """(request, reply) bytes of one RTU read of ``count`` registers."""
    return 8, 5 + 2 * count


class ModbusMeter(Meter):
    """A Modbus energy meter read through pymodbus (RTU serial or TCP)."""

    kind = "modbus"
    default_interval_s = 1.0
    min_interval_s = 0.05  # a serial/TCP request and reply per block

    def __init__(self, target: str, profile: Profile, tcp: bool = False, unit: int | None = None,
                 baudrate: int | None = None, parity: str | None = None, stopbits: float | None = None,
                 timeout_s: float | None = None, name: str | None = None, interval_s: float | None = None) -> None:
        super().__init__(name, interval_s)
        self.target, self.profile, self.tcp = target, profile, tcp
        self.unit = profile.default_unit if unit is None else unit
        if not 0 <= self.unit <= 247:
            raise MeterConfigError(f"{self.name}: unit must be 0..247, got {self.unit}")
        self.baudrate = baudrate or profile.default_baud
        self.parity = (parity or profile.default_parity).upper()
        if self.parity not in ("N", "E", "O"):
            raise MeterConfigError(f"{self.name}: parity must be N, E or O")
        self.stopbits = stopbits or profile.default_stopbits
        wire_s = max(self.wire_time_s(c) for _, c, _ in profile.blocks) if not tcp else 0.0
        self.timeout_s = timeout_s or (0.5 + 2 * wire_s)
        self.client: Any = None
        self._rx = b""
        if baudrate is None and not tcp:
            self.notes.append(f"{self.name}: {profile.model} at {self.baudrate} baud {8}{self.parity}"
                              f"{self.stopbits:g} unit {self.unit} (profile defaults)")

    def wire_time_s(self, count: int) -> float:
        """RTU time on the wire for one read of ``count`` registers (s), with 3.5-char silences."""
        bits = 10 + (1 if self.parity != "N" else 0) + (int(self.stopbits) - 1)
        req, rep = rtu_request_bytes(count)
        return (req + rep + 2 * 3.5) * bits / self.baudrate

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx = b""
        else:
            self._rx = data
        return data

    def _make_client(self) -> Any:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        if self.tcp:
            host, _, port = self.target.rpartition(":")
            return ModbusTcpClient(host, port=int(port), timeout=self.timeout_s, retries=0,
                                   trace_packet=self._trace)
        return ModbusSerialClient(self.target, baudrate=self.baudrate, parity=self.parity,
                                  stopbits=int(self.stopbits), bytesize=8, timeout=self.timeout_s,
                                  retries=0, trace_packet=self._trace)

    def open(self) -> list[Channel]:
        self.close()
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we report faults ourselves
        if not self.tcp and "://" not in self.target and not os.path.exists(self.target):
            raise MeterConfigError(f"serial port {self.target} does not exist (is the meter plugged in?); "
                                   "`calibrate meters` lists the serial ports here")
        self.client = self._make_client()
        if not self.client.connect():
            self.client = None
            if self.tcp:
                # refused, no route or unknown name: a config error at start (exit 2); on a
                # reopen mid-session the recorder catches it and tries again
                raise MeterConfigError(f"modbus-tcp://{self.target}: cannot connect to the Modbus TCP server "
                                       "(refused, unreachable or unknown host); check HOST:PORT and that the "
                                       "meter or its gateway is on this network")
            from drivers.transport import open_serial

            ser = open_serial(self.target, baudrate=self.baudrate, parity=self.parity,
                              stopbits=self.stopbits, timeout=0.1)  # raises the precise MeterConfigError
            ser.close()
            raise MeterDisconnected(f"{self.target}: cannot open the serial port")
        try:
            self.read()
        except MeterDisconnected:
            self.close()
            raise
        except MeterReadError as exc:
            if exc.code == "timeout":
                self.close()
                how = "" if self.tcp else f" at {self.baudrate} baud 8{self.parity}{self.stopbits:g}"
                raise MeterDisconnected(f"{self.target}: no Modbus answer from unit {self.unit}{how}; check "
                                        "unit=, baud=, parity= and the RS-485 wiring (A/B)") from None
        res = self.profile.energy_resolution_j
        primary = "energy_j" if ("energy_j" in self.profile.quantities and res is not None
                                 and res <= COARSE_ENERGY_J) else "power_w"
        if primary == "power_w" and res is not None:
            self.notes.append(f"{self.name}: energy register steps {res:g} J; power is the primary reading")
        upd = self.profile.update_interval_s
        self.channels = [Channel(
            id=self.name, scope="wall", source="measured", quantities=tuple(self.profile.quantities),
            window_s=upd, update_interval_s=upd, energy_resolution_j=res, primary=primary,
            info={"model": self.profile.model, "profile": self.profile.name, "profile_file": self.profile.source,
                  "transport": "tcp" if self.tcp else "rtu", "target": self.target, "unit": self.unit,
                  "baudrate": None if self.tcp else self.baudrate,
                  "reads_per_poll": len(self.profile.blocks),
                  "blocks": [[start, count] for start, count, _ in self.profile.blocks]},
        )]
        return self.channels

    def _read_block(self, start: int, count: int) -> list[int]:
        from pymodbus.exceptions import ConnectionException, ModbusException

        fn = (self.client.read_input_registers if self.profile.function == 4
              else self.client.read_holding_registers)
        try:
            rr = fn(start, count=count, device_id=self.unit)
        except ConnectionException as exc:
            raise MeterDisconnected(f"{self.target}: {exc}") from None
        except ModbusException as exc:
            if not self.client.connected:
                raise MeterDisconnected(f"{self.target}: connection lost ({exc})") from None
            raise self._classify_silence(start, count) from None
        except OSError as exc:
            raise MeterDisconnected(f"{self.target}: {exc}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise MeterReadError(f"{self.target}: exception {code} ({EXCEPTION_NAMES.get(code, '?')}) "
                                 f"reading {count} registers at 0x{start:04X}", code="exception")
        regs = list(rr.registers)
        if len(regs) < count:
            raise MeterReadError(f"{self.target}: {len(regs)} registers back, asked {count}", code="garbage")
        return regs

    def _classify_silence(self, start: int, count: int) -> MeterReadError:
        rx, self._rx = self._rx, b""
        if not rx:
            return MeterReadError(f"{self.target}: no reply within {self.timeout_s:g} s", code="timeout")
        if not self.tcp:
            want = 5 + 2 * count
            for i in range(len(rx) - want + 1):
                frame = rx[i:i + want]
                if frame[0] == self.unit and frame[1] == self.profile.function and frame[2] == 2 * count:
                    if not rtu_crc_ok(frame):
                        return MeterReadError(f"{self.target}: reply with a bad CRC ({frame.hex()})", code="crc")
        return MeterReadError(f"{self.target}: {len(rx)} bytes that are no Modbus reply ({rx[:16].hex()})",
                              code="garbage")

    def read(self) -> Reading:
        if self.client is None:
            raise MeterDisconnected(f"{self.target}: not open")
        values: dict[str, float] = {}
        wo = self.profile.word_order
        for start, count, members in self.profile.blocks:
            regs = self._read_block(start, count)
            for q in members:
                off = q.address - start
                v = q.decode(regs[off:off + q.count], wo)
                if not math.isfinite(v):
                    raise MeterReadError(f"{self.target}: {q.name} is {v} (no data)", code="nan")
                values[q.name] = v
        p = values["power_w"]
        if abs(p) > 1e6:
            raise MeterReadError(f"{self.target}: {p} W is not a plausible reading", code="range")
        return Reading({self.name: values})

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "protocol": "modbus-tcp" if self.tcp else "modbus-rtu",
                "target": self.target, "profile": self.profile.name, "model": self.profile.model,
                "unit": self.unit, "baudrate": None if self.tcp else self.baudrate,
                "parity": None if self.tcp else self.parity, "timeout_s": self.timeout_s,
                "blocks": [[s, c] for s, c, _ in self.profile.blocks]}


def from_uri(uri: Any) -> Meter:
    spec = uri.take("profile", None)
    if not spec:
        raise MeterConfigError(f"{uri.raw}: needs ?profile=NAME or ?profile=./file.toml "
                               f"(built in: {', '.join(builtin_profiles())})")
    profile = load_profile(spec)
    tcp = uri.scheme == "modbus-tcp"
    if tcp:
        host, port = uri.host_port
        target = f"{host}:{port or 502}"
    else:
        if not uri.target:
            raise MeterConfigError(f"{uri.raw}: no serial port given (e.g. modbus:/dev/ttyUSB0?profile=sdm120)")
        target = uri.target
    unit = uri.take("unit", None, int)
    timeout = uri.take("timeout", None, float)
    if tcp:
        baud = parity = stop = None
    else:
        baud = uri.take("baud", None, int)
        parity = uri.take("parity", None)
        stop = uri.take("stopbits", None, float)
    return ModbusMeter(target, profile, tcp=tcp, unit=unit, baudrate=baud, parity=parity, stopbits=stop,
                       timeout_s=timeout, name=uri.name, interval_s=uri.interval_s)
