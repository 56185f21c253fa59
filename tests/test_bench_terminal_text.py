"""What the bench prints never carries a user's or a device's control sequences."""

from __future__ import annotations

from tests.conftest import run_cli


def test_meter_names_with_escape_sequences_are_printed_clean(tmp_path):
    cp = run_cli("run", "--meter", "cpu-model?name=evil%1B%5B2J%1B%5D0%3Btitle%07%0Dx", "--workload", "idle",
                 "--duration", "1", "--baseline", "0", "--out", str(tmp_path / "s"), timeout=120)
    # the only meter is modelled: no report without --reference naming it (one line, exit 2), data kept
    assert cp.returncode == 2 and "no report: no measured channel" in cp.stderr, cp.stderr
    assert len([x for x in cp.stderr.splitlines() if x.startswith("calibrate:")]) == 1
    assert (tmp_path / "s" / "session.json").exists()
    out = cp.stdout + cp.stderr
    assert "evil" in out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out


def test_a_command_duration_out_of_range_is_refused(tmp_path):
    cp = run_cli("run", "--meter", "cpu-model", "--duration", "1e308", "--out", str(tmp_path / "s"), "--", "sleep", "1")
    assert cp.returncode == 2 and "duration_s" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
