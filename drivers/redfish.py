"""Redfish BMC power meter: a whole node's power (and energy) as its baseboard controller reports it.

``redfish://HOST[:PORT]/Chassis/ID?credentials=PATH`` (default port 443, HTTPS, the
certificate checked against the system's trust store; ``ca=PATH`` trusts a given CA or
self-signed certificate, ``verify=0`` turns the check off and says so in the notes and the
channel info).  Options:

* ``credentials=PATH`` -- a JSON or TOML file with ``user`` and ``password`` (strings), not
  readable by group or others (``chmod 600``).  Without it the environment variables
  ``CALIBRATE_REDFISH_USER`` and ``CALIBRATE_REDFISH_PASSWORD`` are used when both are set.
  ``user=``/``password=`` in the URI are refused: a URI ends up in shell history, process
  lists and the session manifest.
* ``auth=basic`` (default) or ``auth=session`` -- HTTP Basic on every request, or one
  Redfish session (``POST /redfish/v1/SessionService/Sessions`` with UserName/Password ->
  ``X-Auth-Token`` and ``Location``), logged in again once on a 401 and deleted on close.
* ``source=auto|power|subsystem`` -- ``power``: the (deprecated, still the most common)
  ``Chassis/ID/Power`` resource, ``PowerControl[0].PowerConsumedWatts`` (W);
  ``subsystem``: the newer ``Chassis/ID/EnvironmentMetrics`` (the companion of
  ``PowerSubsystem``), ``PowerWatts.Reading`` (W) and ``EnergykWh.Reading`` (kWh -> J);
  ``auto`` (default): EnvironmentMetrics when the Chassis links it, else Power.
* ``timeout=S`` (default 5) -- the overall deadline of one request.
* ``window=S``, ``update=S`` -- the BMC's averaging window and update period when known
  (vendor documentation, or ``calibrate characterize``); otherwise taken from the power
  sensor's ``AveragingInterval`` and ``SensingInterval`` (ISO 8601 durations, Sensor
  resource at ``PowerWatts.DataSourceUri``) where the BMC publishes them.
* ``stale=S`` -- a value (and its timestamp, where the BMC gives one) unchanged for longer
  than this is flagged ``stale`` (default: three update periods, 3 s when unknown, at least 2.5 polls).

``PowerControl[0].PowerMetrics`` (``IntervalInMin``, ``AverageConsumedWatts``, Min/Max) is
the window of the *average* fields, not of ``PowerConsumedWatts``: it is kept in the
channel info (``average_interval_s``), never used as the reading's window.  Quantities are
recorded as the BMC gives them; most BMCs stamp nothing, so the sample time is the poll
time (noted).  An ``EnergykWh`` that goes down (a counter reset) keeps ``energy_j``
monotonic (the new count continues from the last) and flags ``energy_j:reset``.

Every failure is a MeterError: timeout -> ``timeout``; 5xx -> ``exception``; not JSON, a
missing field, a non-number -> ``garbage`` (null -> ``nan``); 401/403 -> a one-line
MeterConfigError at the first open, code ``auth`` later.  Secrets never appear in
``describe()``, the channel info, the notes or any message.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import ssl
import time
from pathlib import Path
from typing import Any

from drivers.base import (
    Channel,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterError,
    MeterReadError,
    Reading,
)
from drivers.http_transport import (
    MAX_REPLY_BYTES,
    HttpReply,
    TlsRejected,
    Unreachable,
    build_request,
    fetch,
    json_number,
    resolve,
)
from drivers.secret_files import read_secret_file

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: the biggest credentials file accepted (bytes)
MAX_CREDENTIALS_BYTES = 4096
#: the longest user name / password / session token accepted (characters)
MAX_SECRET_CHARS = 512
MAX_POWER_W = 1e6
NEGATIVE_TOLERANCE_W = 2.0
ENV_USER, ENV_PASSWORD = "CALIBRATE_REDFISH_USER", "CALIBRATE_REDFISH_PASSWORD"
SOURCES = ("auto", "power", "subsystem")
AUTHS = ("basic", "session")
_SESSIONS_PATH = "/redfish/v1/SessionService/Sessions"
_ODATA_PATH = re.compile(r"^/redfish/v1/[A-Za-z0-9_.:/%#@-]{0,400}$")
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def iso_duration_s(text: Any) -> float | None:
    """An ISO 8601 duration (``PT0.5S``, ``PT1M``, ``P1DT2H``) in s; None if not one."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        return None
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    total = d * 86400 + h * 3600 + mi * 60 + s
    return total if math.isfinite(total) and total > 0 else None


