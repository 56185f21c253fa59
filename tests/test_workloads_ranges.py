"""Every numeric workload parameter has a finite range; values outside it are refused in one line
that names the parameter and the range (ValueError from the registry, exit 2 from the CLI)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from workloads import registry
from workloads.registry import MAX_BYTES, MAX_THREADS, prepare, validate_params

WEEK = 7 * 24 * 3600

BAD = [
    # (workload, parameter, value)
    ("idle", "duration_s", 1e308),
    ("idle", "duration_s", WEEK + 1),
    ("idle", "duration_s", float("nan")),
    ("idle", "duration_s", "inf"),
    ("idle", "duration_s", 0),
    ("resnet18", "duration_s", 1e308),
    ("resnet18", "duration_s", "-inf"),
    ("resnet18", "epochs", 10**9),
    ("resnet18", "epochs", 0),
    ("resnet18", "steps", 10**12),
    ("resnet18", "image_size", 10**8),
    ("resnet18", "image_size", 1025),
    ("resnet18", "image_size", 4),
    ("resnet18", "image_size", "1e8"),
    ("inception_v3", "image_size", 74),
    ("inception_v3", "image_size", 2048),
    ("resnet18", "batch_size", 65537),
    ("resnet18", "batch_size", 0),
    ("resnet18", "num_classes", 10**9),
    ("resnet18", "train_size", 10**12),
    ("resnet18", "val_size", 10**12),
    ("resnet18", "limit", 10**12),
    ("resnet18", "lr", 1e308),
    ("resnet18", "lr", "nan"),
    ("resnet18", "lr", 0),
    ("resnet18", "threads", 100000),
    ("resnet18", "threads", MAX_THREADS + 1),
    ("resnet18", "threads", -1),
    ("resnet18", "eval_every", 10**9),
    ("resnet18", "warmup_steps", 10**9),
    ("resnet18", "seed", -1),
    ("resnet18", "seed", 2**64),
    ("cpu-stress", "threads", 100000),
    ("cpu-stress", "utilisation", "nan"),
    ("cpu-stress", "utilisation", 1.5),
    ("cpu-stress", "cycle_s", 1e308),
    ("cpu-stress", "cycle_s", 1e-300),
    ("cpu-stress", "duration_s", 1e308),
    ("step", "hold_s", 1e308),
    ("step", "hold_s", "inf"),
    ("step", "levels", ",".join(["0.5"] * 100000)),
    ("step", "levels", "0,nan"),
    ("step", "levels", "0,inf"),
    ("square", "period_s", 1e308),
    ("square", "cycles", 10**12),
    ("square", "duty", "nan"),
    ("gpu-stress", "size", 10**6),
    ("gpu-stress", "size", 8),
    ("memory-stress", "bytes", "1000T"),
    ("memory-stress", "bytes", MAX_BYTES + 1),
    ("memory-stress", "bytes", float("inf")),
    ("memory-stress", "bytes", float("nan")),
    ("memory-stress", "bytes", 10**30),
]


@pytest.mark.parametrize("name, key, value", BAD, ids=[f"{n}-{k}-{str(v)[:12]}" for n, k, v in BAD])
def test_out_of_range_is_refused_in_one_line(name, key, value):
    with pytest.raises(ValueError) as err:
        validate_params(name, {key: value})
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300, msg
    assert msg.startswith(f"{name}: {key}="), msg
    with pytest.raises(ValueError):
        prepare(name, {key: value})


@pytest.mark.parametrize("name, key, value, allowed", [
    ("idle", "duration_s", 1e308, "<= 604800"),
    ("idle", "duration_s", "nan", "<= 604800"),
    ("resnet18", "image_size", 10**8, ">= 8 and <= 1024"),
    ("resnet18", "image_size", "1e8", ">= 8 and <= 1024"),
    ("resnet18", "batch_size", 10**6, ">= 1 and <= 65536"),
    ("cpu-stress", "threads", 100000, f"<= {MAX_THREADS}"),
])
def test_message_names_the_range(name, key, value, allowed):
    with pytest.raises(ValueError, match=key) as err:
        validate_params(name, {key: value})
    assert allowed in str(err.value)


def test_upper_bounds_are_inclusive_and_sensible():
    assert MAX_THREADS <= 1024 and MAX_THREADS >= 4
    p = validate_params("resnet18", {"duration_s": WEEK, "image_size": 1024, "batch_size": 1, "threads": MAX_THREADS,
                                     "seed": 2**32 - 1, "epochs": 100000, "lr": 10})
    assert p["duration_s"] == WEEK and p["image_size"] == 1024 and p["threads"] == MAX_THREADS
    assert validate_params("resnet18", {"batch_size": 65536, "image_size": 8})["batch_size"] == 65536
    assert validate_params("memory-stress", {"bytes": MAX_BYTES})["bytes"] == MAX_BYTES
    assert validate_params("step", {"levels": ",".join(["1"] * 1000), "hold_s": 1})["levels"].count(",") == 999
    assert validate_params("inception_v3", {})["image_size"] == 299
    assert validate_params("cpu-stress", {"duration_s": None})["duration_s"] is None  # until stopped, still allowed


@pytest.mark.parametrize("name, params, needle", [
    ("resnet18", {"batch_size": 65536, "image_size": 1024}, "batch_size=65536 x image_size=1024"),
    ("square", {"cycles": 1_000_000, "period_s": 86400}, "cycles x period_s"),
    ("step", {"levels": ",".join(["1"] * 1000), "hold_s": WEEK}, "levels x hold_s"),
])
def test_combined_limits(name, params, needle):
    with pytest.raises(ValueError) as err:
        validate_params(name, params)
    assert needle in str(err.value) and "\n" not in str(err.value)
    # bounded by duration_s instead, the planned length does not matter
    if name != "resnet18":
        assert validate_params(name, {**params, "duration_s": 60})["duration_s"] == 60


_NUMERIC = sorted({(n, k) for n in ("resnet18", "idle", "step", "square", "cpu-stress", "gpu-stress", "memory-stress")
                   for k, d in registry.get(n).params.items() if k not in ("levels",)
                   and (isinstance(d, int | float) and not isinstance(d, bool) or k in ("epochs", "steps", "lr",
                                                                                        "duration_s"))})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_NUMERIC), st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                            st.integers(min_value=-(10**40), max_value=10**40)))
def test_every_numeric_parameter_is_bounded(name_key, value):
    name, key = name_key
    try:
        p = validate_params(name, {key: value})
    except ValueError as exc:
        assert "\n" not in str(exc) and key in str(exc)
        return
    v = p[key]
    assert v is None or (math.isfinite(v) and abs(v) <= 10**9 * 1.0 or key in ("bytes", "seed")), (key, v)
    if key == "bytes":
        assert v <= MAX_BYTES
    if key == "seed":
        assert 0 <= v < 2**32


@pytest.mark.parametrize("args, needle", [
    (["--workload", "idle", "--duration", "1e308"], "duration_s"),
    (["--workload", "resnet18", "--image-size", "100000000"], "image_size"),
    (["--workload", "cpu-stress", "-p", "threads=100000"], "threads"),
    (["--workload", "memory-stress", "-p", "bytes=1000T"], "bytes"),
    (["--workload", "square", "-p", "period_s=nan"], "period_s"),
])
def test_cli_refuses_out_of_range_with_exit_2(tmp_path, args, needle):
    r = run_cli("run", "--meter", "cpu-model", *args, "--out", str(tmp_path / "s"), timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "must be" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()
