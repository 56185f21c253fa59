"""Image sets for CNN training: a generated learnable set and local file formats.

Everything here is numpy only (PIL for image folders, imported when used), so it loads
without torch.  An :class:`ImageSet` hands out batches as float32 arrays ``N, C, H, W``,
normalised per channel, at the set's own size (``size`` px); the trainer resizes on the
device when the model wants another size.

* ``synthetic`` -- :class:`SyntheticImages`: each class is a sinusoidal grating with its own
  orientation, spatial frequency and colour; every image gets a random phase, amplitude,
  small orientation/frequency jitter and Gaussian pixel noise.  Deterministic from the seed
  (and independent of batch composition), learnable by a small CNN in a few hundred steps.
* ``cifar10:DIR`` -- CIFAR-10 in either official format, found in DIR/cifar-10-batches-bin,
  DIR/cifar-10-batches-py or DIR itself: the "binary version" (``data_batch_1.bin`` ..
  ``data_batch_5.bin``, ``test_batch.bin``: records of 1 label byte + 3072 pixel bytes),
  preferred when both are present, or the "python version" (``data_batch_1`` ..
  ``data_batch_5``, ``test_batch``).  The python batches are pickles, read by a restricted
  unpickler that builds plain containers and uint8 numpy arrays only: any other global a
  file names (``os.system``, ...) is refused, so a crafted batch cannot run code.
* ``mnist:DIR`` -- the MNIST idx files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally ``.gz``) in DIR,
  DIR/raw or DIR/MNIST/raw.
* ``imagefolder:DIR`` -- one sub-folder per class (torchvision ImageFolder layout); DIR/train
  and DIR/val (or test) when present, else a seeded 80/20 split.

Nothing is ever downloaded: a missing file is a ValueError naming what was expected.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import pickletools
import re
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "ImageSet",
    "SyntheticImages",
    "ArrayImages",
    "load_dataset",
    "read_cifar10",
    "read_mnist",
    "read_idx",
    "read_imagefolder",
]

TRAIN, VAL = 1, 2  # split ids used in seeds

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageSet:
    """A labelled image set; ``batch(indices)`` -> float32 ``(N, C, size, size)``."""

    labels: np.ndarray  # int64, one per image
    num_classes: int
    channels: int
    size: int  # native height = width, px

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of the whole set as float32 at its own size."""
        return len(self) * self.channels * self.size * self.size * 4

    def all(self) -> np.ndarray:
        """The whole set as one float32 array (mind :attr:`nbytes`)."""
        return self.batch(np.arange(len(self)))


class SyntheticImages(ImageSet):
    """Generated class-dependent gratings plus noise (see the module docstring).

    ``noise`` is the pixel noise SD relative to the unit grating amplitude.
    """

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        size: int = 32,
        seed: int = 0,
        split: int = TRAIN,
        noise: float = 1.0,
    ) -> None:
        if n < 1 or num_classes < 2 or size < 4:
            raise ValueError("synthetic set needs n >= 1, num_classes >= 2, size >= 4 px")
        self.num_classes, self.channels, self.size = num_classes, 3, size
        self.seed, self.split, self.noise = seed, split, noise
        cls = np.random.default_rng([seed, 0x5EED])
        k = num_classes
        # Orientations evenly spread over 180 deg (in a seeded order), frequencies 1.5-4.5
        # cycles per image, colours random unit vectors: classes differ on three cues.
        self.angle = np.pi * (cls.permutation(k) + cls.uniform(-0.15, 0.15, k)) / k
        self.freq = cls.uniform(1.5, 4.5, k)
        colour = cls.normal(size=(k, 3))
        self.colour = colour / np.linalg.norm(colour, axis=1, keepdims=True)
        order = np.random.default_rng([seed, split, 0x1AB]).permutation(n)
        self.labels = (order % k).astype(np.int64)
        coords = (np.arange(size, dtype=np.float64) + 0.5) / size
        self._v, self._u = np.meshgrid(coords, coords, indexing="ij")

    def batch(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), 3, self.size, self.size), dtype=np.float32)
        for j, i in enumerate(idx):
            rng = np.random.default_rng([self.seed, self.split, int(i)])
            c = int(self.labels[i])
            theta = self.angle[c] + rng.normal(0.0, 0.05)
            f = self.freq[c] * rng.uniform(0.9, 1.1)
            phase = rng.uniform(0.0, 2.0 * np.pi)
            amp = rng.uniform(0.6, 1.2)
            wave = np.sin(2.0 * np.pi * f * (self._u * np.cos(theta) + self._v * np.sin(theta)) + phase)
            img = amp * self.colour[c][:, None, None] * wave[None] + 0.3 * self.colour[c][:, None, None]
            img += rng.normal(0.0, self.noise, size=img.shape)
            out[j] = img
        return out


