"""Which workloads exist, their parameters, and how to start one in its own process.

Three categories:

* ``cnn`` -- training a torchvision classification model (any name
  ``torchvision.models.list_models`` knows, plus the tiny ``tinyvgg``), see :mod:`workloads.cnn`;
* ``calibration`` -- loads with sharp, known edges (idle, steps, square wave, CPU/GPU/memory
  stress), see :mod:`workloads.load_shapes`;
* ``command`` -- any user command, see :mod:`workloads.command`.

Nothing here imports torch at module level; :func:`get` imports torchvision only to check a
model name that is not one of the presets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "UnknownWorkload",
    "WorkloadSpec",
    "ParamInfo",
    "get",
    "parameters",
    "names",
    "PreparedWorkload",
    "prepare",
    "validate_params",
    "command_for",
    "CNN_PRESETS",
    "CALIBRATION",
    "TORCH_HINT",
]

TORCH_HINT = "pip install -e '.[torch]'"


class UnknownWorkload(ValueError):
    """The workload name is not known (one-line message listing the known names)."""


@dataclass
class WorkloadSpec:
    """A workload: its name, what it does, its parameters with defaults, its category.

    ``params`` maps each parameter to its default (``None`` = not limited / not set);
    ``help`` maps each parameter to a one-line description; :func:`parameters` gives each
    one's type, unit and allowed range too.
    """

    name: str
    description: str
    params: dict[str, Any]
    category: str  # "cnn" | "calibration" | "command"
    help: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # "-" when unitless


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Param:
    default: Any
    type: type  # bool, int, float or str
    help: str  # what it means, one line
    check: Callable[[Any], str | None] | None = None  # returns an error text or None
    parse: Callable[[Any], Any] | None = None  # custom coercion (overrides ``type``)
    nullable: bool = False  # None allowed although the default is not None
    unit: str = "-"  # unit of the value ("s", "px", "images", ...); "-" when unitless
    allowed: str | None = None  # allowed values, shown to users (None: from ``check``)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a workload as users see it (``calibrate workloads``)."""

    name: str
    type: str  # "int", "float", "str" or "bool"
    default: Any  # the validated default (None: not set / not limited, see meaning)
    unit: str  # "s", "px", "images", ...; "-" when unitless
    range: str  # allowed values: "[1, 65536]", "(0, 604_800]", "sgd | adam | adamw", ...
    meaning: str  # one line


def _range_text(x: float) -> str:
    return f"{x:,}".replace(",", "_") if isinstance(x, int) and abs(x) >= 100_000 else f"{x:g}"


def _between(lo: float, hi: float, *, lo_open: bool = False, unit: str = "") -> Callable[[Any], str | None]:
    """``lo <= v <= hi`` (``lo < v`` when ``lo_open``); the error names the allowed range."""
    low = f"> {_range_text(lo)}" if lo_open else f">= {_range_text(lo)}"
    text = f"must be {low} and <= {_range_text(hi)}{unit}"

    def check(v: Any) -> str | None:
        if v is None:
            return None
        if v != v or (v <= lo if lo_open else v < lo) or v > hi:
            return text
        return None

    check.range_text = text  # type: ignore[attr-defined]  # added to a value that is not even a number
    check.allowed = f"{'(' if lo_open else '['}{_range_text(lo)}, {_range_text(hi)}]"  # type: ignore[attr-defined]
    return check


#: bounds shared by several workloads
MAX_DURATION_S = 7 * 24 * 3600.0  # a week: longer runs are a mistake (or an attack), not a calibration
_UP_TO_A_WEEK = _between(0, MAX_DURATION_S, lo_open=True, unit=" s (7 days)")  # durations, s
MAX_THREADS = min(1024, 4 * (os.cpu_count() or 1))
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_LEVELS = 1000
MAX_BATCH_BYTES = 16 << 30  # one batch of float32 input images


