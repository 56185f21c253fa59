"""workloads.cnn: training loop, presets, events, datasets, weights (in process, tiny sizes)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from workloads import cnn  # noqa: E402
from workloads.registry import get  # noqa: E402

from .test_workloads_data import write_cifar10, write_mnist  # noqa: E402


class Recorder:
    """An ``emit`` that keeps the events."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, kind: str, **fields) -> dict:
        event = {"kind": kind, **fields}
        self.events.append(event)
        return event

    def phases(self) -> list[tuple[str, str]]:
        return [(e["kind"], e["phase"]) for e in self.events if e["kind"].startswith("phase_")]

    def metrics(self, name: str) -> list[float]:
        return [e["value"] for e in self.events if e["kind"] == "metric" and e["name"] == name]


def run(params: dict, stop=None) -> tuple[dict, Recorder]:
    rec = Recorder()
    result = cnn.train(params, emit=rec, stop=stop or threading.Event(), verbose=False)
    return result, rec


def test_small_model_learns_the_generated_set():
    result, rec = run({"model": "tinyvgg", "epochs": 3, "image_size": 16, "train_size": 320,
                       "val_size": 160, "batch_size": 16, "seed": 2})
    # 60 SGD steps: validation accuracy far above the 10 % of chance
    assert result["accuracy"] > 0.5
    losses = rec.metrics("loss")
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert rec.metrics("val_accuracy")[-1] == result["accuracy"]
    assert result["epochs_completed"] == 3 and result["stop_reason"] == "epochs"
    assert result["samples_seen"] == (2 + 3 * 20) * 16  # warm-up steps + 3 epochs of 20 steps
    assert result["images_per_s"] > 0 and len(rec.metrics("images_per_s")) == 3
    assert rec.phases() == [
        ("phase_start", "setup"), ("phase_end", "setup"), ("phase_start", "warmup"), ("phase_end", "warmup"),
        ("phase_start", "epoch-1"), ("phase_end", "epoch-1"), ("phase_start", "eval-1"), ("phase_end", "eval-1"),
        ("phase_start", "epoch-2"), ("phase_end", "epoch-2"), ("phase_start", "eval-2"), ("phase_end", "eval-2"),
        ("phase_start", "epoch-3"), ("phase_end", "epoch-3"), ("phase_start", "eval-3"), ("phase_end", "eval-3"),
    ]
    assert rec.events[-1]["kind"] == "result" and rec.events[-1]["accuracy"] == result["accuracy"]
    assert 0.0 <= result["accuracy"] <= 1.0


def test_steps_limit_resnet18_and_eval_every():
    result, rec = run({"model": "resnet18", "image_size": 16, "steps": 3, "warmup_steps": 1,
                       "batch_size": 8, "train_size": 64, "val_size": 16, "eval_every": 5})
    assert result["steps"] == 3 and result["stop_reason"] == "steps"
    assert result["samples_seen"] == 4 * 8 and result["epochs_completed"] == 0  # 3 of 8 batches
    assert ("phase_start", "eval-1") in rec.phases()  # the final evaluation always runs
    assert result["accuracy"] is not None and result["num_classes"] == 10
    assert result["parameters"] == sum(p.numel() for p in cnn.build_model("resnet18", 10, 16).parameters())


def test_steps_ending_on_an_epoch_boundary_count_the_epoch():
    result, _ = run({"model": "tinyvgg", "image_size": 16, "train_size": 64, "batch_size": 16, "steps": 8,
                     "warmup_steps": 0, "val_size": 8})
    assert result["steps"] == 8 and result["epochs_completed"] == 2 and result["stop_reason"] == "steps"


def test_vgg16_builds_and_steps_at_32px():
    result, _ = run({"model": "vgg16", "steps": 2, "warmup_steps": 0, "batch_size": 2,
                     "train_size": 4, "val_size": 2})
    assert result["parameters"] == 134_301_514  # VGG-16 with a 10-class head
    assert result["steps"] == 2 and result["samples_seen"] == 4 and result["image_size"] == 32


def test_inception_small_input_and_aux_loss():
    result, _ = run({"model": "inception_v3", "image_size": 75, "steps": 1, "warmup_steps": 0,
                     "batch_size": 2, "train_size": 2, "val_size": 2})
    assert result["steps"] == 1 and result["image_size"] == 75
    assert get("inception_v3").params["image_size"] == 299
    from torchvision.models.inception import InceptionOutputs

    crit = torch.nn.CrossEntropyLoss()
    y = torch.tensor([1, 3])
    main, aux = torch.randn(2, 5), torch.randn(2, 5)
    logits, loss = cnn.combined_loss(InceptionOutputs(main, aux), y, crit, 0.4)
    assert logits is main
    assert loss.item() == pytest.approx(crit(main, y).item() + 0.4 * crit(aux, y).item())
    assert cnn.combined_loss(main, y, crit, 0.4)[1].item() == pytest.approx(crit(main, y).item())
    assert cnn.build_model("inception_v3", 10, 299).AuxLogits is not None
    assert cnn.build_model("inception_v3", 10, 75).AuxLogits is None


def test_freeze_base_trains_only_the_head():
    result, _ = run({"model": "tinyvgg", "image_size": 16, "steps": 2, "freeze_base": True,
                     "optimizer": "adam", "train_size": 32, "val_size": 8})
    assert result["trainable_parameters"] == 64 * 10 + 10
    assert result["parameters"] > 20 * result["trainable_parameters"]
    assert cnn.classifier_head(cnn.build_model("resnet18", 10, 32)).out_features == 10