class ArrayImages(ImageSet):
    """Images held as uint8 ``(N, C, H, W)``, normalised per channel on the way out."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        if images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"expected square images N,C,H,W, got shape {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(labels) and (int(np.min(labels)) < 0 or int(np.max(labels)) >= num_classes):
            raise ValueError(f"labels outside 0..{num_classes - 1} (min {np.min(labels)}, max {np.max(labels)})")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.channels, self.size = int(images.shape[1]), int(images.shape[2])
        self._mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1) * 255.0
        self._scale = 1.0 / (np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1) * 255.0)

    def batch(self, indices: np.ndarray) -> np.ndarray:
        x = self.images[np.asarray(indices, dtype=np.int64)].astype(np.float32)
        return (x - self._mean) * self._scale


# --------------------------------------------------------------------------- file formats


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """One IDX file (MNIST format, optionally gzipped) as a uint8 array of its shape."""
    path = Path(path)
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    count = int(np.prod(dims)) if dims else 0
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != count:
        raise ValueError(f"{path}: IDX header says {dims} ({count} bytes) but holds {data.size} bytes")
    return data.reshape(dims)


def _find(dirs: list[Path], stems: list[str], what: str, where: str) -> Path:
    for d in dirs:
        for stem in stems:
            for suffix in ("", ".gz"):
                p = d / (stem + suffix)
                if p.is_file():
                    return p
    raise ValueError(
        f"{what} not found in {where} (expected {stems[0]}[.gz]; datasets are never downloaded)"
    )


def read_mnist(directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels): images uint8 (N, 1, 28, 28)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ValueError(f"MNIST directory {str(root)!r} does not exist")
    dirs = [root, root / "raw", root / "MNIST" / "raw"]
    out = []
    for split in ("train", "t10k"):
        images = read_idx(_find(dirs, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"], f"MNIST {split} images", str(root)))
        labels = read_idx(_find(dirs, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"], f"MNIST {split} labels", str(root)))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"MNIST {split} files in {root}: images {images.shape} and labels {labels.shape} do not match")
        out += [images[:, None, :, :], labels.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


#: the largest CIFAR batch file read (an official batch is ~31 MB: 10000 images of 3073 bytes)
MAX_CIFAR_BATCH_BYTES = 64 * 2**20
CIFAR_RECORD = 1 + 3072  # binary version: label byte, then 1024 red, 1024 green, 1024 blue


class _NdarrayType:
    """Stands for ``numpy.ndarray`` inside a restricted pickle: usable only as the type
    argument of ``_reconstruct``, never callable (so ``ndarray(huge_shape)`` cannot be built)."""

    __slots__ = ()


_NDARRAY = _NdarrayType()
_DTYPE_NAME = re.compile(r"^(?:[uif][1248]|b1)$")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` as a pickled ndarray calls it: an empty array
    that the pickle's state then fills (its data must be in the file, so size is bounded)."""
    if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
        raise pickle.UnpicklingError("unexpected ndarray reconstruction arguments")
    return _numpy_reconstruct()(np.ndarray, (0,), b"b")


