"""Modbus profiles (drivers.modbus.load_profile / parse_profile) under hostile input.

Every outcome is a loaded profile or a MeterConfigError with one line naming the file and
the key -- never another exception, never a profile that would record garbage as watts.
"""

from __future__ import annotations

import copy
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import MeterConfigError
from drivers.modbus import builtin_profiles, load_profile, parse_profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

VALID = {
    "meter": {"model": "Mine", "function": 4, "word_order": "big", "default_unit": 1, "default_baud": 9600,
              "default_parity": "N", "default_stopbits": 1, "update_interval_s": 1.0, "max_gap": 12,
              "max_block": 80},
    "quantities": {"power_w": {"address": 12, "type": "float32", "scale": 1.0},
                   "energy_j": {"address": 72, "type": "float32", "unit": "kWh", "resolution": 0.01}},
}

scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from([0, -1, 65535, 65536, 2**31, 0.0, -0.5, "kWh", "big"]))
toml_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                           max_leaves=8)
keys = st.sampled_from([*VALID["meter"], "address", "type", "scale", "unit", "resolution", "bogus"])


def _check(data, tmp_name="fuzz"):
    try:
        p = parse_profile(data, tmp_name, f"profile {tmp_name}.toml")
    except MeterConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(f"profile {tmp_name}.toml: ")
        assert len(msg) < 400
        return None
    # a loaded profile is a usable one: finite positive scales, registers inside the space
    assert "power_w" in p.quantities
    for q in p.quantities.values():
        assert math.isfinite(q.scale) and q.scale > 0
        assert 0 <= q.address and q.address + q.count <= 65536
    assert p.function in (3, 4) and 0 <= p.default_unit <= 247 and 2 <= p.max_block <= 125
    return p


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["meter", "quantities", "x"]), toml_values, max_size=3))
def test_random_documents_load_or_fail_in_one_line(data):
    _check(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.sampled_from(["meter", "power_w", "energy_j"]), key=keys, value=toml_values)
def test_mutated_valid_profile_loads_or_fails_in_one_line(table, key, value):
    data = copy.deepcopy(VALID)
    where = data["meter"] if table == "meter" else data["quantities"][table]
    where[key] = value
    _check(data)


@pytest.mark.parametrize(("table", "key", "value", "words"), [
    ("power_w", "scale", 0, "scale"), ("power_w", "scale", 0.0, "greater than 0"),
    ("power_w", "scale", -1.0, "scale"), ("power_w", "scale", float("nan"), "finite"),
    ("power_w", "scale", float("inf"), "finite"), ("power_w", "scale", "1", "scale"),
    ("power_w", "address", 65535, "address space"), ("power_w", "address", 65536, "address"),
    ("power_w", "address", "0x0C", "address"), ("power_w", "address", True, "address"),
    ("power_w", "type", "float64", "type"), ("energy_j", "unit", "MWh", "unit"),
    ("energy_j", "resolution", 0, "resolution"), ("energy_j", "resolution", float("nan"), "resolution"),
    ("meter", "function", "4", "function"), ("meter", "function", 6, "function"),
    ("meter", "default_unit", "1", "default_unit"), ("meter", "default_unit", 300, "default_unit"),
    ("meter", "default_baud", "9600", "default_baud"), ("meter", "default_baud", 0, "default_baud"),
    ("meter", "default_baud", 9600.5, "default_baud"), ("meter", "max_block", 200, "max_block"),
    ("meter", "update_interval_s", float("inf"), "update_interval_s"), ("meter", "bogus", 1, "bogus"),
    ("meter", "default_parity", "X", "default_parity"), ("meter", "default_stopbits", 3, "default_stopbits"),
])
def test_each_flaw_names_the_key(tmp_path, table, key, value, words):
    data = copy.deepcopy(VALID)
    (data["meter"] if table == "meter" else data["quantities"][table])[key] = value
    with pytest.raises(MeterConfigError, match=words) as info:
        parse_profile(data, "mine", "profile mine.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("profile mine.toml: ")


def test_scale_zero_file_is_refused(tmp_path):
    """The reported case: scale = 0 used to load and record 0.0 W as valid data."""
    f = tmp_path / "zero.toml"
    f.write_text('[meter]\nmodel = "Zero"\n[quantities.power_w]\naddress = 12\nscale = 0\n')
    with pytest.raises(MeterConfigError, match=r"zero\.toml.*quantities\.power_w\.scale"):
        load_profile(str(f))
    f.write_text('[meter]\ndefault_baud = "fast"\n[quantities.power_w]\naddress = 12\n')
    with pytest.raises(MeterConfigError, match="meter.default_baud"):
        load_profile(str(f))
    f.write_text('[quantities.power_w]\naddress = 65535\n')
    with pytest.raises(MeterConfigError, match="address space"):
        load_profile(str(f))
    f.write_text('[quantities.power_w]\naddress = 12\nscale = nan\n')
    with pytest.raises(MeterConfigError, match="finite"):
        load_profile(str(f))


def test_builtin_profiles_still_load_and_roundtrip():
    for name in builtin_profiles():
        p = load_profile(name)
        with open(p.source, "rb") as fh:
            again = parse_profile(tomllib.load(fh), name, "x")
        assert again.quantities == p.quantities and again.default_baud == p.default_baud