def _max_bytes() -> int:
    """memory-stress buffers: at most half the physical memory (and 1 TiB); 256 MiB at least."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        phys = 32 << 30
    return max(256 << 20, min(1 << 40, phys // 2))


MAX_BYTES = _max_bytes()


def _fraction(v: Any) -> str | None:
    return None if v is None or 0.0 <= v <= 1.0 else "must be between 0 and 1"


_fraction.allowed = "[0, 1]"  # type: ignore[attr-defined]


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"

    check.allowed = " | ".join(choices)  # type: ignore[attr-defined]
    return check


def _check_device(v: str) -> str | None:
    if v in ("cpu", "cuda", "mps", "auto") or re.fullmatch(r"cuda:\d+", v):
        return None
    return "must be cpu, cuda, cuda:N, mps or auto"


def _check_dataset(v: str) -> str | None:
    if v == "synthetic":
        return None
    kind, sep, path = v.partition(":")
    if not sep or kind not in ("imagefolder", "cifar10", "mnist") or not path:
        return "must be synthetic, imagefolder:DIR, cifar10:DIR or mnist:DIR"
    if not os.path.isdir(os.path.expanduser(path)):
        return f"directory {path!r} does not exist (datasets are never downloaded)"
    return None


_ENDPOINT = re.compile(r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):(\d{1,5})$")


def _check_endpoint(v: str | None) -> str | None:
    if v is None:
        return None
    m = _ENDPOINT.fullmatch(v)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        return "must be HOST:PORT (the rendezvous on node 0, port 1-65535)"
    return None


def _check_weights(v: str | None) -> str | None:
    if v is None or os.path.isfile(os.path.expanduser(v)):
        return None
    return f"file {v!r} does not exist (a local state_dict file; weights are never downloaded)"


_check_device.allowed = "cpu | cuda | cuda:N | mps | auto"  # type: ignore[attr-defined]
_check_dataset.allowed = "synthetic | imagefolder:DIR | cifar10:DIR | mnist:DIR"  # type: ignore[attr-defined]
_check_weights.allowed = "an existing local file"  # type: ignore[attr-defined]


def parse_levels(v: Any) -> str:
    """``"0,0.5,1"`` (or a list) -> the same levels as a canonical comma string."""
    items = v if isinstance(v, list | tuple) else str(v).split(",")
    if len(items) > MAX_LEVELS:
        raise ValueError(f"has {len(items)} levels; at most {MAX_LEVELS}")
    levels = []
    for item in items:
        text = str(item).strip()
        try:
            x = float(text)
        except ValueError:
            raise ValueError(f"level {text!r} is not a number") from None
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"level {x:g} is not a utilisation fraction between 0 and 1")
        levels.append(x)
    if not levels:
        raise ValueError("needs at least one level")
    return ",".join(f"{x:g}" for x in levels)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_bytes(v: Any) -> int:
    """``268435456``, ``"256M"``, ``"1GiB"``, ``"512k"`` -> bytes (binary multiples)."""
    if isinstance(v, bool):
        raise ValueError("is not a size")
    if isinstance(v, int | float):
        n = v
        if n != n or n in (float("inf"), float("-inf")):
            raise ValueError(f"{v!r} is not a finite number of bytes")
    else:
        m = _SIZE.match(str(v))
        if not m:
            raise ValueError(f"{v!r} is not a size (e.g. 268435456, 256M, 1G)")
        n = float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_")
    if n < 1 or n != int(n):
        raise ValueError(f"{v!r} is not a positive whole number of bytes")
    return int(n)


def parse_buffer_bytes(v: Any) -> int:
    """:func:`parse_bytes`, at most :data:`MAX_BYTES` (half the physical memory)."""
    n = parse_bytes(v)
    if n > MAX_BYTES:
        raise ValueError(f"must be >= 1 and <= {MAX_BYTES} bytes ({MAX_BYTES / 2**30:.4g} GiB, half the memory)")
    return n


_COMMON: dict[str, _Param] = {
    "duration_s": _Param(None, float, "stop after this long (None = the workload's own end)", _UP_TO_A_WEEK,
                         unit="s"),
    "seed": _Param(0, int, "random seed (data, model initialisation, order)", _between(0, MAX_SEED)),
}

_CNN: dict[str, _Param] = {
    "epochs": _Param(None, int, "epochs to train (None = 3, or unlimited when steps or duration_s is set)",
                     _between(1, 100_000), unit="epochs"),
    "steps": _Param(None, int, "stop after this many training steps, warm-up excluded (None = not limited)",
                    _between(1, 10**9), unit="steps"),
    "batch_size": _Param(16, int, "images per training step", _between(1, 65536), unit="images"),
    "image_size": _Param(32, int, "input height and width", _between(8, 1024), unit="px"),
    "num_classes": _Param(10, int, "classes (the synthetic set's; file datasets bring their own)",
                          _between(2, 100_000), unit="classes"),
    "train_size": _Param(512, int, "generated training images (synthetic dataset)", _between(2, 10**7),
                         unit="images"),
    "val_size": _Param(128, int, "generated validation images (synthetic dataset)", _between(1, 10**7),
                       unit="images"),
    "limit": _Param(0, int, "file datasets: use at most this many images of each split (0 = all)",
                    _between(0, 10**9), unit="images"),
    "device": _Param("cpu", str, "where to train (auto: cuda, else mps, else cpu)", _check_device),
    "optimizer": _Param("sgd", str, "optimizer (sgd with momentum 0.9)", _one_of("sgd", "adam", "adamw")),
    "lr": _Param(None, float, "learning rate (None = 0.01 for sgd, 0.001 for adam/adamw)",
                 _between(0, 10, lo_open=True)),
    "lr_schedule": _Param("constant", str, "constant, or cosine: decay from lr to 0 over the planned steps "
                          "(steps, else epochs; needs one of them)", _one_of("constant", "cosine")),
    "threads": _Param(0, int, "torch.set_num_threads (0 = torch's default)", _between(0, MAX_THREADS),
                      unit="threads"),
    "amp": _Param(False, bool, "mixed precision (float16 on cuda/mps, bfloat16 on cpu)"),
    "channels_last": _Param(False, bool, "channels-last memory format"),
    "freeze_base": _Param(False, bool, "transfer mode: freeze the convolutional base, train only the classifier head"),
    "weights": _Param(None, str, "local state_dict file to start from (None = random initialisation; "
                      "never downloaded)", _check_weights),
    "dataset": _Param("synthetic", str, "images to train on: generated gratings, or local files (never downloaded)",
                      _check_dataset),
    "eval_every": _Param(1, int, "evaluate on the validation set every N epochs (and at the end)",
                         _between(1, 100_000), unit="epochs"),
    "warmup_steps": _Param(2, int, "training steps in the warmup phase, excluded from images/s", _between(0, 100_000),
                           unit="steps"),
    "nproc_per_node": _Param(1, int, "training processes on this node; > 1 (or nnodes > 1): DistributedDataParallel "
                                     "under torchrun, one shard of the data each", _between(1, 256), unit="processes"),
    "nnodes": _Param(1, int, "nodes in the distributed run (each runs calibrate run with its node_rank)",
                     _between(1, 1024), unit="nodes"),
    "node_rank": _Param(0, int, "this node's rank, 0 .. nnodes-1", _between(0, 1023)),
    "rdzv_endpoint": _Param(None, str, "HOST:PORT of the rendezvous on node 0 (None = this machine only)",
                            _check_endpoint, nullable=True),
    "backend": _Param("auto", str, "torch.distributed backend (auto: nccl on cuda, else gloo)",
                      _one_of("auto", "gloo", "nccl")),
}

#: Per-model defaults that differ from the CNN defaults, and the smallest usable input (px).
CNN_PRESETS: dict[str, dict[str, Any]] = {
    # VGG has no batch norm: from scratch it does not leave chance within a few hundred steps of
    # SGD at 0.01; Adam at 1e-4 (the seed study used Adam) does (0.2 after ~1700 images at 32 px)
    "vgg16": {"min_size": 32, "optimizer": "adam", "lr": 1e-4,
              "description": "VGG-16 (138 M parameters at 1000 classes)"},
    "vgg19": {"min_size": 32, "optimizer": "adam", "lr": 1e-4, "description": "VGG-19"},
    "resnet18": {"min_size": 8, "description": "ResNet-18"},
    "resnet50": {"min_size": 8, "description": "ResNet-50"},
    "densenet121": {"min_size": 32, "description": "DenseNet-121"},
    "mobilenet_v2": {"min_size": 8, "description": "MobileNetV2"},
    "efficientnet_b0": {"min_size": 8, "description": "EfficientNet-B0"},
    "inception_v3": {
        "min_size": 75,
        "image_size": 299,
        "description": "Inception v3 (299 px input; at >= 299 px the aux head trains too: loss = main + 0.4 * aux)",
    },
    "tinyvgg": {"min_size": 8, "description": "a tiny VGG-like CNN (3 conv blocks, ~25 k parameters) for quick runs"},
}

_CAL_UTIL = _Param(1.0, float, "target utilisation of each worker (its busy fraction of each duty cycle)", _fraction)
_CAL_THREADS = _Param(0, int, "worker processes (0 = one per CPU core)", _between(0, MAX_THREADS),
                      unit="processes")
_CAL_CYCLE = _Param(0.1, float, "duty-cycle period (utilisation is exact over each period)",
                    _between(0.001, 60, unit=" s"), unit="s")
_CAL_DURATION = _Param(60.0, float, "how long (None = until stopped)", _UP_TO_A_WEEK, nullable=True, unit="s")

CALIBRATION: dict[str, tuple[str, dict[str, _Param]]] = {
    "idle": ("sleep: the machine's idle baseline (phase idle)", {
        "duration_s": _CAL_DURATION,
    }),
    "step": ("utilisation staircase, one phase level-X.XX per level, held hold_s each", {
        "levels": _Param("0,0.5,1", str, "comma-separated utilisation fractions, one phase each", parse=parse_levels,
                         allowed=f"1 to {MAX_LEVELS} values in [0, 1]"),
        "hold_s": _Param(10.0, float, "time at each level", _UP_TO_A_WEEK, unit="s"),
        "threads": _CAL_THREADS,
        "cycle_s": _CAL_CYCLE,
    }),
    "square": ("square wave between high and low utilisation (phases high / low)", {
        "period_s": _Param(10.0, float, "period of the wave", _between(0, 24 * 3600, lo_open=True, unit=" s (1 day)"),
                           unit="s"),
        "duty": _Param(0.5, float, "fraction of each period at high",
                       lambda v: None if 0 < v < 1 else "must be between 0 and 1 (exclusive)", allowed="(0, 1)"),
        "high": _Param(1.0, float, "utilisation in the high phase", _fraction),
        "low": _Param(0.0, float, "utilisation in the low phase", _fraction),
        "cycles": _Param(6, int, "periods to run (when duration_s is not set)", _between(1, 1_000_000),
                         unit="periods"),
        "threads": _CAL_THREADS,
        "cycle_s": _CAL_CYCLE,
    }),
    "cpu-stress": ("busy loops on every core at a target utilisation (phase stress)", {
        "duration_s": _CAL_DURATION,
        "threads": _CAL_THREADS,
        "utilisation": _CAL_UTIL,
        "cycle_s": _CAL_CYCLE,
    }),
    "gpu-stress": ("back-to-back matrix multiplications on a CUDA GPU at a target utilisation (phase stress)", {
        "duration_s": _CAL_DURATION,
        "utilisation": _CAL_UTIL,
        "size": _Param(4096, int, "matrix side n (n x n matrices)", _between(16, 32768), unit="elements"),
        "dtype": _Param("float16", str, "element type of the matrices", _one_of("float16", "bfloat16", "float32")),
        "device": _Param("cuda", str, "the GPU to load",
                         lambda v: None if re.fullmatch(r"cuda(:\d+)?", v) else "must be cuda or cuda:N",
                         allowed="cuda | cuda:N"),
        "cycle_s": _CAL_CYCLE,
    }),
    "memory-stress": ("memory-bandwidth load: workers copy buffers back and forth (phase stress)", {
        "duration_s": _CAL_DURATION,
        "bytes": _Param(268435456, int, "total buffer size (256M, 1G accepted)", parse=parse_buffer_bytes,
                        unit="bytes", allowed=f"[1, {MAX_BYTES}] (half the memory)"),
        "threads": _CAL_THREADS,
        "utilisation": _CAL_UTIL,
        "cycle_s": _CAL_CYCLE,
    }),
}

_COMMAND_DESC = "any command given after `--` (phase command; stopped at duration_s: SIGTERM, SIGKILL 5 s later)"

# Model names torchvision 0.29 knows; used only to word the error when torch is missing.
_TORCHVISION_NAMES = frozenset(
    """alexnet convnext_base convnext_large convnext_small convnext_tiny densenet121 densenet161
    densenet169 densenet201 efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3
    efficientnet_b4 efficientnet_b5 efficientnet_b6 efficientnet_b7 efficientnet_v2_l
    efficientnet_v2_m efficientnet_v2_s googlenet inception_v3 maxvit_t mnasnet0_5 mnasnet0_75
    mnasnet1_0 mnasnet1_3 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small regnet_x_16gf
    regnet_x_1_6gf regnet_x_32gf regnet_x_3_2gf regnet_x_400mf regnet_x_800mf regnet_x_8gf
    regnet_y_128gf regnet_y_16gf regnet_y_1_6gf regnet_y_32gf regnet_y_3_2gf regnet_y_400mf
    regnet_y_800mf regnet_y_8gf resnet101 resnet152 resnet18 resnet34 resnet50 resnext101_32x8d
    resnext101_64x4d resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5
    shufflenet_v2_x2_0 squeezenet1_0 squeezenet1_1 swin_b swin_s swin_t swin_v2_b swin_v2_s
    swin_v2_t vgg11 vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn vit_b_16 vit_b_32
    vit_h_14 vit_l_16 vit_l_32 wide_resnet101_2 wide_resnet50_2""".split()
)


def names() -> list[str]:
    """The named workloads (presets, calibration loads, command); any torchvision model is valid too."""
    return [*CNN_PRESETS, *CALIBRATION, "command"]


def _cnn_table(name: str) -> dict[str, _Param]:
    table = {**_COMMON, **_CNN}
    preset = CNN_PRESETS.get(name, {})
    size = preset.get("image_size", 224 if name.startswith(("vit_", "swin", "maxvit")) else 32)
    table["image_size"] = dataclasses.replace(table["image_size"], default=size,
                                              check=_between(preset.get("min_size", 8), 1024))
    for key in ("optimizer", "lr"):
        if key in preset:
            table[key] = dataclasses.replace(table[key], default=preset[key])
    return table


def _table(name: str) -> tuple[str, str, dict[str, _Param]]:
    """(category, description, parameter table) of a known name, or raise UnknownWorkload."""
    if name in CNN_PRESETS:
        return "cnn", f"train {CNN_PRESETS[name]['description']} (weights=None)", _cnn_table(name)
    if name in CALIBRATION:
        desc, table = CALIBRATION[name]
        return "calibration", desc, {**_COMMON, **table}
    if name == "command":
        return "command", _COMMAND_DESC, dict(_COMMON)
    known = ", ".join(names())
    try:
        import torchvision  # noqa: F401 - lazily: only to check a model name
        from torchvision import models
    except ImportError:
        if name in _TORCHVISION_NAMES:
            raise UnknownWorkload(
                f"workload {name!r} is a torchvision model but torch/torchvision are not installed: {TORCH_HINT}"
            ) from None
        raise UnknownWorkload(
            f"unknown workload {name!r}; known: {known} (torchvision models need {TORCH_HINT})"
        ) from None
    if name in models.list_models(module=models):
        return "cnn", f"train torchvision model {name} (weights=None)", _cnn_table(name)
    raise UnknownWorkload(
        f"unknown workload {name!r}; known: {known}, or any torchvision classification model"
    )


def get(name: str) -> WorkloadSpec:
    """The spec of workload ``name``; raises :class:`UnknownWorkload` (a ValueError)."""
    category, description, table = _table(name)
    return WorkloadSpec(
        name=name,
        description=description,
        params={k: p.default for k, p in table.items()},
        category=category,
        help={k: p.help for k, p in table.items()},
        units={k: p.unit for k, p in table.items()},
    )


def _allowed(p: _Param) -> str:
    text = p.allowed or getattr(p.check, "allowed", None) or ("true | false" if p.type is bool else "any")
    return f"{text} or none" if p.default is None or p.nullable else text


def parameters(name: str) -> list[ParamInfo]:
    """Every ``-p`` parameter of workload ``name``: type, default, unit, allowed range, meaning.

    The one source of what ``calibrate workloads`` shows; raises :class:`UnknownWorkload`.
    """
    _category, _description, table = _table(name)
    return [ParamInfo(name=k, type=p.type.__name__, default=p.default, unit=p.unit, range=_allowed(p),
                      meaning=p.help) for k, p in table.items()]


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _coerce(p: _Param, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if p.default is None or p.nullable:
            return None
        raise ValueError("cannot be empty")
    if p.parse is not None:
        return p.parse(value)
    if p.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (true/false)")
    if p.type is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if p.type is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        return x
    if not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a string")
    return str(value)


def validate_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """All parameters of ``name`` (defaults filled in), typed from the defaults.

    Strings from a command line are coerced (``"16"`` -> 16, ``"true"`` -> True, ``"none"``
    -> None for optional ones).  Raises ValueError with a one-line message on an unknown key
    or a bad value; :class:`UnknownWorkload` on an unknown name.
    """
    _category, _description, table = _table(name)
    return _validate(name, table, params)


def _validate(name: str, table: dict[str, _Param], params: dict[str, Any] | None) -> dict[str, Any]:
    given = dict(params or {})
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(table)}"
        )
    out: dict[str, Any] = {}
    for key, p in table.items():
        try:
            value = _coerce(p, given[key]) if key in given else p.default
            problem = p.check(value) if p.check is not None and value is not None else None
        except ValueError as exc:
            problem = str(exc)
            allowed = getattr(p.check, "range_text", None)
            if allowed:
                problem = f"{problem}; {allowed}"
        if problem:
            raise ValueError(f"{name}: {key}={_short_repr(given.get(key, p.default))}: {problem}")
        out[key] = value
    problem = _combined_problem(out)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return out


def _short_repr(value: Any, max_len: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def _combined_problem(p: dict[str, Any]) -> str | None:
    """Limits on parameters together: the planned length of a load, one batch's memory."""
    if p.get("duration_s") is None:
        planned = None
        if "levels" in p and "hold_s" in p:
            planned, what = len(p["levels"].split(",")) * p["hold_s"], "levels x hold_s"
        elif "cycles" in p and "period_s" in p:
            planned, what = p["cycles"] * p["period_s"], "cycles x period_s"
        if planned is not None and planned > MAX_DURATION_S:
            return f"{what} = {planned:g} s: must be <= {MAX_DURATION_S:g} s (7 days)"
    if "nnodes" in p:
        if p["node_rank"] >= p["nnodes"]:
            return f"node_rank={p['node_rank']} must be < nnodes={p['nnodes']}"
        if p["nnodes"] > 1 and not p["rdzv_endpoint"]:
            return "nnodes > 1 needs rdzv_endpoint=HOST:PORT (node 0's address, the same on every node)"
        if p["backend"] == "nccl" and not str(p.get("device", "")).startswith(("cuda", "auto")):
            return "backend=nccl needs device=cuda (or auto); use gloo on cpu"
    if p.get("lr_schedule") == "cosine" and p.get("steps") is None and p.get("epochs") is None:
        return "lr_schedule=cosine needs steps or epochs (the planned length of the decay)"
    if "batch_size" in p and "image_size" in p:
        batch = p["batch_size"] * 3 * p["image_size"] ** 2 * 4
        if batch > MAX_BATCH_BYTES:
            return (f"batch_size={p['batch_size']} x image_size={p['image_size']}: one batch of images would take "
                    f"{batch / 2**30:.4g} GiB; must be <= {MAX_BATCH_BYTES >> 30} GiB")
    return None