def _safe_dtype(name, align=0, copy=1):
    """``numpy.dtype`` for plain numeric element types only (no object dtypes)."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not isinstance(name, str) or not _DTYPE_NAME.match(name):
        raise pickle.UnpicklingError(f"dtype {str(name)[:20]!r} is not a plain numeric type")
    return np.dtype(name, bool(align), bool(copy))


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode(str, "latin1")``: how Python 3 writes ``bytes`` in pickle protocol <= 2
    (a re-saved CIFAR batch); nothing else of ``_codecs`` is admitted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode arguments")
    return text.encode("latin-1")


#: the only globals a CIFAR-10 python batch names (module, name) -> what they stand for
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,  # as shipped (numpy 1.x, Python 2)
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,  # re-saved with numpy >= 2
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _CifarUnpickler(pickle.Unpickler):
    """Plain containers, strings, numbers and uint8-style numpy arrays; nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(
                f"refused pickle global {str(module)[:60]!r}.{str(name)[:60]!r}"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


#: a pickle's memo indices (a real batch uses a few dozen); the C unpickler sizes its memo
#: table by the largest index it is told, so a tiny file could otherwise claim gigabytes
MAX_PICKLE_MEMO = 1 << 20
_REFUSED_OPS = {"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
                "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"}


def _prescan(raw: bytes) -> None:
    """Walk the opcodes without running any (pickletools): refuse the ones a CIFAR batch never
    uses, memo indices past :data:`MAX_PICKLE_MEMO`, and lengths beyond the file's end."""
    for op, arg, _pos in pickletools.genops(io.BytesIO(raw)):
        if op.name in _REFUSED_OPS:
            raise pickle.UnpicklingError(f"refused pickle opcode {op.name}")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > MAX_PICKLE_MEMO:
            raise pickle.UnpicklingError(f"pickle memo index {arg} is too large")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def _check_size(path: Path) -> int:
    size = path.stat().st_size
    if size > MAX_CIFAR_BATCH_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than a CIFAR-10 batch can hold "
                         f"(limit {MAX_CIFAR_BATCH_BYTES} bytes)")
    return size


