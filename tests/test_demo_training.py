"""The demo's training configuration learns: ``calibrate.demo.DEMO_TRAINING`` in process.

Not a timed test: the accuracy and the train/eval split are asserted on the workload's own
result (seeded; bounded by epochs, not by time).
"""

from __future__ import annotations

import argparse
import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from calibrate.demo import DEMO_MAX_S, DEMO_TRAINING, demo_params, demo_plan  # noqa: E402
from workloads import cnn  # noqa: E402
from workloads.registry import get, validate_params  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    base = {"workload": None, "duration": None, "out": None, "reference": None, "baseline": 10.0,
            "candidate": None, "window": None, "location": None, "intensity": None, "pue": None}
    return argparse.Namespace(**{**base, **kw})


def test_demo_plan_runs_the_demo_training():
    plan = demo_plan(_args())
    assert plan.workload == DEMO_TRAINING["model"] == "resnet18"
    assert get(plan.workload).category == "cnn"  # a standard registry CNN, not a demo-only model
    expected = validate_params(plan.workload, {k: v for k, v in DEMO_TRAINING.items() if k != "model"})
    assert {k: v for k, v in plan.params.items() if k != "duration_s"} == {
        k: v for k, v in expected.items() if k != "duration_s"}
    assert plan.params["duration_s"] == DEMO_MAX_S  # a safety cap only: the epochs end it
    assert plan.params["epochs"] == 3 and plan.params["steps"] is None
    assert demo_plan(_args(duration=30.0)).params["duration_s"] == 30.0
    assert demo_params("vgg16")["image_size"] == 32 and demo_params("square") == {"duration_s": 90.0}


def test_demo_training_learns_and_evaluates_in_less_time_than_it_trains():
    events: list[dict] = []
    result = cnn.train(dict(DEMO_TRAINING), emit=lambda kind, **f: events.append({"kind": kind, **f}),
                       stop=threading.Event(), verbose=False)
    # 3 epochs of 512 images in batches of 32, seeded: the demo's 48 steps
    assert result["stop_reason"] == "epochs" and result["steps"] == 48 and result["epochs_completed"] == 3
    assert result["samples_seen"] == (48 + 2) * 32  # + 2 warm-up steps
    # question (ii) of the study needs a model that learned: chance is 0.1 on 10 classes
    assert result["num_classes"] == 10
    assert result["accuracy"] >= 0.5, result["accuracy"]
    val = [e["value"] for e in events if e["kind"] == "metric" and e["name"] == "val_accuracy"]
    assert len(val) == 3 and val[-1] == result["accuracy"]
    # evaluation is bounded: 3 x 256 validation images against 48 x 32 training images
    assert result["val_images"] == 3 * 256 < result["samples_seen"]
    assert 0 < result["eval_s"] < result["train_s"]
    assert result["lr"] == 0.003 and result["lr_schedule"] == "cosine"
