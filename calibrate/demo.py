"""``calibrate demo``: the whole flow on this machine with no hardware.

A simulated Watts Up? Pro (real bytes on a pseudo-terminal; its power follows this
machine's real CPU load through a PSU/fan model) is the wall reference; the software
meters are the utilisation model, and RAPL when this machine lets us read it.  The load
(torch installed) is :data:`DEMO_TRAINING`: ResNet-18 trained from scratch for 3 epochs
(48 steps of 32 images at 16 px) on the generated grating set, about 20 s of training on
2 CPU cores, reaching a validation accuracy of about 0.8 (chance 0.1), so that the report's
accuracy per kWh is that of a model that learned.  Without torch it is a square wave.

Why not VGG16 (the seed study's model): torchvision's VGG keeps its 7x7 average pool and
its 25088 x 4096 classifier at any input size, so even at 32 px a step updates 134 M
parameters; on 2 CPU cores it trains about 5 images/s (VGG16 or VGG11-BN alike), 30 steps
in 90 s, and stays near chance.  ``calibrate demo --workload vgg16`` still runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from calibrate.bench import BenchPlan

#: The demo's CNN training: ``workloads.cnn.train(DEMO_TRAINING)`` runs exactly what the demo
#: runs (seeded, bounded by epochs).  Measured on 2 CPU cores: about 80 training images/s,
#: 48 steps in about 20 s, evaluation (3 x 256 images) about 1 s, validation accuracy 0.8.
DEMO_TRAINING: dict[str, Any] = {
    "model": "resnet18",
    "image_size": 16,  # px
    "batch_size": 32,  # images per step
    "train_size": 512,  # generated training images: 16 steps per epoch
    "val_size": 256,  # generated validation images, evaluated after each epoch
    "epochs": 3,  # 48 steps
    "optimizer": "adam",
    "lr": 0.003,
    "lr_schedule": "cosine",  # from lr down to 0 over the 48 steps
    "seed": 0,
    "dataset": "synthetic",
}
#: Safety cap on the training (s, from the workload's start): it stops there even if the
#: 3 epochs are not done (a machine much slower than 2 free cores).  ``--duration`` sets it.
DEMO_MAX_S = 90.0
#: Length of the other demo loads (s): a CNN named by ``--workload``, or the square wave.
DEMO_SECONDS = 90.0
#: Data of a CNN other than the demo's own given with ``--workload`` (its own optimizer/lr).
OTHER_CNN = {"image_size": 32, "batch_size": 16, "train_size": 256, "val_size": 128}


def rapl_readable() -> bool:
    """True when RAPL can be opened here (then the demo records it too)."""
    try:
        from drivers.registry import make_meter

        m = make_meter("rapl")
        m.open()
        m.release()
        return True
    except Exception:
        return False


def demo_params(name: str, duration_s: float | None = None) -> dict[str, Any]:
    """The workload parameters the demo gives workload ``name`` (before validation).

    The demo's own model (:data:`DEMO_TRAINING`) trains its epochs, capped at ``duration_s``
    (s, default :data:`DEMO_MAX_S`); another CNN trains ``duration_s`` (default
    :data:`DEMO_SECONDS`) on a small generated set; any other load runs ``duration_s``.
    """
    if name == DEMO_TRAINING["model"]:
        params = {k: v for k, v in DEMO_TRAINING.items() if k != "model"}
        return {**params, "duration_s": duration_s or DEMO_MAX_S}
    from workloads.registry import UnknownWorkload, get

    try:
        category = get(name).category
    except UnknownWorkload:
        category = None  # plan.prepare() below words the error
    if category == "cnn":
        return {**OTHER_CNN, "duration_s": duration_s or DEMO_SECONDS}
    return {"duration_s": duration_s or DEMO_SECONDS}


def demo_plan(args: argparse.Namespace) -> BenchPlan:
    """The demo's bench plan; ``args`` may set duration, workload, out, baseline and the
    analysis options (the reference defaults to the simulated wall meter; the window to the
    analysis' own choice, which shortens it for a short session so that about 20 fit: about
    3 s for the demo's training)."""
    uris = ["sim:wattsup", "cpu-model"]
    if rapl_readable():
        uris.append("rapl")
    has_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
    name = args.workload or (DEMO_TRAINING["model"] if has_torch else "square")
    plan = BenchPlan(meters=uris, workload=name, params=demo_params(name, args.duration), out=args.out,
                     reference=args.reference or "wattsup", baseline_s=args.baseline,
                     candidates=args.candidate, window_s=args.window,
                     location=args.location, intensity=args.intensity, pue=args.pue)
    prepared = plan.prepare()  # the validated parameters are what the demo shows and records
    plan.params = prepared.params
    return plan
