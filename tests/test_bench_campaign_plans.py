"""Campaign plans are validated by one schema: every bad field is one line and exit 2."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibrate.campaign import check_resumed_order, load_plan, make_order
from calibrate.errors import UsageError
from tests.conftest import run_cli
from tests.test_bench_campaign import PLAN


@pytest.mark.parametrize("old, new, needle", [
    ("repetitions = 2", "repetitions = 100000000", "repetitions"),
    ("repetitions = 2", 'repetitions = "2"', "repetitions"),
    ("repetitions = 2", "repetitions = 2.5", "repetitions"),
    ("seed = 3", "seed = -1", "seed"),
    ("baseline_s = 2", "baseline_s = inf", "baseline_s"),
    ("baseline_s = 2", "baseline_s = nan", "baseline_s"),
    ("baseline_s = 2", "baseline_s = -3", "baseline_s"),
    ("baseline_s = 2", 'baseline_s = "2"', "baseline_s"),
    ("cooldown_max_s = 4", "cooldown_max_s = 1e308", "cooldown_max_s"),
    ("window_s = 1", "window_s = 0", "window_s"),
    ('meters = ["sim:wattsup", "cpu-model"]', 'meters = "sim:wattsup"', "meters"),
    ('meters = ["sim:wattsup", "cpu-model"]', "meters = [1, 2]", "meters"),
    ('meters = ["sim:wattsup", "cpu-model"]', "meters = []", "meters"),
    ('out = "camp"', 'out = "camp"\nlocation = 7', "location"),
    ('out = "camp"', 'out = "camp"\nintensity = -5', "intensity"),
    ('out = "camp"', 'out = "camp"\nbogus = 1', "bogus"),
    ('label = "idle-short"', 'label = "../../../X"', "label"),
    ('label = "idle-short"', 'label = "a/b"', "label"),
    ('label = "idle-short"', 'label = "x\\u001b[2J"', "label"),
    ('params = { duration_s = 6 }', 'params = "x"', "params"),
    ('params = { duration_s = 6 }', "params = { duration_s = [1] }", "params"),
])
def test_each_bad_field_is_named(tmp_path, old, new, needle):
    assert old in PLAN
    p = tmp_path / "plan.toml"
    p.write_text(PLAN.replace(old, new, 1))
    with pytest.raises(UsageError) as err:
        load_plan(p)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and str(p) in msg and "\x1b" not in msg


def test_cli_bad_plan_one_line(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text(PLAN.replace("baseline_s = 2", "baseline_s = inf"))
    cp = run_cli("campaign", str(p))
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1 and "Traceback" not in cp.stderr
    assert not (tmp_path / "camp").exists()


def test_a_tampered_order_is_refused(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    plan = load_plan(p)
    order = make_order(plan)
    check_resumed_order(order, plan)  # the campaign's own order passes
    for field, value in (("id", "../../../X"), ("id", order[1]["id"]), ("rep", 9), ("run", 5), ("status", "x")):
        bad = json.loads(json.dumps(order))
        bad[0][field] = value
        with pytest.raises(UsageError, match="does not match the plan"):
            check_resumed_order(bad, plan)
    with pytest.raises(UsageError):
        check_resumed_order(order[:-1], plan)


_literals = st.one_of(st.integers(-10**20, 10**20).map(str), st.floats().map(repr).map(
    lambda r: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(r, r)),
    st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    st.sampled_from(["true", "false", "[]", "[1, 2]", '["a"]', "{}", "{ x = 1 }", "1979-05-27", "'..'",
                     '"../../x"', "1e400", "-0", "0x10"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.sampled_from([i for i, x in enumerate(PLAN.splitlines()) if " = " in x]), value=_literals)
def test_fuzzed_plan_files_load_or_fail_in_one_line(tmp_path, line, value):
    lines = PLAN.splitlines()
    key = lines[line].split(" = ", 1)[0]
    lines[line] = f"{key} = {value}"
    p = tmp_path / "fuzz.toml"
    p.write_text("\n".join(lines) + "\n")
    try:
        load_plan(p)
    except UsageError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(p) in msg


def test_end_lines_with_one_run_per_workload(tmp_path):
    from calibrate.campaign import campaign_lines

    report = {"per_workload": [{"workload": "idle", "runs": 1, "energy_j": {"mean": 1234.56, "ci": [None, None]}},
                               {"workload": "sq", "runs": 3, "energy_j": {"mean": 10.0, "ci": [9.0, 11.0]}}]}
    text = campaign_lines(report, 4, 0, tmp_path)
    assert "idle: energy 1234.6 J (no CI from one run) over 1 run(s)" in text
    assert "sq: energy 10.0 J [95% CI 9.0, 11.0] over 3 run(s)" in text