def distributed(params: dict[str, Any]) -> bool:
    """Whether a CNN run is data-parallel over several processes (launched by torchrun)."""
    return int(params.get("nproc_per_node", 1) or 1) > 1 or int(params.get("nnodes", 1) or 1) > 1


def _argv(name: str, params: dict[str, Any], command: list[str] | None) -> list[str]:
    argv = [sys.executable, "-m", "workloads", name, "--params", json.dumps(params)]
    if distributed(params):  # torchrun starts nproc_per_node workers, each `python -m workloads ...`
        # one node: torchrun --standalone's rendezvous (a c10d store on a free port), pinned to 127.0.0.1
        rdzv = (["--rdzv-backend", "c10d", "--rdzv-endpoint", params["rdzv_endpoint"]] if params.get("rdzv_endpoint")
                else ["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", secrets.token_hex(8),
                      "--local-addr", "127.0.0.1"])
        argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(params["nproc_per_node"]),
                "--nnodes", str(params.get("nnodes", 1)), "--node-rank", str(params.get("node_rank", 0)), *rdzv,
                "--max-restarts", "0", "-m", "workloads", name, "--params", json.dumps(params)]
    if command:
        argv += ["--", *command]
    return argv


def command_for(name: str, params: dict[str, Any], command: list[str] | None = None) -> list[str]:
    """argv that runs workload ``name`` in its own process (``python -m workloads``).

    ``command`` (the user command of the ``command`` workload) is appended after ``--``.
    """
    full = validate_params(name, params)
    return _argv(name, {k: full[k] for k in params}, command)  # only what was asked; the child fills defaults again


@dataclass(frozen=True)
class PreparedWorkload:
    """A workload checked and ready to start: see :func:`prepare`."""

    name: str
    params: dict[str, Any]  # every parameter, validated, defaults filled in
    argv: list[str]  # runs it in its own process: python -m workloads NAME --params JSON [-- COMMAND]
    category: str  # "cnn" | "calibration" | "command"


def prepare(name: str, params: dict[str, Any] | None, command: list[str] | None = None) -> PreparedWorkload:
    """Validate ``params`` of workload ``name`` and build the argv that runs it.

    ``command`` is the user command of the ``command`` workload (required there, refused by
    every other workload).  Raises ValueError with a one-line message (:class:`UnknownWorkload`
    on an unknown name), as :func:`validate_params` does.
    """
    category, _description, table = _table(name)
    full = _validate(name, table, params)
    if category == "command" and not command:
        raise ValueError("the command workload needs a command after `--`")
    if category != "command" and command:
        raise ValueError(f"{name} takes no command after `--` (only the command workload does)")
    return PreparedWorkload(name=name, params=full, argv=_argv(name, full, command), category=category)
