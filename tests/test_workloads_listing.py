"""``calibrate workloads``: every workload with its ``-p`` parameters, from the registry."""

from __future__ import annotations

import json

import pytest

from calibrate.cli import main
from workloads import registry
from workloads.registry import names, parameters, validate_params


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["workloads", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", names())
def test_every_parameter_has_a_unit_a_range_a_meaning_and_its_validated_default(name):
    infos = parameters(name)
    validated = validate_params(name, {})
    assert [p.name for p in infos] == list(validated)  # every -p parameter, nothing else
    for p in infos:
        assert p.meaning.strip() and "\n" not in p.meaning, p.name
        assert p.unit == "-" or (p.unit.strip() and " " not in p.unit), (p.name, p.unit)
        if p.name.endswith("_s"):  # a duration: in seconds
            assert p.unit == "s", p.name
        if p.type in ("bool", "str"):
            assert p.unit == "-", p.name
        assert p.range.strip() and p.range != "any", (p.name, p.range)
        assert p.type in ("int", "float", "str", "bool")
        assert p.default == validated[p.name], p.name
        assert p.default is None or type(p.default).__name__ == p.type, p.name


def test_units_of_some_parameters():
    by = {p.name: p for p in parameters("resnet18")}
    assert (by["duration_s"].unit, by["image_size"].unit, by["batch_size"].unit) == ("s", "px", "images")
    assert by["lr"].unit == "-" and by["lr"].range == "(0, 10] or none"
    assert by["optimizer"].range == "sgd | adam | adamw" and by["amp"].range == "true | false"
    assert by["image_size"].range == "[8, 1024]" and {p.name: p for p in parameters("vgg16")}["image_size"].range == "[32, 1024]"
    sq = {p.name: p for p in parameters("square")}
    assert (sq["period_s"].unit, sq["period_s"].range, sq["duty"].range) == ("s", "(0, 86400]", "(0, 1)")
    assert registry.get("square").units["period_s"] == "s"


def test_listing_has_a_section_per_workload_with_its_parameters(capsys):
    rc, out, err = _run(capsys)
    assert rc == 0 and err == ""
    sections = out.split("\n\n")
    titles = [s.splitlines()[0] for s in sections if s.strip()]
    for name in names():
        category = registry.get(name).category
        (section,) = [s for s, t in zip(sections, titles, strict=False) if t == f"{name} ({category})"]
        lines = section.splitlines()
        assert lines[1].strip() == registry.get(name).description
        assert lines[2].split() == ["parameter", "type", "default", "unit", "range", "meaning"]
        rows = {line.split()[0]: line for line in lines[4:]}
        assert list(rows) == [p.name for p in parameters(name)]
        for p in parameters(name):
            assert p.meaning in rows[p.name] and f" {p.unit} " in rows[p.name] and p.range in rows[p.name]
    by = {line.split()[0]: line.split() for line in out.split("square (calibration)")[1].split("\n\n")[0].splitlines()[3:]}
    assert by["period_s"][:4] == ["period_s", "float", "10", "s"] and by["duration_s"][2] == "none"


def test_one_workload_and_json(capsys):
    rc, out, _ = _run(capsys, "square")
    assert rc == 0 and out.startswith("square (calibration)\n") and "cpu-stress" not in out
    rc, out, _ = _run(capsys, "--json")
    data = json.loads(out)
    assert rc == 0 and [w["name"] for w in data["workloads"]] == names()
    memory = next(w for w in data["workloads"] if w["name"] == "memory-stress")
    by = {p["name"]: p for p in memory["parameters"]}
    assert (by["bytes"]["type"], by["bytes"]["default"], by["bytes"]["unit"]) == ("int", 268435456, "bytes")
    assert set(by["bytes"]) == {"name", "type", "default", "unit", "range", "meaning"}
    assert by["duration_s"]["default"] == 60.0 and by["duration_s"]["unit"] == "s"
    rc, out, _ = _run(capsys, "tinyvgg", "--json")
    (w,) = json.loads(out)["workloads"]
    assert rc == 0 and w["category"] == "cnn" and len(w["parameters"]) == len(parameters("tinyvgg"))


def test_any_torchvision_model(capsys):
    pytest.importorskip("torchvision")
    rc, out, _ = _run(capsys, "vgg11_bn")
    assert rc == 0 and out.startswith("vgg11_bn (cnn)\n") and "lr_schedule" in out


def test_unknown_name_is_one_line_and_exit_2(capsys):
    rc, out, err = _run(capsys, "no-such-workload")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "unknown workload 'no-such-workload'" in err and "square" in err


def test_texts_are_terminal_safe(capsys, monkeypatch):
    monkeypatch.setitem(registry.CNN_PRESETS, "tinyvgg",
                        {**registry.CNN_PRESETS["tinyvgg"], "description": "tiny\x1b[2J\x1b]0;owned\x07 net"})
    rc, out, _ = _run(capsys, "tinyvgg")
    assert rc == 0 and "\x1b" not in out and "\x07" not in out and "tiny" in out.splitlines()[1]
