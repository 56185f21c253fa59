"""``calibrate demo``: the whole flow on this machine with no hardware.

A simulated Watts Up? Pro (real bytes on a pseudo-terminal; its power follows this
machine's real CPU load through a PSU/fan model) is the wall reference; the software
meters are the utilisation model, and RAPL when this machine lets us read it.  The load
is a short VGG16 training run (torch installed) or a square wave (without torch).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

DEMO_SECONDS = 60.0


def rapl_readable() -> bool:
    try:
        from drivers.uri import make_meter

        m = make_meter("rapl")
        m.open()
        m.release()
        return True
    except Exception:
        return False


def demo_plan(args: argparse.Namespace) -> tuple[list[str], str, dict[str, Any], list[str]]:
    from workloads.registry import command_for, validate_params

    uris = ["sim:wattsup", "cpu-model"]
    if rapl_readable():
        uris.append("rapl")
    has_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
    name = args.workload or ("vgg16" if has_torch else "square")
    duration = args.duration or DEMO_SECONDS
    params: dict[str, Any] = {"duration_s": duration}
    if name in ("vgg16", "vgg19", "resnet50", "resnet18"):
        params.update({"image_size": 32, "batch_size": 8})
    if args.window is None:
        args.window = 5.0
    params = validate_params(name, params)
    return uris, name, params, command_for(name, params)
