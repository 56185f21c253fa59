"""``sim:KIND?name=...``: the session's name reaches the real driver verbatim, percent-encoded,
never pasted into its URI where it could set more options (``w&max_w=10``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.registry import make_meter, parse_uri
from drivers.sim.meter import inner_meter_uri
from drivers.wattsup import MAX_W


@pytest.mark.parametrize("uri, name", [
    ("sim:wattsup?name=w%26max_w%3D10", "w&max_w=10"),
    ("sim:wattsup?name=w%26interval%3D5", "w&interval=5"),
    ("sim:wattsup?name=a+b%2Bc%23d%3Fe%25f", "a b+c#d?e%f"),
    ("sim:wattsup?name=%3Fmax_w%3D1", "?max_w=1"),
])
def test_name_arrives_verbatim_and_sets_nothing_else(uri, name):
    m = make_meter(uri)
    try:
        assert m.name == name and m.inner.name == name
        assert m.inner.max_w == MAX_W  # not 10 or 1
        assert m.inner.interval_s == 1.0  # not 5
        inner = parse_uri(inner_meter_uri(m.inner_uri, name, None))
        assert inner.options == {"protocol": "wattsup", "name": name}
    finally:
        m.release()


def test_interval_still_reaches_the_driver():
    m = make_meter("sim:wattsup?name=w&interval=2")
    try:
        assert m.inner.interval_s == 2.0 and m.name == "w"
    finally:
        m.release()


def test_wt310_existing_query_keeps_its_options():
    m = make_meter("sim:wt310?name=x%26baud%3D1200%26element%3D3")
    try:
        assert m.name == "x&baud=1200&element=3"
        opts = parse_uri(inner_meter_uri(m.inner_uri, m.name, None)).options
        assert opts["baud"] == "9600" and "element" not in opts and opts["name"] == m.name
    finally:
        m.release()


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(name=_TEXT, interval=st.none() | st.floats(min_value=0.01, max_value=3600))
def test_any_name_round_trips(name, interval):
    for base in ("serial:/dev/pts/7?protocol=wattsup", "tasmota://127.0.0.1:8080", "modbus:/x?profile=sdm120&unit=1"):
        uri = parse_uri(inner_meter_uri(base, name, interval))
        base_opts = dict(parse_uri(base).options)
        expected = {**base_opts, "name": name, **({"interval": repr(interval)} if interval else {})}
        assert uri.options == expected
        assert uri.interval_s == interval


def test_surrogates_do_not_crash():
    uri = parse_uri(inner_meter_uri("serial:/x?protocol=wattsup", "a\udcffb&max_w=1", None))
    assert set(uri.options) == {"protocol", "name"}
