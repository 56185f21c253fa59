"""CO2 from energy: grid carbon intensity by location, PUE, accuracy per energy.

The shipped table (``analysis/data/grid_intensity.csv``) holds yearly national averages
(g CO2e/kWh) with their source and year; every result carries which value and source
it used.  Locations are ISO 3166 alpha-3 or alpha-2 codes or country names, or
``WORLD``.  Note: carbontracker multiplies its figures by a PUE of 1.58; divide that back
before comparing with a wall meter.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

J_PER_KWH = 3.6e6

# alpha-2 -> alpha-3 for the codes people type most; any alpha-3 or name works too.
_ISO2 = {
    "US": "USA", "FR": "FRA", "DE": "DEU", "GB": "GBR", "UK": "GBR", "CN": "CHN", "IN": "IND",
    "SE": "SWE", "NO": "NOR", "PL": "POL", "AU": "AUS", "CA": "CAN", "BR": "BRA", "JP": "JPN",
    "KR": "KOR", "IT": "ITA", "ES": "ESP", "NL": "NLD", "BE": "BEL", "CH": "CHE", "AT": "AUT",
    "IE": "IRL", "DK": "DNK", "FI": "FIN", "PT": "PRT", "CZ": "CZE", "GR": "GRC", "HU": "HUN",
    "RO": "ROU", "SG": "SGP", "ZA": "ZAF", "MX": "MEX", "RU": "RUS", "TR": "TUR", "ID": "IDN",
    "SA": "SAU", "AE": "ARE", "IS": "ISL", "NZ": "NZL", "AR": "ARG", "CL": "CHL", "TW": "TWN",
    "IL": "ISR", "EG": "EGY", "NG": "NGA", "VN": "VNM", "TH": "THA", "MY": "MYS", "PH": "PHL",
    "UA": "UKR", "EE": "EST", "LV": "LVA", "LT": "LTU", "SK": "SVK", "SI": "SVN", "HR": "HRV",
    "BG": "BGR", "LU": "LUX", "CO": "COL", "PE": "PER", "PK": "PAK", "BD": "BGD", "KZ": "KAZ",
}
DEFAULT_LOCATION = "WORLD"


@dataclass(frozen=True)
class GridIntensity:
    code: str
    name: str
    g_per_kwh: float  # g CO2e per kWh
    year: int | None
    source: str

    def to_json(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def intensity_table() -> dict[str, GridIntensity]:
    path = Path(__file__).with_name("data") / "grid_intensity.csv"
    out: dict[str, GridIntensity] = {}
    with path.open(newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for r in rows:
            gi = GridIntensity(r["code"], r["name"], float(r["g_per_kwh"]),
                               int(r["year"]) if r["year"] else None, r["source"])
            out[gi.code] = gi
    return out


def lookup_intensity(location: str | None = None) -> GridIntensity:
    """Intensity for a location code or name; raises ValueError (one line) if unknown."""
    loc = (location or DEFAULT_LOCATION).strip()
    table = intensity_table()
    key = loc.upper()
    key = _ISO2.get(key, key)
    if key in table:
        return table[key]
    by_name = {gi.name.lower(): gi for gi in table.values()}
    if loc.lower() in by_name:
        return by_name[loc.lower()]
    raise ValueError(f"unknown location {location!r}: use an ISO country code (FR, USA, ...), "
                     "a country name, WORLD, or give --intensity G_PER_KWH")


def custom_intensity(g_per_kwh: float, location: str | None = None) -> GridIntensity:
    if not g_per_kwh >= 0:
        raise ValueError(f"intensity must be >= 0 g/kWh, got {g_per_kwh}")
    return GridIntensity(location or "custom", location or "user-supplied", float(g_per_kwh), None,
                         "user-supplied (--intensity)")


def co2_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """Grams of CO2e for ``energy_j`` J of IT energy at a PUE (facility/IT energy)."""
    if pue < 1.0:
        raise ValueError(f"PUE must be >= 1, got {pue}")
    return energy_j / J_PER_KWH * pue * intensity_g_per_kwh


def emissions(energy_j: float, location: str | None = None, intensity: float | None = None,
              pue: float | None = None) -> dict:
    """The ``emissions`` block of summary.json: location, intensity_g_per_kwh, co2_g, source."""
    gi = custom_intensity(intensity, location) if intensity is not None else lookup_intensity(location)
    pue = 1.0 if pue is None else float(pue)
    return {"location": gi.code, "location_name": gi.name, "intensity_g_per_kwh": gi.g_per_kwh,
            "year": gi.year, "source": gi.source, "pue": pue, "energy_j": energy_j,
            "energy_kwh": energy_j / J_PER_KWH, "co2_g": co2_g(energy_j, gi.g_per_kwh, pue)}


def compare_locations(energy_j: float, locations: list[str], pue: float = 1.0) -> list[dict]:
    """The same run's CO2 in several locations (the seed study's 3.8x spread)."""
    return [emissions(energy_j, loc, pue=pue) for loc in locations]


def accuracy_per_kwh(accuracy: float | None, energy_j: float) -> float | None:
    """Accuracy (0..1) per kWh of energy; None when either is missing."""
    if accuracy is None or not energy_j or energy_j <= 0:
        return None
    return float(accuracy) / (energy_j / J_PER_KWH)
