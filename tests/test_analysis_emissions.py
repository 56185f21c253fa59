"""CO2 by grid location, PUE, accuracy per kWh and the accuracy/energy Pareto front."""

from __future__ import annotations

import pytest

from analysis.emissions import (
    J_PER_KWH,
    accuracy_per_kwh,
    co2_g,
    compare_locations,
    emissions,
    intensity_table,
    lookup_intensity,
)
from analysis.plots import pareto_front


def test_table_has_source_year_and_plausible_values() -> None:
    table = intensity_table()
    assert len(table) > 200
    for gi in table.values():
        assert gi.source and 0 <= gi.g_per_kwh < 1500
    # Ember/OWID 2023 national averages (g CO2e/kWh), as shipped
    assert lookup_intensity("FR").g_per_kwh == pytest.approx(56.0, abs=0.1)
    assert lookup_intensity("fra").year == 2023
    assert lookup_intensity("Germany").code == "DEU"
    assert lookup_intensity(None).code == "WORLD"


def test_unknown_location_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="unknown location 'Atlantis'") as exc:
        lookup_intensity("Atlantis")
    assert "\n" not in str(exc.value)


def test_co2_arithmetic_with_pue_and_override() -> None:
    assert co2_g(J_PER_KWH, 100.0) == pytest.approx(100.0)
    assert co2_g(2 * J_PER_KWH, 100.0, pue=1.5) == pytest.approx(300.0)
    with pytest.raises(ValueError):
        co2_g(1.0, 100.0, pue=0.9)
    e = emissions(3.6e6, intensity=250.0, location="lab")
    assert e["co2_g"] == pytest.approx(250.0) and "user-supplied" in e["source"]
    rows = compare_locations(3.6e6, ["SE", "IN"])
    assert rows[1]["co2_g"] / rows[0]["co2_g"] == pytest.approx(
        lookup_intensity("IN").g_per_kwh / lookup_intensity("SE").g_per_kwh)


def test_accuracy_per_kwh() -> None:
    assert accuracy_per_kwh(0.9, 0.5 * J_PER_KWH) == pytest.approx(1.8)
    assert accuracy_per_kwh(None, 1.0) is None and accuracy_per_kwh(0.5, 0.0) is None


def test_pareto_front() -> None:
    # (energy J, accuracy): point 2 is beaten by point 1 (less energy, more accuracy)
    pts = [(100.0, 0.50), (150.0, 0.70), (200.0, 0.65), (300.0, 0.90), (90.0, 0.40)]
    assert sorted(pareto_front(pts)) == [0, 1, 3, 4]
