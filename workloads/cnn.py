"""CNN training as a measured workload: any torchvision classification model, weights=None.

Phases (events): ``setup`` (data, model), ``warmup`` (``warmup_steps`` training steps,
excluded from throughput), ``epoch-N`` (training), ``eval-N`` (validation set).  Metric
events per epoch: ``loss``, ``accuracy`` (training), ``images_per_s``; per evaluation:
``val_loss``, ``val_accuracy``.  A final ``result`` event carries ``accuracy`` (0..1 on the
validation set), ``images_per_s`` (training images per s over the epoch phases, warm-up and
evaluation excluded), ``samples_seen``, ``duration_s``, ``train_s`` (s in the epoch phases),
``eval_s`` (s evaluating, all evaluations), ``val_images`` (images evaluated, all
evaluations), ``val_samples`` (images in the evaluation the accuracy comes from), ``lr`` (the base learning rate) and more.  ``lr_schedule=cosine`` decays the
learning rate from ``lr`` to 0 over the planned steps (``steps``, or ``epochs`` x steps per
epoch, the fewer); warm-up steps use ``lr``.

``nproc_per_node`` > 1 or ``nnodes`` > 1: the registry starts it under torchrun
(``python -m torch.distributed.run``), one process per rank, DistributedDataParallel
(:mod:`workloads.distributed`); each rank trains its shard of every epoch's batches and
evaluates its shard of the validation set.  The figures in the metrics and the result are
the run's (sums over the ranks; time: the slowest rank's), ``steps`` is per rank, and the
result adds ``world_size`` and ``backend``.  Every rank's events carry ``rank`` and ``host``
(:mod:`workloads.events`).

torch and torchvision are imported inside functions only, so ``import workloads`` works
without them.  Pretrained weights are never downloaded: ``weights`` names a local
state_dict file (tensors whose shapes differ, such as a 1000-class head, are skipped).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from . import _stop, events
from .data import load_dataset
from .distributed import Dist
from .events import Emit, phase
from .registry import TORCH_HINT, validate_params

DEFAULT_EPOCHS = 3
#: Sets up to this size (float32 bytes) are materialised on the device once.
CACHE_BYTES = 1 << 30
#: Auxiliary-head loss weights of the models that have them (train mode only).
AUX_WEIGHT = {"inception_v3": 0.4, "googlenet": 0.3}
#: Inception v3 keeps its auxiliary head (and aux loss) from this input size up, px.
INCEPTION_AUX_MIN = 299


PROGRESS_S = 1.0  # at most one ``step`` metric (steps done so far) per second of training


def _torch():
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError:
        raise ValueError(f"CNN workloads need torch and torchvision: {TORCH_HINT}") from None
    return torch


# --------------------------------------------------------------------------- models


def tinyvgg(num_classes: int = 10):
    """A tiny VGG-like CNN (3 conv blocks of 16/32/64 channels, ~25 k parameters)."""
    from torch import nn

    def block(cin: int, cout: int, pool: nn.Module) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), pool]

    class TinyVGG(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(3, 16, nn.MaxPool2d(2)), *block(16, 32, nn.MaxPool2d(2)), *block(32, 64, nn.AdaptiveAvgPool2d(1))
            )
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x))

    return TinyVGG()


def build_model(name: str, num_classes: int, image_size: int):
    """A freshly initialised model (weights=None) with ``num_classes`` outputs."""
    _torch()
    if name == "tinyvgg":
        return tinyvgg(num_classes)
    import torchvision

    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs["init_weights"] = True  # explicit: silences torchvision's future-change warning
    if name == "inception_v3" and image_size < INCEPTION_AUX_MIN:
        kwargs["aux_logits"] = False  # the aux head's 5x5 conv needs the 299 px geometry
    if name.startswith("vit_") and image_size != 224:
        patch = int(name.rsplit("_", 1)[1])
        if image_size % patch:
            raise ValueError(f"{name}: image_size must be a multiple of the patch size {patch}")
        kwargs["image_size"] = image_size
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def combined_loss(out: Any, y: Any, criterion: Callable[..., Any], aux_weight: float) -> tuple[Any, Any]:
    """(main logits, loss): ``criterion(main) + aux_weight * criterion(aux)`` for each aux head.

    InceptionOutputs / GoogLeNetOutputs (train mode) carry aux logits; plain tensors have none.
    """
    if hasattr(out, "logits") and hasattr(out, "_fields"):
        main = out.logits
        aux = [a for k, a in zip(out._fields, out, strict=True) if k != "logits" and a is not None]
        return main, criterion(main, y) + sum(aux_weight * criterion(a, y) for a in aux)
    return out, criterion(out, y)


def classifier_head(model):
    """The classifier head module (``fc``, ``classifier``, ``heads`` or ``head``)."""
    from torch import nn

    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(f"freeze_base: cannot find the classifier head of {type(model).__name__}")


def load_weights(model, path: str) -> tuple[int, list[str]]:
    """Load a local state_dict; returns (tensors loaded, names skipped for shape mismatch).

    Tensors whose shape differs (a 1000-class ImageNet head on a 10-class model) are skipped;
    fewer than half of the model's tensors matching is an error (another architecture).
    """
    torch = _torch()
    try:
        state = torch.load(os.path.expanduser(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad file
        raise ValueError(f"weights {path!r}: cannot load a state_dict ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"weights {path!r}: not a state_dict (got {type(state).__name__})")
    own = model.state_dict()
    matched, skipped = {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in own and hasattr(value, "shape") and tuple(value.shape) == tuple(own[key].shape):
            matched[key] = value
        elif key in own:
            skipped.append(key)
    if len(matched) < len(own) / 2:
        raise ValueError(
            f"weights {path!r}: only {len(matched)} of this model's {len(own)} tensors match "
            "(wrong architecture?)"
        )
    model.load_state_dict(matched, strict=False)
    return len(matched), skipped


def resolve_device(name: str) -> str:
    """``auto`` -> cuda, mps or cpu; ValueError if the asked device is not available."""
    torch = _torch()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name} but torch sees no CUDA GPU (torch.cuda.is_available() is False); use device=cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not has_mps:
        raise ValueError("device=mps but torch.backends.mps.is_available() is False; use device=cpu")
    return name


# --------------------------------------------------------------------------- training


class _Data:
    """Batches of one image set on the device, resized / channel-expanded for the model."""

    def __init__(self, ds, device, image_size: int, channels_last: bool) -> None:
        torch = _torch()
        self.ds, self.device, self.size = ds, device, image_size
        self.channels_last = channels_last
        self.labels = torch.from_numpy(ds.labels).to(device)
        self.cache = torch.from_numpy(ds.all()).to(device) if ds.nbytes <= CACHE_BYTES else None

    def __len__(self) -> int:
        return len(self.ds)

    def get(self, idx: np.ndarray):
        torch = _torch()
        import torch.nn.functional as F

        if self.cache is not None:
            x = self.cache[torch.from_numpy(idx).to(self.device)]
        else:
            x = torch.from_numpy(self.ds.batch(idx)).to(self.device, non_blocking=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[torch.from_numpy(idx).to(self.device)]


def _batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index batches over n items (shuffled when rng is given); never a batch of 1 when avoidable."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()  # BatchNorm cannot train on a single image
    return out


def _progress(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


def train(
    params: dict[str, Any],
    emit: Emit = events.emit,
    *,
    stop: Any = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train ``params["model"]`` with the other CNN parameters; returns the result dict.

    Emits phase / metric / result events through ``emit``.  Stops early (ending the running
    phase, skipping further evaluation) when ``stop`` (a threading.Event, default the
    SIGTERM/SIGINT flag) is set.  Raises ValueError on unusable parameters or data.
    """
    stop = _stop.STOP if stop is None else stop
    params = dict(params)
    name = params.pop("model", None)
    if not name:
        raise ValueError("train(): params need 'model' (a torchvision model name or tinyvgg)")
    p = validate_params(name, params)
    epochs = p["epochs"]
    if epochs is None:
        epochs = math.inf if (p["steps"] or p["duration_s"]) else DEFAULT_EPOCHS
    t0 = time.monotonic()  # duration_s counts from here: setup (torch import included) onwards
    with phase("setup", emit=emit, model=name, device=p["device"]):
        train_ds, val_ds = load_dataset(  # numpy only: missing files are reported before torch loads
            p["dataset"], image_size=p["image_size"], num_classes=p["num_classes"],
            train_size=p["train_size"], val_size=p["val_size"], limit=p["limit"], seed=p["seed"],
        )
        torch = _torch()
        from torch import nn

        if p["threads"]:
            torch.set_num_threads(p["threads"])
        device = torch.device(resolve_device(p["device"]))
        dist = Dist(torch, p["backend"], device)  # under torchrun: joins the process group
        device = dist.device

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elif device.type == "mps":
                torch.mps.synchronize()

        torch.manual_seed(p["seed"])
        num_classes = train_ds.num_classes
        if num_classes != p["num_classes"]:
            emit("log", message=f"{p['dataset']} has {num_classes} classes; num_classes={p['num_classes']} ignored")
        model = build_model(name, num_classes, p["image_size"])
        if p["weights"]:
            loaded, skipped = load_weights(model, p["weights"])
            msg = f"weights {p['weights']}: {loaded} tensors loaded, {len(skipped)} skipped (shape differs): {', '.join(skipped[:4])}"
            emit("log", message=msg)
            _progress(verbose, msg)
        head = classifier_head(model) if p["freeze_base"] else None
        if head is not None:
            for q in model.parameters():
                q.requires_grad_(False)
            for q in head.parameters():
                q.requires_grad_(True)
        model = model.to(device)
        if p["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        trainable = [q for q in model.parameters() if q.requires_grad]
        net = dist.wrap(model)  # what trains (DDP when distributed); ``model`` evaluates
        lr = p["lr"] or (0.01 if p["optimizer"] == "sgd" else 0.001)
        if p["optimizer"] == "sgd":
            opt = torch.optim.SGD(trainable, lr=lr, momentum=0.9)
        elif p["optimizer"] == "adam":
            opt = torch.optim.Adam(trainable, lr=lr)
        else:
            opt = torch.optim.AdamW(trainable, lr=lr)
        amp_dtype = (torch.bfloat16 if device.type == "cpu" else torch.float16) if p["amp"] else None
        # the cosine schedule's length: the steps limit, or the epochs' steps if fewer
        per_epoch = len(_batches(len(train_ds), p["batch_size"], None))
        planned_steps = min(p["steps"] or math.inf, epochs * per_epoch)
        scaler = torch.amp.GradScaler(device.type) if p["amp"] and device.type == "cuda" else None
        criterion = nn.CrossEntropyLoss()
        aux_w = AUX_WEIGHT.get(name, 0.0)
        tr = _Data(train_ds, device, p["image_size"], p["channels_last"])
        va = _Data(val_ds, device, p["image_size"], p["channels_last"])
        sync()
    n_params = sum(q.numel() for q in model.parameters())
    _progress(verbose, f"{name}: {n_params / 1e6:.2f} M parameters ({sum(q.numel() for q in trainable) / 1e6:.2f} M trained), "
              f"{len(tr)} train / {len(va)} val images at {p['image_size']} px on {device}")

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    def set_train() -> None:
        model.train()
        if head is not None:  # frozen base: BatchNorm statistics stay frozen too (Keras semantics)
            model.eval()
            head.train()

    def loss_of(out, y):
        return combined_loss(out, y, criterion, aux_w)

    state = {"steps": 0, "seen": 0, "first": True, "eval_s": 0.0, "val_images": 0, "val_samples": 0}

    def step(idx: np.ndarray, k: int | None = None):
        """One training step on ``idx``; ``k``: its 0-based number for the lr schedule (None: base lr)."""
        if p["lr_schedule"] == "cosine" and math.isfinite(planned_steps):
            frac = min(k or 0, planned_steps) / planned_steps
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        x, y = tr.get(idx)
        try:
            with autocast():
                logits, loss = loss_of(net(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        except RuntimeError as exc:
            if not state["first"]:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"{name} cannot train with image_size={p['image_size']}, batch_size={p['batch_size']} on {device}: {first}"
            ) from None
        state["first"] = False
        state["seen"] += len(idx)
        return loss.detach().float() * len(idx), (logits.detach().argmax(1) == y).sum()

    def limits_hit() -> str | None:
        code = 0
        if stop.is_set():
            code = 3
        elif p["duration_s"] is not None and time.monotonic() - t0 >= p["duration_s"]:
            code = 2
        elif p["steps"] is not None and state["steps"] >= p["steps"]:
            code = 1
        code = dist.agree_max(code)  # every rank stops at the same step
        return (None, "steps", "duration", "signal")[code]

    def local_stop() -> bool:
        """A stop that one process may act on alone (a distributed run agrees in limits_hit)."""
        return stop.is_set() and not dist.active

    def evaluate(n: int) -> tuple[float, float] | None:
        model.eval()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        with phase(f"eval-{n}", emit=emit), torch.inference_mode():
            ts = time.perf_counter()
            try:
                for idx in dist.shard(_batches(len(va), p["batch_size"], None), trim=False):
                    if local_stop():
                        return None
                    x, y = va.get(idx)
                    with autocast():
                        out = model(x)
                    loss_sum += criterion(out.float(), y) * len(idx)
                    correct += (out.argmax(1) == y).sum()
                    seen += len(idx)
                c_all, l_all, n_all = dist.sums([float(correct.item()), float(loss_sum.item()), float(seen)])
                seen = int(n_all)
                acc, loss = c_all / seen, l_all / seen
            finally:
                state["eval_s"] += time.perf_counter() - ts
                state["val_images"] += seen
                state["val_samples"] = seen  # the latest evaluation's size: the accuracy's n
            emit("metric", name="val_loss", value=loss, unit="", phase=f"eval-{n}")
            emit("metric", name="val_accuracy", value=acc, unit="", phase=f"eval-{n}")
        _progress(verbose, f"eval-{n}: val_loss {loss:.4f} val_accuracy {acc:.3f}")
        return acc, loss

    accuracy = val_loss = None
    warmup_s = measured_s = 0.0
    measured_images = epochs_done = 0
    reason = None
    if p["warmup_steps"] and not local_stop():
        set_train()
        with phase("warmup", emit=emit, steps=p["warmup_steps"]):
            ts = time.perf_counter()
            rng = np.random.default_rng([p["seed"], 0])
            batches = dist.shard(_batches(len(tr), p["batch_size"], rng))
            for i in range(p["warmup_steps"]):
                if local_stop():
                    break
                step(batches[i % len(batches)])
            sync()
            warmup_s = time.perf_counter() - ts
    epoch = 0
    evaluated_after = -1
    last_progress = time.perf_counter()
    while (reason := limits_hit()) is None and epoch < epochs:
        epoch += 1
        set_train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        images = 0
        with phase(f"epoch-{epoch}", emit=emit):
            ts = time.perf_counter()
            batches = dist.shard(_batches(len(tr), p["batch_size"], np.random.default_rng([p["seed"], epoch])))
            done = 0
            for idx in batches:
                l_sum, c = step(idx, state["steps"])
                done += 1
                loss_sum += l_sum
                correct += c
                images += len(idx)
                state["steps"] += 1
                now = time.perf_counter()
                if now - last_progress >= PROGRESS_S:  # for the bench's live view; no phase: not an epoch figure
                    emit("metric", name="step", value=state["steps"], unit="steps")
                    last_progress = now
                if limits_hit():
                    break
            epochs_done += done == len(batches)
            sync()
            dt = time.perf_counter() - ts
            # distributed: the run's figures (images and sums over the ranks, the slowest rank's time)
            all_images, all_loss, all_correct = dist.sums([float(images), float(loss_sum.item()), float(correct.item())])
            (dt,) = dist.maxes([dt])
            measured_s += dt
            measured_images += int(all_images)
            ips = all_images / dt if dt > 0 else 0.0
            loss, acc = all_loss / max(all_images, 1), all_correct / max(all_images, 1)
            emit("metric", name="loss", value=loss, unit="", phase=f"epoch-{epoch}")
            emit("metric", name="accuracy", value=acc, unit="", phase=f"epoch-{epoch}")
            emit("metric", name="images_per_s", value=ips, unit="images/s", phase=f"epoch-{epoch}")
        _progress(verbose, f"epoch-{epoch}: loss {loss:.4f} accuracy {acc:.3f} {ips:.1f} images/s")
        reason = limits_hit()
        if reason == "signal":
            break
        if epoch % p["eval_every"] == 0 or reason is not None or epoch >= epochs:
            got = evaluate(epoch)
            if got is None:
                break
            accuracy, val_loss = got
            evaluated_after = epoch
    if reason is None:
        reason = "epochs"
    if reason != "signal" and epoch > 0 and evaluated_after != epoch and not local_stop():
        got = evaluate(epoch)
        if got is not None:
            accuracy, val_loss = got
    if stop.is_set():
        reason = "signal"
    result = {
        "model": name,
        "device": str(device),
        "dataset": p["dataset"],
        "accuracy": accuracy,
        "val_loss": val_loss,
        "images_per_s": measured_images / measured_s if measured_s > 0 else None,
        "samples_seen": int(dist.sums([float(state["seen"])])[0]),  # all ranks'
        "steps": state["steps"],
        "epochs_completed": epochs_done,
        "duration_s": time.monotonic() - t0,
        "train_s": measured_s,
        "warmup_s": warmup_s,
        "eval_s": state["eval_s"],
        "val_images": state["val_images"],
        "val_samples": state["val_samples"],
        "lr": lr,
        "lr_schedule": p["lr_schedule"],
        "stop_reason": reason,
        "interrupted": reason == "signal",
        "parameters": n_params,
        "trainable_parameters": sum(q.numel() for q in trainable),
        "image_size": p["image_size"],
        "batch_size": p["batch_size"],
        "num_classes": num_classes,
        **dist.info(),
    }
    dist.close()
    emit("result", **result)
    ips_text = f"{result['images_per_s']:.1f}" if result["images_per_s"] else "-"
    acc_text = f"{accuracy:.3f}" if accuracy is not None else "-"
    _progress(verbose, f"done ({reason}): accuracy {acc_text}, {ips_text} images/s, "
              f"{state['seen']} samples in {result['duration_s']:.1f} s")
    return result


def run(name: str, params: dict[str, Any], emit: Emit = events.emit, *, stop: Any = None) -> dict[str, Any]:
    """CLI entry: train workload ``name`` with ``params`` (validated here)."""
    return train({**validate_params(name, params), "model": name}, emit, stop=stop)
