"""The CLI's promises: one-line errors with exit 2 for bad input, --help everywhere."""

from __future__ import annotations

import subprocess

import pytest

from drivers.fakes.powercap import FakePowercap, typical_zones
from tests.conftest import run_cli


def _one_line_error(cp: subprocess.CompletedProcess, *needles: str) -> str:
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    err = cp.stderr.strip()
    assert "Traceback" not in cp.stderr and "Traceback" not in cp.stdout
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("cmd", [[], ["run"], ["report"], ["agree"], ["meters"], ["simulate"], ["demo"]])
def test_help_everywhere(cmd: list[str]) -> None:
    cp = run_cli(*cmd, "--help")
    assert cp.returncode == 0 and "usage: calibrate" in cp.stdout


def test_unknown_meter_scheme(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "foo:bar", "--workload", "idle", "--out", str(tmp_path / "s")),
                    "unknown meter 'foo'")


def test_unknown_meter_option_is_an_error_not_ignored(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model?idle=5&bogus=1", "--workload", "idle", "--out", str(tmp_path / "s")),
                    "bogus")


def test_missing_serial_port(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "serial:/dev/ttyNOPE9", "--workload", "idle", "--out", str(tmp_path / "s")),
                    "/dev/ttyNOPE9", "does not exist")
    assert not (tmp_path / "s" / "session.json").exists()


def test_unknown_workload(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model", "--workload", "nosuchnet", "--out", str(tmp_path / "s")),
                    "nosuchnet")


def test_bad_workload_option(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model", "--workload", "idle", "-p", "wings=3",
                            "--out", str(tmp_path / "s")), "wings")


def test_unparsable_flag_value() -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model", "--workload", "idle", "--duration", "soon"), "--duration")


def test_rapl_present_but_unreadable(tmp_path, monkeypatch, capsys) -> None:
    """energy_uj is root-only (mode 0400 since CVE-2020-8694): reads fail as for a normal user."""
    import drivers.rapl as rapl
    from calibrate.cli import main

    fake = FakePowercap(tmp_path / "powercap", typical_zones())
    real_read = rapl.read_sysfs

    def as_unprivileged_user(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(rapl, "read_sysfs", as_unprivileged_user)
    rc = main(["run", "--meter", f"rapl?root={fake.root}", "--workload", "idle", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "energy_uj" in err and "chmod" in err
    assert not (tmp_path / "s" / "session.json").exists()


def test_report_on_a_folder_that_is_not_a_session(tmp_path) -> None:
    _one_line_error(run_cli("report", str(tmp_path)), "not a calibrate session")


def test_agree_with_a_missing_column(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n2,3\n3,5\n")
    _one_line_error(run_cli("agree", str(p), "--reference", "a", "--candidate", "zz"), "no column 'zz'")


@pytest.mark.parametrize("opts, needle", [
    (["--location", "Atlantis"], "unknown location"),
    (["--window", "nan"], "--window"),
    (["--window", "-5"], "--window"),
    (["--pue", "0.5"], "--pue"),
    (["--intensity", "-1"], "--intensity"),
    (["--reference", "nope"], "nope"),
])
def test_bad_analysis_options_are_refused_before_recording(tmp_path, opts, needle) -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model", "--workload", "idle", "--duration", "60",
                            "--out", str(tmp_path / "s"), *opts), needle)
    assert not (tmp_path / "s").exists()  # refused before anything was recorded


def test_two_meters_with_one_name(tmp_path) -> None:
    _one_line_error(run_cli("run", "--meter", "cpu-model", "--meter", "cpu-model", "--workload", "idle",
                            "--out", str(tmp_path / "s")), "two meters are named cpu-model")
    assert not (tmp_path / "s").exists()


def test_report_with_a_bad_reference_or_candidate(tmp_path) -> None:
    import json

    from tests.test_analysis_pipeline import write_session

    write_session(tmp_path / "s")
    _one_line_error(run_cli("report", str(tmp_path / "s"), "--reference", "nope"), "nope")
    _one_line_error(run_cli("report", str(tmp_path / "s"), "--candidate", "gpu+zz"), "zz")
    ok = run_cli("report", str(tmp_path / "s"), "--candidate", "gpu", "--location", "FR")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["emissions"]["location"] == "FRA"