def test_local_weights_skip_a_different_head(tmp_path):
    torch.manual_seed(0)
    donor = cnn.tinyvgg(num_classes=5)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in donor.state_dict().items()}}, path)
    model = cnn.tinyvgg(num_classes=10)
    loaded, skipped = cnn.load_weights(model, str(path))
    assert sorted(skipped) == ["classifier.1.bias", "classifier.1.weight"]
    assert loaded == len(donor.state_dict()) - 2
    assert torch.equal(model.features[0].weight, donor.features[0].weight)
    result, rec = run({"model": "tinyvgg", "image_size": 16, "steps": 1, "weights": str(path),
                       "freeze_base": True, "train_size": 16, "val_size": 8})
    assert any(e["kind"] == "log" and "2 skipped" in e["message"] for e in rec.events)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot load a state_dict"):
        cnn.load_weights(model, str(tmp_path / "junk.pt"))
    torch.save(cnn.build_model("squeezenet1_1", 10, 32).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="only 1 of this model.s 20 tensors match"):
        cnn.load_weights(model, str(tmp_path / "other.pt"))


def test_stop_ends_the_phase_and_reports():
    stop = threading.Event()

    class StopInEpoch2(Recorder):
        def __call__(self, kind, **fields):
            if kind == "phase_start" and fields.get("phase") == "epoch-2":
                stop.set()
            return super().__call__(kind, **fields)

    rec = StopInEpoch2()
    result = cnn.train({"model": "tinyvgg", "image_size": 16, "epochs": 5, "train_size": 64, "val_size": 16},
                       emit=rec, stop=stop, verbose=False)
    assert result["interrupted"] and result["stop_reason"] == "signal"
    assert rec.phases()[-2:] == [("phase_start", "epoch-2"), ("phase_end", "epoch-2")]  # no eval after
    assert result["steps"] == 4 + 1 and result["accuracy"] == rec.metrics("val_accuracy")[-1]
    assert rec.events[-1]["kind"] == "result"


def test_cifar10_and_mnist_files(tmp_path):
    write_cifar10(tmp_path / "c")
    result, rec = run({"model": "tinyvgg", "dataset": f"cifar10:{tmp_path / 'c'}", "image_size": 16,
                       "steps": 2, "batch_size": 8})
    assert result["samples_seen"] == 4 * 8 and result["accuracy"] is not None
    write_mnist(tmp_path / "m")
    result, _ = run({"model": "resnet18", "dataset": f"mnist:{tmp_path / 'm'}", "image_size": 32,
                     "steps": 1, "batch_size": 4, "warmup_steps": 0})
    assert result["steps"] == 1 and result["num_classes"] == 10
    with pytest.raises(ValueError, match="never downloaded"):
        run({"model": "tinyvgg", "dataset": f"cifar10:{tmp_path / 'm'}"})


def test_data_batches_resize_and_expand_channels():
    ds = type("DS", (), {})()
    ds.labels = np.array([0, 1, 2], dtype=np.int64)
    ds.nbytes = 3 * 28 * 28 * 4
    ds.all = lambda: np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    data = cnn._Data(ds, torch.device("cpu"), 32, channels_last=True)
    x, y = data.get(np.array([2, 0]))
    assert tuple(x.shape) == (2, 3, 32, 32) and y.tolist() == [2, 0]
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_unusable_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="squeezenet1_1 cannot train with image_size=16") as err:
        run({"model": "squeezenet1_1", "image_size": 16, "steps": 1, "train_size": 4, "val_size": 2, "batch_size": 2})
    assert "\n" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            run({"model": "tinyvgg", "device": "cuda", "steps": 1})
    with pytest.raises(ValueError, match="need 'model'"):
        cnn.train({"steps": 1})


def test_amp_and_channels_last_on_cpu():
    result, _ = run({"model": "tinyvgg", "image_size": 16, "steps": 2, "amp": True, "channels_last": True,
                     "train_size": 32, "val_size": 8, "threads": 1})
    assert result["steps"] == 2 and result["accuracy"] is not None


def test_cosine_schedule_decays_to_zero_over_the_planned_steps(monkeypatch):
    lrs: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    result, _ = run({"model": "tinyvgg", "image_size": 8, "train_size": 32, "val_size": 8, "batch_size": 8,
                     "epochs": 2, "warmup_steps": 1, "optimizer": "adam", "lr": 0.01, "lr_schedule": "cosine"})
    assert result["steps"] == 8 and result["lr"] == 0.01 and result["lr_schedule"] == "cosine"
    # warm-up at lr, then step k of 8 at lr * (1 + cos(pi k / 8)) / 2
    expected = [0.01] + [0.005 * (1 + np.cos(np.pi * k / 8)) for k in range(8)]
    assert lrs == pytest.approx(expected)
    with pytest.raises(ValueError, match="lr_schedule=cosine needs steps or epochs"):
        run({"model": "tinyvgg", "lr_schedule": "cosine", "duration_s": 5})


def test_result_reports_eval_time_and_images():
    result, _ = run({"model": "tinyvgg", "image_size": 8, "train_size": 32, "val_size": 12, "batch_size": 8,
                     "epochs": 2})
    assert result["val_images"] == 2 * 12 and result["eval_s"] > 0
    assert result["val_samples"] == 12  # the final evaluation's images: the accuracy's n


def test_step_progress_for_the_live_view(monkeypatch):
    monkeypatch.setattr(cnn, "PROGRESS_S", 0.0)  # every step (the default is one a second)
    result, rec = run({"model": "tinyvgg", "image_size": 8, "train_size": 32, "val_size": 8, "batch_size": 8,
                       "epochs": 2, "warmup_steps": 0})
    steps = [e for e in rec.events if e["kind"] == "metric" and e["name"] == "step"]
    assert [e["value"] for e in steps] == list(range(1, result["steps"] + 1))
    assert all("phase" not in e for e in steps)  # not an epoch's figure
