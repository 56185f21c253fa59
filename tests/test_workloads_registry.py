"""workloads.registry: names, parameters, coercion, argv."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from workloads import registry
from workloads.registry import UnknownWorkload, command_for, get, validate_params


def test_presets_and_categories():
    for name in ("vgg16", "vgg19", "resnet50", "resnet18", "densenet121", "mobilenet_v2", "efficientnet_b0", "inception_v3"):
        spec = get(name)
        assert spec.category == "cnn" and spec.name == name
        assert spec.params["batch_size"] == 16 and spec.params["num_classes"] == 10
        assert spec.params["device"] == "cpu" and spec.params["weights"] is None
        assert spec.params["duration_s"] is None and spec.params["seed"] == 0
        assert spec.params["dataset"] == "synthetic"
        assert set(spec.help) == set(spec.params)
    assert get("vgg16").params["image_size"] == 32
    assert get("inception_v3").params["image_size"] == 299
    for name in ("idle", "step", "square", "cpu-stress", "gpu-stress", "memory-stress"):
        assert get(name).category == "calibration"
    assert get("command").category == "command"
    assert get("step").params["levels"] == "0,0.5,1"


def test_any_torchvision_model_is_valid():
    spec = get("vgg11_bn")
    assert spec.category == "cnn" and spec.params["image_size"] == 32
    assert get("vit_b_16").params["image_size"] == 224


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownWorkload) as err:
        get("vgg17")
    msg = str(err.value)
    assert "\n" not in msg and "vgg16" in msg and "cpu-stress" in msg and "command" in msg
    assert isinstance(err.value, ValueError)


def test_missing_torch_named_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(UnknownWorkload, match=r"pip install -e '\.\[torch\]'") as err:
        get("convnext_tiny")
    assert "not installed" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnknownWorkload, match="unknown workload 'nonsense'"):
        get("nonsense")
    assert get("vgg16").category == "cnn"  # presets need no torch to describe


def test_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "import workloads, workloads.registry, workloads.cnn, workloads.load_shapes, workloads.command, workloads.data\n"
            "print(workloads.registry.get('resnet50').params['image_size'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "32"


def test_validate_coerces_from_defaults():
    p = validate_params("resnet18", {"batch_size": "8", "amp": "true", "lr": "0.05", "steps": "3",
                                     "duration_s": 10, "channels_last": 1, "weights": "none"})
    assert p["batch_size"] == 8 and p["amp"] is True and p["lr"] == 0.05 and p["steps"] == 3
    assert p["duration_s"] == 10.0 and isinstance(p["duration_s"], float)
    assert p["channels_last"] is True and p["weights"] is None
    assert p["epochs"] is None and p["image_size"] == 32 and p["optimizer"] == "sgd"
    assert validate_params("resnet18", p) == p  # idempotent
    assert validate_params("step", {"levels": "1, 0.25,0"})["levels"] == "1,0.25,0"
    assert validate_params("memory-stress", {"bytes": "64M"})["bytes"] == 64 << 20
    assert validate_params("memory-stress", {"bytes": 4096})["bytes"] == 4096
    assert validate_params("cpu-stress", {"duration_s": None})["duration_s"] is None  # until stopped
    assert validate_params("cpu-stress", {})["duration_s"] == 60.0


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("resnet18", {"batch_sise": 8}, "unknown parameter batch_sise"),
        ("resnet18", {"batch_size": "eight"}, "not an integer"),
        ("resnet18", {"batch_size": 0}, "must be >= 1"),
        ("resnet18", {"batch_size": 2.5}, "not an integer"),
        ("resnet18", {"amp": "maybe"}, "not a boolean"),
        ("resnet18", {"device": "tpu"}, "cpu, cuda"),
        ("resnet18", {"optimizer": "lbfgs"}, "must be one of"),
        ("resnet18", {"lr": "nan"}, "finite"),
        ("resnet18", {"dataset": "imagenet"}, "synthetic, imagefolder:DIR"),
        ("resnet18", {"dataset": "cifar10:/nonexistent/dir"}, "never downloaded"),
        ("resnet18", {"weights": "/nonexistent/w.pt"}, "never downloaded"),
        ("resnet18", {"batch_size": None}, "cannot be empty"),
        ("vgg16", {"image_size": 16}, "must be >= 32"),
        ("inception_v3", {"image_size": 64}, "must be >= 75"),
        ("step", {"levels": "0,1.5"}, "between 0 and 1"),
        ("step", {"levels": "0,x"}, "not a number"),
        ("square", {"duty": 1.0}, "exclusive"),
        ("memory-stress", {"bytes": "lots"}, "not a size"),
        ("idle", {"duration_s": -1}, "must be > 0"),
        ("command", {"epochs": 3}, "unknown parameter epochs"),
    ],
)
def test_bad_values_one_line(name, params, fragment):
    with pytest.raises(ValueError) as err:
        validate_params(name, params)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_command_for():
    argv = command_for("resnet18", {"epochs": "2", "device": "cpu"})
    assert argv[:4] == [sys.executable, "-m", "workloads", "resnet18"]
    assert argv[4] == "--params" and json.loads(argv[5]) == {"epochs": 2, "device": "cpu"}
    assert command_for("command", {"duration_s": 5}, ["sleep", "1"])[-3:] == ["--", "sleep", "1"]
    with pytest.raises(ValueError):
        command_for("resnet18", {"nope": 1})


def test_parsers():
    assert registry.parse_bytes("1G") == 1 << 30
    assert registry.parse_bytes("1.5k") == 1536
    assert registry.parse_bytes("512KiB") == 512 << 10
    assert registry.parse_levels([0, "0.5", 1]) == "0,0.5,1"
    with pytest.raises(ValueError):
        registry.parse_bytes(0)


def test_prepare_validates_and_builds_the_argv():
    w = registry.prepare("resnet18", {"epochs": "2", "device": "cpu"})
    assert (w.name, w.category) == ("resnet18", "cnn")
    assert w.params == validate_params("resnet18", {"epochs": "2", "device": "cpu"})
    assert w.argv[:4] == [sys.executable, "-m", "workloads", "resnet18"] and w.argv[4] == "--params"
    assert validate_params("resnet18", json.loads(w.argv[5])) == w.params  # the child gets the same
    assert registry.prepare("idle", None).params == validate_params("idle", {})
    c = registry.prepare("command", {"duration_s": 5}, ["sleep", "1"])
    assert c.category == "command" and c.argv[-3:] == ["--", "sleep", "1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.argv = []  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, params, command, fragment",
    [
        ("resnet18", {"nope": 1}, None, "unknown parameter nope"),
        ("vgg17", {}, None, "unknown workload 'vgg17'"),
        ("command", {}, None, "needs a command after `--`"),
        ("square", {}, ["sleep", "1"], "square takes no command"),
    ],
)
def test_prepare_errors_one_line(name, params, command, fragment):
    with pytest.raises(ValueError) as err:
        registry.prepare(name, params, command)
    assert fragment in str(err.value) and "\n" not in str(err.value)
