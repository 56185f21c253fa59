"""workloads.data: the generated set and the local CIFAR-10 / MNIST / image-folder readers."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from workloads import data


def write_cifar10(root: Path, n_train: int = 20, n_test: int = 10, batches: int = 2, seed: int = 0) -> tuple:
    """Write CIFAR-10 "python version" batches (pickled dicts with bytes keys, as shipped)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    xs, ys = [], []
    for b in range(1, batches + 1):
        x = rng.integers(0, 256, size=(n_train, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n_train)]
        with open(base / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"batch_label": f"training batch {b} of {batches}".encode(), b"labels": y,
                         b"data": x, b"filenames": [b"x.png"] * n_train}, f, protocol=2)
        xs.append(x)
        ys += y
    xt = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    yt = [int(v) for v in rng.integers(0, 10, size=n_test)]
    with open(base / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": yt, b"data": xt,
                     b"filenames": [b"t.png"] * n_test}, f, protocol=2)
    return np.concatenate(xs), np.array(ys), xt, np.array(yt)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the bytes."""
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, n_train: int = 30, n_test: int = 12, compress: bool = True, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test),
    }
    for name, arr in arrays.items():
        write_idx(raw / name, arr, compress)
    return tuple(arrays.values())


def test_synthetic_deterministic_and_balanced():
    a = data.SyntheticImages(40, num_classes=10, size=16, seed=3)
    b = data.SyntheticImages(40, num_classes=10, size=16, seed=3)
    x = a.batch(np.arange(40))
    assert x.shape == (40, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x, b.batch(np.arange(40)))
    np.testing.assert_array_equal(np.bincount(a.labels, minlength=10), [4] * 10)
    # a sample does not depend on which batch it is drawn in
    np.testing.assert_array_equal(a.batch(np.array([7, 2]))[0], x[7])
    other = data.SyntheticImages(40, num_classes=10, size=16, seed=4).batch(np.arange(40))
    assert not np.allclose(other, x)
    val = data.SyntheticImages(40, num_classes=10, size=16, seed=3, split=data.VAL)
    assert not np.allclose(val.batch(np.arange(40)), x)  # validation images are new images
    np.testing.assert_array_equal(val.angle, a.angle)  # ... of the same classes


def test_synthetic_classes_are_separable_by_their_cues():
    """Nearest class mean of the images' 2-D power spectra + mean colour beats chance by far."""
    train = data.SyntheticImages(400, num_classes=10, size=32, seed=1)
    val = data.SyntheticImages(200, num_classes=10, size=32, seed=1, split=data.VAL)

    def features(ds):
        x = ds.all()
        spec = np.abs(np.fft.rfft2(x.mean(axis=1))).reshape(len(x), -1)
        return np.concatenate([spec / spec.sum(1, keepdims=True) * 50, x.mean(axis=(2, 3))], axis=1)

    ft, fv = features(train), features(val)
    means = np.stack([ft[train.labels == c].mean(0) for c in range(10)])
    pred = np.argmin(((fv[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == val.labels).mean() > 0.5


def test_cifar10_reader(tmp_path):
    x, y, xt, yt = write_cifar10(tmp_path)
    tx, ty, vx, vy = data.read_cifar10(tmp_path)
    assert tx.shape == (40, 3, 32, 32) and vx.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(ty, y)
    np.testing.assert_array_equal(vy, yt)
    # row layout: 1024 red, 1024 green, 1024 blue, each row-major 32 x 32
    np.testing.assert_array_equal(tx[5, 1, 2, 3], x[5, 1024 + 2 * 32 + 3])
    train, val = data.load_dataset(f"cifar10:{tmp_path}", image_size=32, limit=7)
    assert len(train) == 7 and len(val) == 7 and train.num_classes == 10
    b = train.batch(np.arange(3))
    assert b.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(b.mean(axis=(0, 2, 3)), ((train.images[:3] / 255.0).mean(axis=(0, 2, 3)) - data.CIFAR_MEAN) / data.CIFAR_STD, rtol=1e-5)


def test_mnist_reader_plain_and_gz(tmp_path):
    for compress in (True, False):
        root = tmp_path / ("gz" if compress else "plain")
        xi, yi, ti, tl = write_mnist(root, compress=compress)
        tx, ty, vx, vy = data.read_mnist(root)
        assert tx.shape == (30, 1, 28, 28) and vx.shape == (12, 1, 28, 28)
        np.testing.assert_array_equal(tx[:, 0], xi)
        np.testing.assert_array_equal(vy, tl)
    train, val = data.load_dataset(f"mnist:{tmp_path / 'gz'}", image_size=32)
    assert train.channels == 1 and train.size == 28 and len(val) == 12


def test_missing_or_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="never downloaded") as err:
        data.read_cifar10(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        data.read_mnist(tmp_path)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # says 5 bytes, holds 3
    with pytest.raises(ValueError, match="holds 3 bytes"):
        data.read_idx(bad)
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        data.read_cifar10(tmp_path)


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "emu"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    train, val = data.load_dataset(f"imagefolder:{tmp_path}", image_size=16, seed=1)
    assert train.num_classes == 3 and len(train) + len(val) == 15 and len(val) == 3
    assert train.images.shape[1:] == (3, 16, 16)
    with pytest.raises(ValueError, match="one sub-folder per class"):
        data.load_dataset(f"imagefolder:{tmp_path / 'cat'}", image_size=16)