def _check_secret(value: Any, what: str, path: str) -> str:
    if not isinstance(value, str):
        raise MeterConfigError(f"redfish: {what} in credentials file {path} must be a string")
    if not 0 < len(value) <= MAX_SECRET_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise MeterConfigError(f"redfish: {what} in credentials file {path} must be 1 to {MAX_SECRET_CHARS} "
                               "printable characters")
    return value


def load_credentials(path: str) -> tuple[str, str]:
    """``(user, password)`` from a JSON or TOML file with keys ``user`` (or ``username``) and
    ``password``.  The file must be a regular file of at most MAX_CREDENTIALS_BYTES that its
    group and others cannot read.  Every problem is a MeterConfigError that never quotes
    the file's contents."""
    text = read_secret_file(path, "redfish: credentials file", MAX_CREDENTIALS_BYTES)
    doc: Any
    try:
        doc = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, RecursionError):
        raise MeterConfigError(f"redfish: credentials file {path} is neither JSON nor TOML "
                               '(write {"user": "...", "password": "..."} or user = "..." / password = "...")') from None
    if not isinstance(doc, dict):
        raise MeterConfigError(f"redfish: credentials file {path} must hold an object with user and password")
    user = doc.get("user", doc.get("username"))
    if user is None or "password" not in doc:
        raise MeterConfigError(f"redfish: credentials file {path} must set user and password")
    return _check_secret(user, "user", path), _check_secret(doc["password"], "password", path)


def _get(doc: Any, *keys: Any) -> Any:
    """``doc[k1][k2]...`` or None when any step is missing or of the wrong type."""
    for k in keys:
        if isinstance(k, int):
            if not isinstance(doc, list) or len(doc) <= k:
                return None
        elif not isinstance(doc, dict):
            return None
        doc = doc[k] if isinstance(k, int) else doc.get(k)
    return doc


def _link(doc: Any, key: str) -> str | None:
    """The ``@odata.id`` of navigation property ``key``, when it is a plausible Redfish path."""
    v = _get(doc, key, "@odata.id")
    return v if isinstance(v, str) and _ODATA_PATH.match(v) else None


def _timestamp(doc: Any) -> str | None:
    """A reading time the BMC put in the resource (``ReadingTime``, or an Oem Timestamp)."""
    candidates = [_get(doc, "ReadingTime")]
    oem = _get(doc, "Oem")
    if isinstance(oem, dict):
        candidates += [_get(o, k) for o in list(oem.values())[:8] for k in ("ReadingTime", "Timestamp", "TimeStamp")]
    for v in candidates:
        if isinstance(v, str) and 0 < len(v) <= 64:
            return v
    return None


def parse_power(doc: Any, what: str) -> dict[str, float]:
    """``Power`` resource -> ``{"power_w": ...}`` (PowerControl[0].PowerConsumedWatts)."""
    ctl = _get(doc, "PowerControl", 0)
    if not isinstance(ctl, dict):
        raise MeterReadError(f"{what}: no PowerControl[0] in the Power resource", code="garbage")
    return {"power_w": json_number(ctl, "PowerConsumedWatts", what)}


def parse_environment(doc: Any, what: str) -> dict[str, float]:
    """``EnvironmentMetrics`` -> power_w (PowerWatts.Reading) and, where present,
    energy_kwh_raw (EnergykWh.Reading, kWh as given)."""
    pw = _get(doc, "PowerWatts")
    if not isinstance(pw, dict):
        raise MeterReadError(f"{what}: no PowerWatts in the EnvironmentMetrics resource", code="garbage")
    out = {"power_w": json_number(pw, "Reading", what)}
    ek = _get(doc, "EnergykWh")
    if isinstance(ek, dict) and "Reading" in ek:
        kwh = json_number(ek, "Reading", what)
        if kwh < 0:
            raise MeterReadError(f"{what}: EnergykWh {kwh:g} is negative", code="range")
        out["energy_kwh"] = kwh
    return out


