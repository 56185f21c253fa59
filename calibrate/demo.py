"""``calibrate demo``: the whole flow on this machine with no hardware.

A simulated Watts Up? Pro (real bytes on a pseudo-terminal; its power follows this
machine's real CPU load through a PSU/fan model) is the wall reference; the software
meters are the utilisation model, and RAPL when this machine lets us read it.  The load
is a 90-s VGG16 training run (torch installed) or a square wave (without torch).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from calibrate.bench import BenchPlan

DEMO_SECONDS = 90.0


def rapl_readable() -> bool:
    try:
        from drivers.registry import make_meter

        m = make_meter("rapl")
        m.open()
        m.release()
        return True
    except Exception:
        return False


def demo_plan(args: argparse.Namespace) -> BenchPlan:
    """The demo's bench plan; ``args`` may set duration, workload, out, baseline and the
    analysis options (window defaults to 5 s, the reference to the simulated wall meter)."""
    uris = ["sim:wattsup", "cpu-model"]
    if rapl_readable():
        uris.append("rapl")
    has_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
    name = args.workload or ("vgg16" if has_torch else "square")
    duration = args.duration or DEMO_SECONDS
    params: dict[str, Any] = {"duration_s": duration}
    if name in ("vgg16", "vgg19", "resnet50", "resnet18"):
        # small images and a small generated set, so that on 2 CPU cores VGG16 leaves chance
        # (about 0.2 after 90 s, chance 0.1) while the meters record
        params.update({"image_size": 32, "batch_size": 16, "train_size": 256, "val_size": 128})
    plan = BenchPlan(meters=uris, workload=name, params=params, out=args.out,
                     reference=args.reference or "wattsup", baseline_s=args.baseline,
                     candidates=args.candidate, window_s=5.0 if args.window is None else args.window,
                     location=args.location, intensity=args.intensity, pue=args.pue)
    prepared = plan.prepare()  # the validated parameters are what the demo shows and records
    plan.params = prepared.params
    return plan