def _cifar_labels(path: Path, labels: np.ndarray, n: int) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{path}: {n} images but {labels.shape} labels")
    if n and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ValueError(f"{path}: CIFAR-10 labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return labels


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One "python version" batch through :class:`_CifarUnpickler` (never plain pickle)."""
    _check_size(path)
    try:
        raw = path.read_bytes()
        _prescan(raw)
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: "
                         f"{_one_line(exc)})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (holds a {type(d).__name__}, not a dict)")
    d = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: CIFAR-10 batch without data/labels entries")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"shape {data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: CIFAR-10 data is {what}, expected uint8 (N, 3072)")
    try:
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{path}: CIFAR-10 labels are not a list of integers") from None
    return data.reshape(-1, 3, 32, 32), _cifar_labels(path, labels, len(data))


def _cifar_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One "binary version" batch: records of 1 label byte + 3072 pixel bytes."""
    size = _check_size(path)
    if size == 0 or size % CIFAR_RECORD:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    rec = np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    return np.ascontiguousarray(rec[:, 1:]).reshape(-1, 3, 32, 32), _cifar_labels(path, labels, len(rec))


def _batch_number(path: Path) -> int:
    return int(re.search(r"\d+", path.name).group())  # type: ignore[union-attr]


def _cifar_files(base: Path, suffix: str) -> tuple[list[Path], Path] | None:
    pattern = re.compile(r"^data_batch_\d+" + re.escape(suffix) + "$")
    train = sorted((p for p in base.glob("data_batch_*") if pattern.match(p.name) and p.is_file()),
                   key=_batch_number)
    test = base / ("test_batch" + suffix)
    return (train, test) if train and test.is_file() else None


def read_cifar10(directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels): images uint8 (N, 3, 32, 32).

    Reads the binary version (``*.bin``, no pickle involved) when present, else the python
    version through a restricted unpickler (see the module docstring); batch files over
    :data:`MAX_CIFAR_BATCH_BYTES` are refused.  Any bad file is a one-line ValueError.
    """
    root = Path(directory).expanduser()
    found = None
    for base in (root / "cifar-10-batches-bin", root / "cifar-10-batches-py", root):
        if not base.is_dir():
            continue
        for suffix, reader in ((".bin", _cifar_bin_batch), ("", _cifar_batch)):
            files = _cifar_files(base, suffix)
            if files is not None:
                found = files, reader
                break
        if found:
            break
    if found is None:
        raise ValueError(
            f"CIFAR-10 batches not found in {str(root)!r} (expected data_batch_1..5 and test_batch "
            "from cifar-10-python.tar.gz, or data_batch_1..5.bin and test_batch.bin from "
            "cifar-10-binary.tar.gz; datasets are never downloaded)"
        )
    (train_files, test_file), reader = found
    parts = [reader(p) for p in train_files]
    x_test, y_test = reader(test_file)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test


_IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}


def _folder_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (p, c)
        for c, name in enumerate(classes)
        for p in sorted((root / name).rglob("*"))
        if p.suffix.lower() in _IMG_EXT and p.is_file()
    ]
    return classes, files


def _decode(files: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, (path, _c) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                x[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read image ({exc})") from None
    return x, np.array([c for _p, c in files], dtype=np.int64)


def read_imagefolder(
    directory: str | os.PathLike[str], size: int, seed: int = 0, limit: int = 0
) -> tuple[list[str], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(classes, (train_x, train_y), (val_x, val_y)) with images uint8 (N, 3, size, size)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist")
    val_dir = next((root / n for n in ("val", "valid", "validation", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        classes, train = _folder_files(root / "train")
        val_classes, val = _folder_files(val_dir)
        if val_classes != classes:
            raise ValueError(f"{root}: class folders of train and {val_dir.name} differ")
    else:
        classes, files = _folder_files(root)
        order = np.random.default_rng([seed, 0xF01D]).permutation(len(files))
        n_val = max(1, len(files) // 5)
        val = [files[i] for i in sorted(order[:n_val])]
        train = [files[i] for i in sorted(order[n_val:])]
    if len(classes) < 2 or not train or not val:
        raise ValueError(
            f"{root}: expected one sub-folder per class (at least 2) holding images "
            f"({', '.join(sorted(_IMG_EXT))}); found {len(classes)} classes, {len(train) + len(val)} images"
        )
    train, val = _limit(train, limit, seed, TRAIN), _limit(val, limit, seed, VAL)
    return classes, _decode(train, size), _decode(val, size)


def _limit(items, limit: int, seed: int, split: int):
    """At most ``limit`` items (a seeded random subset in original order); all when 0."""
    n = len(items)
    if not limit or limit >= n:
        return items
    keep = np.sort(np.random.default_rng([seed, split, 0x11]).choice(n, size=limit, replace=False))
    if isinstance(items, list):
        return [items[i] for i in keep]
    return keep


def _subset(x: np.ndarray, y: np.ndarray, limit: int, seed: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    keep = _limit(np.arange(len(y)), limit, seed, split)
    return x[keep], y[keep]


def load_dataset(
    spec: str,
    *,
    image_size: int,
    num_classes: int = 10,
    train_size: int = 512,
    val_size: int = 128,
    limit: int = 0,
    seed: int = 0,
) -> tuple[ImageSet, ImageSet]:
    """(train, validation) sets for a ``dataset`` parameter value; ValueError if unusable."""
    if spec == "synthetic":
        return (
            SyntheticImages(train_size, num_classes, image_size, seed, TRAIN),
            SyntheticImages(val_size, num_classes, image_size, seed, VAL),
        )
    kind, _, path = spec.partition(":")
    if kind in ("cifar10", "mnist"):  # 10 classes each, with their own train / test files
        read, mean, std = {"cifar10": (read_cifar10, CIFAR_MEAN, CIFAR_STD),
                           "mnist": (read_mnist, MNIST_MEAN, MNIST_STD)}[kind]
        xt, yt, xv, yv = read(path)
        train, val, k = _subset(xt, yt, limit, seed, TRAIN), _subset(xv, yv, limit, seed, VAL), 10
    elif kind == "imagefolder":
        classes, train, val = read_imagefolder(path, image_size, seed, limit)
        k, mean, std = len(classes), IMAGENET_MEAN, IMAGENET_STD
    else:
        raise ValueError(f"dataset {spec!r}: expected synthetic, imagefolder:DIR, cifar10:DIR or mnist:DIR")
    return ArrayImages(*train, k, mean, std), ArrayImages(*val, k, mean, std)