class RedfishMeter(Meter):
    """A Redfish BMC's chassis power (see the module doc)."""

    kind = "redfish"
    default_interval_s = 1.0
    min_interval_s = 0.05

    def __init__(self, host: str, port: int | None = None, chassis: str = "1", name: str | None = None,
                 interval_s: float | None = None, timeout_s: float = 5.0, credentials: str | None = None,
                 ca: str | None = None, verify: bool = True, auth: str = "basic", source: str = "auto",
                 window_s: float | None = None, update_s: float | None = None, stale_s: float | None = None) -> None:
        super().__init__(name, interval_s)
        if not host or any(c.isspace() or ord(c) < 32 or c in "/?#@" for c in host):
            raise MeterConfigError(f"redfish://{host}: not a host name or IP address")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", chassis or ""):
            raise MeterConfigError(f"redfish://{host}: chassis id {chassis!r} is not a Redfish Id "
                                   "(letters, digits, _ . -)")
        for label, v, hi in (("timeout", timeout_s, 60.0), ("window", window_s, 86400.0),
                             ("update", update_s, 86400.0), ("stale", stale_s, 86400.0)):
            if v is not None and not (math.isfinite(v) and 0 < v <= hi):
                raise MeterConfigError(f"redfish://{host}: {label}={v:g} s; use more than 0 and at most {hi:g} s")
        if auth not in AUTHS:
            raise MeterConfigError(f"redfish://{host}: auth={auth!r}; use one of {', '.join(AUTHS)}")
        if source not in SOURCES:
            raise MeterConfigError(f"redfish://{host}: source={source!r}; use one of {', '.join(SOURCES)}")
        self.host, self.port, self.chassis = host, port or 443, chassis
        if not 0 < self.port < 65536:
            raise MeterConfigError(f"redfish://{host}: port {self.port} is not 1..65535")
        self.timeout_s, self.auth, self.source = float(timeout_s), auth, source
        self.window_opt, self.update_opt, self.stale_opt = window_s, update_s, stale_s
        self.url = f"https://{host}:{self.port}/redfish/v1/Chassis/{chassis}"
        self.credentials_path = credentials
        self._user: str | None = None
        self._password: str | None = None
        if credentials is not None:
            self._user, self._password = load_credentials(credentials)
        elif os.environ.get(ENV_USER) and os.environ.get(ENV_PASSWORD):
            self._user = _check_secret(os.environ[ENV_USER], "user", f"${ENV_USER}")
            self._password = _check_secret(os.environ[ENV_PASSWORD], "password", f"${ENV_PASSWORD}")
            self.credentials_path = f"${ENV_USER}/${ENV_PASSWORD}"
        self.verify = bool(verify)
        self.ca = ca
        self._tls = self._tls_context(ca, self.verify)
        if not self.verify:
            self.notes.append(f"{self.name}: TLS certificate NOT verified (verify=0): anyone on the path to "
                              f"{host} can read the credentials and forge readings")
        self._addrs: list[tuple[int, Any]] = []
        self._token: str | None = None
        self._session_uri: str | None = None
        self._opened = self._ever_opened = False
        self.resource_path = ""
        self.resource = ""
        self._energy_offset_j = 0.0
        self._last_energy_j: float | None = None
        self.resets = 0
        self._last_key: Any = None
        self._last_change = 0.0
        self._stale_after = 3.0
        self.has_timestamp = False
        self.identity: dict[str, Any] = {}

    # -- TLS, transport ------------------------------------------------------------------
    def _tls_context(self, ca: str | None, verify: bool) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if ca is not None and not Path(ca).expanduser().is_file():
            raise MeterConfigError(f"redfish://{self.host}: ca={ca}: no such file (give the PEM file of the "
                                   "BMC's certificate or of the CA that signed it)")
        try:
            return ssl.create_default_context(cafile=str(Path(ca).expanduser()) if ca else None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise MeterConfigError(f"redfish://{self.host}: ca={ca}: not a PEM certificate file "
                                   f"({type(exc).__name__})") from None

    def _unreachable(self, why: str) -> MeterError:
        if not self._ever_opened:
            return MeterConfigError(f"redfish://{self.host}:{self.port}: cannot reach the BMC ({why}); check "
                                    f"that {self.host} is its address and port {self.port} its HTTPS port")
        return MeterDisconnected(f"{self.url}: {why}")

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> HttpReply:
        """One request; every failure of the transport is a MeterError (no secret in it)."""
        headers: dict[str, str] = {}
        if auth and self._user is not None:
            if self.auth == "session" and self._token:
                headers["X-Auth-Token"] = self._token
            elif self.auth == "basic":
                cred = f"{self._user}:{self._password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
        raw = b""
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        where = f"https://{self.host}:{self.port}{path}"
        try:
            req = build_request(method, self.host, self.port, path, headers, raw)
        except ValueError:
            raise MeterReadError(f"{where}: request refused (a header holds a line break)", code="garbage") from None
        try:
            if not self._addrs:
                self._addrs = resolve(self.host, self.port)
            return fetch(self._addrs, req, self.timeout_s, where, tls=self._tls,
                         server_hostname=self.host.strip("[]"))
        except Unreachable as exc:
            raise self._unreachable(exc.why) from None
        except TlsRejected as exc:
            if exc.untrusted:
                msg = (f"redfish://{self.host}:{self.port}: the BMC's TLS certificate is not trusted "
                       f"({exc.reason}); give ca=PATH (its certificate or CA, PEM), "
                       "or verify=0 to skip the check (not recommended)")
                if not self._ever_opened:
                    raise MeterConfigError(msg) from None
                raise MeterReadError(msg, code="exception") from None
            if not self._ever_opened:
                raise MeterConfigError(f"redfish://{self.host}:{self.port}: TLS handshake failed "
                                       f"({exc.reason}); is it the BMC's HTTPS port?") from None
            raise

    def _auth_failed(self, status: int) -> MeterError:
        if self._user is None:
            fix = "give credentials=PATH (a chmod 600 JSON/TOML file with user and password)"
        else:
            fix = f"check the user and password in {self.credentials_path} and the account's rights"
        msg = f"redfish://{self.host}:{self.port}: HTTP {status}, the BMC refused the login; {fix}"
        if not self._ever_opened:
            return MeterConfigError(msg)
        return MeterReadError(msg, code="auth")

    def _login(self) -> None:
        """Create a Redfish session: X-Auth-Token and the session's Location."""
        self._token = self._session_uri = None
        reply = self._request("POST", _SESSIONS_PATH, {"UserName": self._user, "Password": self._password},
                              auth=False)
        if reply.status in (401, 403):
            raise self._auth_failed(reply.status)
        if reply.status not in (200, 201):
            raise MeterReadError(f"https://{self.host}:{self.port}{_SESSIONS_PATH}: login answered HTTP "
                                 f"{reply.status}", code="exception")
        token = reply.headers.get("x-auth-token", "")
        if not 0 < len(token) <= MAX_SECRET_CHARS or any(ord(c) < 33 or ord(c) > 126 for c in token):
            raise MeterReadError(f"https://{self.host}:{self.port}{_SESSIONS_PATH}: login gave no usable "
                                 "X-Auth-Token", code="garbage")
        self._token = token
        loc = reply.headers.get("location", "")
        if loc.startswith(("https://", "http://")):
            loc = "/" + loc.split("/", 3)[-1] if loc.count("/") >= 3 else ""
        self._session_uri = loc if _ODATA_PATH.match(loc) else None

    def _logout(self) -> None:
        if self._token and self._session_uri:
            try:
                self._request("DELETE", self._session_uri)
            except MeterError:
                pass
        self._token = self._session_uri = None

    def _get_json(self, path: str) -> Any:
        """GET ``path`` as JSON; a 401 under session auth logs in again once."""
        if self.auth == "session" and self._user is not None and not self._token:
            self._login()
        reply = self._request("GET", path)
        if reply.status == 401 and self.auth == "session" and self._user is not None:
            self._login()
            reply = self._request("GET", path)
        where = f"https://{self.host}:{self.port}{path}"
        if reply.status in (401, 403):
            raise self._auth_failed(reply.status)
        if reply.status == 404 and not self._ever_opened:
            raise MeterConfigError(f"{where}: HTTP 404, no such resource (is the chassis id right? "
                                   "see /redfish/v1/Chassis)")
        if reply.status != 200:
            raise MeterReadError(f"{where}: HTTP {reply.status}", code="exception")
        try:
            return json.loads(reply.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MeterReadError(f"{where}: reply is not JSON ({reply.body[:40]!r})", code="garbage") from None

    # -- values ----------------------------------------------------------------------------
    def _parse(self, doc: Any) -> dict[str, float]:
        what = f"https://{self.host}:{self.port}{self.resource_path}"
        raw = parse_environment(doc, what) if self.resource == "EnvironmentMetrics" else parse_power(doc, what)
        p = raw["power_w"]
        if not -NEGATIVE_TOLERANCE_W <= p <= MAX_POWER_W:
            raise MeterReadError(f"{what}: {p:g} W is not plausible", code="range")
        return raw

    def _sensor_timing(self, doc: Any) -> tuple[float | None, float | None]:
        """(AveragingInterval, SensingInterval) of the power sensor, s, where published."""
        uri = _get(doc, "PowerWatts", "DataSourceUri")
        if not (isinstance(uri, str) and _ODATA_PATH.match(uri)):
            return None, None
        try:
            sensor = self._get_json(uri)
        except MeterConfigError:
            raise
        except MeterError:
            return None, None
        return iso_duration_s(_get(sensor, "AveragingInterval")), iso_duration_s(_get(sensor, "SensingInterval"))

    def open(self) -> list[Channel]:
        self._opened = False
        self._addrs = []
        self._last_energy_j = None
        root = self._get_json("/redfish/v1")
        if not isinstance(root, dict) or "RedfishVersion" not in root and "Chassis" not in root:
            raise MeterConfigError(f"https://{self.host}:{self.port}/redfish/v1 is not a Redfish service root")
        chassis = self._get_json(f"/redfish/v1/Chassis/{self.chassis}")
        env, power = _link(chassis, "EnvironmentMetrics"), _link(chassis, "Power")
        pick = self.source
        if pick == "auto":
            pick = "subsystem" if env else "power"
        if pick == "subsystem":
            self.resource = "EnvironmentMetrics"
            self.resource_path = env or f"/redfish/v1/Chassis/{self.chassis}/EnvironmentMetrics"
        else:
            self.resource, self.resource_path = "Power", power or f"/redfish/v1/Chassis/{self.chassis}/Power"
        doc = self._get_json(self.resource_path)
        raw = self._parse(doc)
        window, update = self.window_opt, self.update_opt
        info: dict[str, Any] = {"model": "Redfish BMC", "url": f"https://{self.host}:{self.port}{self.resource_path}",
                                "resource": self.resource, "auth": self.auth,
                                "tls": "verified" if self.verify else "NOT verified (verify=0)"}
        for k, key in (("Manufacturer", "manufacturer"), ("Model", "model"), ("SerialNumber", "serial_number"),
                       ("PartNumber", "part_number")):
            v = _get(chassis, k)
            if isinstance(v, str) and len(v) <= 100:
                info[key] = v
        v = _get(root, "RedfishVersion")
        if isinstance(v, str) and len(v) <= 20:
            info["redfish_version"] = v
        if self.resource == "EnvironmentMetrics":
            aw, si = self._sensor_timing(doc)
            window = window if window is not None else aw
            update = update if update is not None else si
        else:
            pm = _get(doc, "PowerControl", 0, "PowerMetrics")
            iv = _get(pm, "IntervalInMin")
            if isinstance(iv, (int, float)) and not isinstance(iv, bool) and math.isfinite(iv) and iv > 0:
                info["average_interval_s"] = float(iv) * 60.0
                for k, key in (("AverageConsumedWatts", "average"), ("MinConsumedWatts", "min"),
                               ("MaxConsumedWatts", "max")):
                    x = _get(pm, k)
                    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                        info[f"{key}_w_at_open"] = float(x)
        self.has_timestamp = _timestamp(doc) is not None
        if not self.has_timestamp:
            self.notes.append(f"{self.name}: the BMC stamps no reading time on {self.resource}; each sample is "
                              "stamped at the poll (a value the BMC has not refreshed repeats)")
        if window is None:
            self.notes.append(f"{self.name}: the BMC's averaging window is unknown (give window=S, or measure it "
                              "with calibrate characterize)")
        self._stale_after = self.stale_opt or max(3.0 * (update or 1.0), 2.5 * self.interval_s)
        info["stale_after_s"] = self._stale_after
        quantities = ("power_w", "energy_j") if "energy_kwh" in raw else ("power_w",)
        self.channels = [Channel(id=self.name, scope="system", source="measured", quantities=quantities,
                                 window_s=window, update_interval_s=update, primary="power_w", info=info)]
        self._last_key, self._last_change = None, time.monotonic()
        self._opened = self._ever_opened = True
        return self.channels

    def read(self) -> Reading:
        if not self._opened:
            raise MeterDisconnected(f"{self.url}: not open")
        doc = self._get_json(self.resource_path)
        raw = self._parse(doc)
        values = {"power_w": raw["power_w"]}
        notes: list[str] = []
        if "energy_kwh" in raw:
            e = raw["energy_kwh"] * 3.6e6
            if self._last_energy_j is not None and e + self._energy_offset_j < self._last_energy_j:
                self._energy_offset_j = self._last_energy_j - e  # the counter restarted: continue from the last
                self.resets += 1
                notes.append("energy_j:reset")
            values["energy_j"] = self._last_energy_j = e + self._energy_offset_j
        stamp = _timestamp(doc)
        key = stamp if stamp is not None else (raw["power_w"], raw.get("energy_kwh"))
        now = time.monotonic()
        if key != self._last_key:
            self._last_key, self._last_change = key, now
        elif now - self._last_change > self._stale_after:
            notes.insert(0, "stale")
        flags: dict[str, str] = {}
        if notes == ["stale"]:
            flags[self.name] = "stale"
        elif notes:
            flags[self.name] = ";".join(n if ":" in n else f"power_w:{n}" for n in notes)
        return Reading({self.name: values}, flags=flags)

    def close(self) -> None:
        if self._token:
            self._logout()
        self._opened = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "resource": self.resource or self.source,
                "auth": self.auth, "credentials": self.credentials_path, "tls_verified": self.verify,
                "ca": self.ca, "timeout_s": self.timeout_s, "max_reply_bytes": MAX_REPLY_BYTES}


def parse_target(uri: Any) -> tuple[str, int | None, str]:
    """``HOST[:PORT]/Chassis/ID`` -> (host, port, chassis id); ``HOST`` alone is chassis 1."""
    target: str = uri.target
    hostport, _, path = target.partition("/")
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].lower() == "redfish":
        parts = parts[2:] if len(parts) >= 2 and parts[1] == "v1" else parts[1:]
    if not parts:
        chassis = "1"
    elif len(parts) == 2 and parts[0] == "Chassis":
        chassis = parts[1]
    else:
        raise MeterConfigError(f"{uri.raw}: expected redfish://HOST[:PORT]/Chassis/ID")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
        host = f"[{host}]"
    else:
        host, _, port_s = hostport.partition(":")
    if not host:
        raise MeterConfigError(f"{uri.raw}: expected redfish://HOST[:PORT]/Chassis/ID")
    try:
        port = int(port_s) if port_s else None
    except ValueError:
        raise MeterConfigError(f"{uri.raw}: port {port_s!r} is not a number") from None
    return host, port, chassis


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def from_uri(uri: Any) -> Meter:
    for secret in ("user", "password", "username", "token"):
        if secret in uri.options:
            raise MeterConfigError(f"redfish: {secret}= is not accepted in a meter URI (it would be recorded); "
                                   "put user and password in a chmod 600 file and pass credentials=PATH")
    host, port, chassis = parse_target(uri)
    return RedfishMeter(
        host, port, chassis, name=uri.name, interval_s=uri.interval_s,
        timeout_s=uri.take("timeout", 5.0, float), credentials=uri.take("credentials", None),
        ca=uri.take("ca", None), verify=uri.take("verify", True, _flag), auth=uri.take("auth", "basic"),
        source=uri.take("source", "auto"), window_s=uri.take("window", None, float),
        update_s=uri.take("update", None, float), stale_s=uri.take("stale", None, float))
