"""A Redfish BMC simulator: HTTPS on 127.0.0.1 (a self-signed certificate made at start),
Basic and session authentication, and the resources a BMC serves for chassis power.

``/redfish/v1`` (service root), ``/redfish/v1/Chassis`` (collection), ``/redfish/v1/Chassis/1``,
``.../Power`` (``PowerControl[0].PowerConsumedWatts`` with ``PowerMetrics``),
``.../EnvironmentMetrics`` (``PowerWatts.Reading`` with its ``DataSourceUri``, ``EnergykWh.Reading``),
``.../Sensors/TotalPower`` (``SensingInterval``, ``AveragingInterval`` as ISO 8601 durations) and
``/redfish/v1/SessionService/Sessions`` (POST -> ``X-Auth-Token`` + ``Location``; DELETE).

Like a BMC, the reported power is the mean of the signal over the last ``window`` s and it
changes only every ``update`` s (the energy counter too); whole watts, kWh with 6 decimals.
Each resource carries ``Oem.Sim.ReadingTime`` (the time of the last update).  The
simulator writes its certificate (``ca.pem``) and a credentials file (``credentials.json``,
mode 0600) into a temporary folder and gives both to the driver in its URI.

Options: ``window`` (s, 10), ``update`` (s, 5), ``user`` (``admin``), ``password`` (random
when empty), ``auth`` (``any``, ``basic``, ``session``: what it accepts; ``session`` also has
the driver log in with a session), ``silent_s`` (how
long a ``silent`` reply is held back, 3 s).  Faults (``faults=``): the common ones (garbage,
partial, nan, silent, exception -> HTTP 500, drop -> the connection is closed unanswered)
and ``auth:P`` (a request is answered 401), ``stale:T+D`` (from T s on, for D s, the value
and its ReadingTime stop updating), ``reset:T`` (the energy counter restarts from 0 at T s;
repeatable ``reset:T1;T2``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from drivers.base import MeterConfigError
from drivers.sim.faults import FaultPlan
from drivers.sim.modbus_sim import free_port
from drivers.sim.simulator import Simulator

#: samples per averaging window / per energy step (the signal is a pure function of time)
_SAMPLES = 200


@dataclass
class RedfishFaultPlan(FaultPlan):
    auth: float = 0.0
    stale: list[tuple[float, float]] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)

    EXTRA_PROBS = ("auth",)
    EXTRA_SPANS = {"stale": ("stale", 5.0)}
    EXTRA_TIMES = {"reset": "resets"}

    def is_stale(self, t_s: float) -> bool:
        return self.within(self.stale, t_s)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 / ::1 (EC P-256, one day)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calibrate redfish simulator")])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "ca.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


class RedfishSimulator(Simulator):
    kind = "redfish"
    options: dict[str, Any] = {"window": 10.0, "update": 5.0, "user": "admin", "password": "",
                               "auth": "any", "silent_s": 3.0}
    fault_plan = RedfishFaultPlan
    faults: RedfishFaultPlan

    def __init__(self, signal: Any = None, faults: str | FaultPlan | None = None,
                 seed: int | None = None, **opts: Any) -> None:
        super().__init__(signal=signal, faults=faults, seed=seed, **opts)
        w, u = float(self.opts["window"]), float(self.opts["update"])
        if not (0 < w <= 3600 and 0 < u <= 3600):
            raise MeterConfigError("sim:redfish: window and update must be > 0 and at most 3600 s")
        if self.opts["auth"] not in ("any", "basic", "session"):
            raise MeterConfigError("sim:redfish: auth must be any, basic or session")
        self.password = str(self.opts["password"]) or secrets.token_urlsafe(18)
        self.user = str(self.opts["user"])
        self.sessions: dict[str, str] = {}  # token -> session id
        self.deleted_sessions = 0
        self.logins = 0
        self._snap_lock = threading.Lock()
        self._snap: tuple[float, float, float] | None = None  # (power W, energy J, update time s)
        self._e_int = 0.0  # energy J integrated up to _t_int
        self._t_int = (self.now() // float(self.opts["update"])) * float(self.opts["update"])
        self._e_origin = 0.0  # counter origin (moved by reset faults)
        self._resets_done = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.folder: Path | None = None

    # -- the BMC's view of the signal -------------------------------------------------------
    def _mean(self, a: float, b: float) -> float:
        if b <= a:
            return float(self.signal(b))
        n = _SAMPLES
        h = (b - a) / n
        return sum(self.signal(a + (i + 0.5) * h) for i in range(n)) / n

    def snapshot(self) -> tuple[float, float, float]:
        """(power W as the BMC reports it, energy counter J, time s of that update)."""
        t = self.now()
        u, w = float(self.opts["update"]), float(self.opts["window"])
        with self._snap_lock:
            if self._snap is not None and self.faults.is_stale(t):
                return self._snap
            tu = (t // u) * u  # the last update instant
            if self._snap is None or tu > self._snap[2]:
                if tu > self._t_int:
                    self._e_int += self._mean(self._t_int, tu) * (tu - self._t_int)
                    self._t_int = tu
                while self._resets_done < len(self.faults.resets) and self.faults.resets[self._resets_done] <= tu:
                    self._e_origin = self._e_int
                    self._resets_done += 1
                p = self._mean(tu - w, tu)
                self._snap = (p, self._e_int - self._e_origin, tu)
            return self._snap

    def reading_time(self, t_s: float) -> str:
        wall = time.time() - (self.now() - t_s)
        return dt.datetime.fromtimestamp(wall, dt.timezone.utc).isoformat(timespec="milliseconds")

    # -- resources ---------------------------------------------------------------------------
    def document(self, path: str) -> Any:
        path = path.rstrip("/") or "/"
        c = "/redfish/v1/Chassis/1"
        if path == "/redfish/v1":
            return {"@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot", "Id": "RootService",
                    "Name": "Root Service", "RedfishVersion": "1.17.0", "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
                    "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                    "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}}
        if path == "/redfish/v1/Chassis":
            return {"@odata.id": "/redfish/v1/Chassis", "@odata.type": "#ChassisCollection.ChassisCollection",
                    "Name": "Chassis Collection", "Members@odata.count": 1, "Members": [{"@odata.id": c}]}
        if path == c:
            return {"@odata.id": c, "@odata.type": "#Chassis.v1_23_0.Chassis", "Id": "1", "Name": "Computer System Chassis",
                    "ChassisType": "RackMount", "Manufacturer": "Calibrate", "Model": "Simulated BMC",
                    "SerialNumber": "SIM0001", "PowerState": "On",
                    "Power": {"@odata.id": f"{c}/Power"}, "EnvironmentMetrics": {"@odata.id": f"{c}/EnvironmentMetrics"},
                    "PowerSubsystem": {"@odata.id": f"{c}/PowerSubsystem"}, "Sensors": {"@odata.id": f"{c}/Sensors"}}
        if path == f"{c}/PowerSubsystem":
            return {"@odata.id": path, "@odata.type": "#PowerSubsystem.v1_1_0.PowerSubsystem", "Id": "PowerSubsystem",
                    "Name": "Power Subsystem", "CapacityWatts": 2000, "Status": {"State": "Enabled", "Health": "OK"}}
        p, e, tu = self.snapshot()
        nan = self.faults.hit("nan")
        watts: Any = None if nan else round(p)
        oem = {"Sim": {"ReadingTime": self.reading_time(tu)}}
        if path == f"{c}/Power":
            return {"@odata.id": path, "@odata.type": "#Power.v1_7_1.Power", "Id": "Power", "Name": "Power",
                    "PowerControl": [{"@odata.id": f"{path}#/PowerControl/0", "MemberId": "0",
                                      "Name": "System Power Control", "PowerConsumedWatts": watts,
                                      "PowerCapacityWatts": 2000,
                                      "PowerMetrics": {"IntervalInMin": 1, "AverageConsumedWatts": watts,
                                                       "MinConsumedWatts": watts, "MaxConsumedWatts": watts}}],
                    "Oem": oem}
        if path == f"{c}/EnvironmentMetrics":
            return {"@odata.id": path, "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
                    "Id": "EnvironmentMetrics", "Name": "Chassis Environment Metrics",
                    "PowerWatts": {"DataSourceUri": f"{c}/Sensors/TotalPower", "Reading": watts},
                    "EnergykWh": {"DataSourceUri": f"{c}/Sensors/TotalEnergy", "Reading": round(e / 3.6e6, 6)},
                    "Oem": oem}
        if path == f"{c}/Sensors/TotalPower":
            return {"@odata.id": path, "@odata.type": "#Sensor.v1_7_0.Sensor", "Id": "TotalPower",
                    "Name": "Total Power", "ReadingType": "Power", "ReadingUnits": "W", "Reading": watts,
                    "ReadingTime": self.reading_time(tu), "PhysicalContext": "Chassis",
                    "SensingInterval": f"PT{float(self.opts['update']):g}S",
                    "AveragingInterval": f"PT{float(self.opts['window']):g}S", "AverageReading": watts}
        raise KeyError(path)

    # -- authentication ----------------------------------------------------------------------
    def authorized(self, headers: Any) -> bool:
        mode = self.opts["auth"]
        token = headers.get("X-Auth-Token")
        if token and mode in ("any", "session"):
            return token in self.sessions
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic ") and mode in ("any", "basic"):
            try:
                user, _, pw = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return secrets.compare_digest(user, self.user) and secrets.compare_digest(pw, self.password)
        return False

    # -- serving -------------------------------------------------------------------------------
    def start(self) -> str:
        self.folder = Path(tempfile.mkdtemp(prefix="calibrate-redfish-sim-"))
        cert, key = make_certificate(self.folder)
        creds = self.folder / "credentials.json"
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"user": self.user, "password": self.password}, fh)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self._stop = threading.Event()
        self.port_no = free_port()
        self._serve()
        return self.uri()

    def uri(self) -> str:
        assert self.folder is not None
        auth = "&auth=session" if self.opts["auth"] == "session" else ""
        return (f"redfish://127.0.0.1:{self.port_no}/Chassis/1?ca={self.folder / 'ca.pem'}"
                f"&credentials={self.folder / 'credentials.json'}{auth}")

    def _serve(self) -> None:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, doc: Any = None, headers: dict[str, str] | None = None,
                       body: bytes | None = None) -> None:
                if body is None:
                    body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("OData-Version", "4.0")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def _error(self, status: int, message: str) -> None:
                self._reply(status, {"error": {"code": "Base.1.0.GeneralError", "message": message}})

            def _common_faults(self) -> bool:
                if sim.faults.dropped(sim.now()):
                    self.close_connection = True
                    return True
                if sim.faults.hit("silent"):
                    sim._stop.wait(float(sim.opts["silent_s"]))
                if sim.faults.hit("exception"):
                    self._error(500, "internal error")
                    return True
                return False

            def _body(self) -> Any:
                try:
                    n = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    n = 0
                raw = self.rfile.read(min(max(n, 0), 65536))
                try:
                    return json.loads(raw)
                except ValueError:
                    return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self._body()
                if self._common_faults():
                    return
                if self.path.rstrip("/") != "/redfish/v1/SessionService/Sessions" or sim.opts["auth"] == "basic":
                    self._error(405 if sim.opts["auth"] == "basic" else 404, "not here")
                    return
                ok = (isinstance(body, dict) and isinstance(body.get("UserName"), str)
                      and isinstance(body.get("Password"), str)
                      and secrets.compare_digest(body["UserName"], sim.user)
                      and secrets.compare_digest(body["Password"], sim.password))
                if not ok or sim.faults.hit("auth"):
                    self._error(401, "login failed")
                    return
                sid, token = secrets.token_hex(4), secrets.token_urlsafe(24)
                sim.sessions[token] = sid
                sim.logins += 1
                loc = f"/redfish/v1/SessionService/Sessions/{sid}"
                self._reply(201, {"@odata.id": loc, "Id": sid, "UserName": sim.user},
                            {"X-Auth-Token": token, "Location": loc})

            def do_DELETE(self) -> None:  # noqa: N802
                if self._common_faults():
                    return
                if not sim.authorized(self.headers):
                    self._error(401, "unauthorized")
                    return
                sid = self.path.rstrip("/").rsplit("/", 1)[-1]
                for token, s in list(sim.sessions.items()):
                    if s == sid:
                        del sim.sessions[token]
                        sim.deleted_sessions += 1
                        self._reply(204)
                        return
                self._error(404, "no such session")

            def do_GET(self) -> None:  # noqa: N802
                if self._common_faults():
                    return
                path = self.path.split("?", 1)[0]
                if path.rstrip("/") != "/redfish/v1" and (not sim.authorized(self.headers) or sim.faults.hit("auth")):
                    self._error(401, "unauthorized")
                    return
                try:
                    doc = sim.document(path)
                except KeyError:
                    self._error(404, "no such resource")
                    return
                body = json.dumps(doc).encode()
                if sim.faults.hit("garbage"):
                    body = sim.faults.garbage_bytes(len(body))
                elif sim.faults.hit("partial"):
                    body = body[: len(body) // 2]
                self._reply(200, body=body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                sock, addr = super().get_request()
                sock.settimeout(5.0)
                try:
                    return sim.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
                except (OSError, ssl.SSLError):
                    sock.close()
                    raise

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Server(("127.0.0.1", self.port_no), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sim-redfish", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(timeout=2)
            self.httpd = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
