"""Hostile dataset files: a CIFAR-10 batch can never run code, and every loader stays bounded.

The CIFAR-10 "python version" batches are pickles; :mod:`workloads.data` reads them with a
restricted unpickler (only the numpy array globals a real batch names) or reads the
"binary version" with no pickle at all.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workloads import data

from .test_workloads_data import write_cifar10

WORKLOADS = Path(data.__file__).parent


def _write_marker(path: str) -> None:  # what a payload would do; never called by the reader
    Path(path).write_text("pwned")


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Call:
    """Unpickles as ``func(*args)``: any importable callable a file names."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _cifar_dir(tmp_path: Path, batch: object, protocol: int) -> Path:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir(parents=True)
    with open(base / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    good = {b"labels": [1], b"data": np.zeros((1, 3072), np.uint8)}
    with open(base / "test_batch", "wb") as f:
        pickle.dump(good, f, protocol=protocol)
    return tmp_path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("payload", ["system", "write", "nested", "builtins_eval"])
def test_a_crafted_batch_is_refused_and_nothing_runs(tmp_path: Path, protocol: int, payload: str) -> None:
    marker = tmp_path / "PWNED"
    evil = {
        "system": _System(marker),
        "write": _Call(_write_marker, str(marker)),
        # a well-formed batch with the payload hidden among its entries
        "nested": {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _System(marker)},
        "builtins_eval": _Call(eval, f"open({str(marker)!r}, 'w').write('pwned')"),
    }[payload]
    root = _cifar_dir(tmp_path / "d", evil, protocol)
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch.*refused pickle") as err:
        data.read_cifar10(root)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        data.load_dataset(f"cifar10:{root}", image_size=32)
    assert not marker.exists()
    # the payload is real: plain pickle would have run it
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_only_plain_numeric_arrays_are_built(tmp_path: Path) -> None:
    obj = {b"data": np.array([[1, 2]], dtype=object), b"labels": [0]}
    with pytest.raises(ValueError, match="not a plain numeric type"):
        data.read_cifar10(_cifar_dir(tmp_path / "a", obj, 2))
    # numpy.ndarray named as a callable (ndarray(huge shape)) is not callable here
    huge = _Call(np.ndarray, (10**6, 10**6))
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch") as err:
        data.read_cifar10(_cifar_dir(tmp_path / "b", huge, 2))
    assert "\n" not in str(err.value)
    wrong = {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}
    with pytest.raises(ValueError, match="expected uint8"):
        data.read_cifar10(_cifar_dir(tmp_path / "c", wrong, 2))


def test_a_memo_index_bomb_is_refused_before_unpickling(tmp_path: Path) -> None:
    """LONG_BINPUT 2**31: the C unpickler would zero a 16 GiB memo table for a 9-byte file."""
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    (base / "data_batch_1").write_bytes(b"\x80\x02}r" + struct.pack("<I", 2**31) + b".")
    (base / "test_batch").write_bytes(b"\x80\x02}.")
    with pytest.raises(ValueError, match="memo index"):
        data.read_cifar10(tmp_path)


def test_an_oversized_batch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path, n_train=20, n_test=10, batches=1)
    monkeypatch.setattr(data, "MAX_CIFAR_BATCH_BYTES", 10_000)
    with pytest.raises(ValueError, match="more than a CIFAR-10 batch can hold"):
        data.read_cifar10(tmp_path)


def _py2_batch(x: np.ndarray, labels: list[int]) -> bytes:
    """A batch as the official archive ships it: Python 2 cPickle, protocol 2, ``str`` (not
    ``bytes``) opcodes and the numpy 1.x global ``numpy.core.multiarray._reconstruct``."""

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 str
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)

    def i(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + s(b"b") + b"\x87R"
        + b"(K\x01" + i(x.shape[0]) + i(x.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
        + b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        + b"\x89" + s(x.tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    names = b"](" + b"".join(s(b"img_%d.png" % k) for k in range(len(labels))) + b"e"
    return (b"\x80\x02}(" + s(b"batch_label") + s(b"training batch 1 of 1") + s(b"labels") + label_list
            + s(b"data") + array + s(b"filenames") + names + b"u.")


def test_the_shipped_python2_format_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    x, y = rng.integers(0, 256, (7, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 7)]
    xt, yt = rng.integers(0, 256, (3, 3072), dtype=np.uint8), [3, 1, 4]
    (base / "data_batch_1").write_bytes(_py2_batch(x, y))
    (base / "test_batch").write_bytes(_py2_batch(xt, yt))
    tx, ty, vx, vy = data.read_cifar10(tmp_path)
    np.testing.assert_array_equal(tx.reshape(7, 3072), x)
    np.testing.assert_array_equal(ty, y)
    np.testing.assert_array_equal(vx.reshape(3, 3072), xt)
    np.testing.assert_array_equal(vy, yt)


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_well_formed_batches_written_by_python3_load(tmp_path: Path, protocol: int) -> None:
    x = np.arange(2 * 3072, dtype=np.uint64).astype(np.uint8).reshape(2, 3072)
    root = _cifar_dir(tmp_path, {b"data": x, b"labels": [9, 0], b"filenames": [b"a", b"b"]}, protocol)
    tx, ty, vx, vy = data.read_cifar10(root)
    np.testing.assert_array_equal(tx.reshape(2, 3072), x)
    assert ty.tolist() == [9, 0] and vx.shape == (1, 3, 32, 32) and vy.tolist() == [1]


def _write_bin(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.write_bytes(np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), 3072)], axis=1).tobytes())


def test_the_binary_version_is_read_without_pickle(tmp_path: Path) -> None:
    x, y, xt, yt = write_cifar10(tmp_path / "py", batches=2)
    base = tmp_path / "bin" / "cifar-10-batches-bin"
    base.mkdir(parents=True)
    _write_bin(base / "data_batch_1.bin", x[:20], y[:20])
    _write_bin(base / "data_batch_2.bin", x[20:], y[20:])
    _write_bin(base / "test_batch.bin", xt, yt)
    (base / "batches.meta.txt").write_text("airplane\n")
    got = data.read_cifar10(tmp_path / "bin")
    want = data.read_cifar10(tmp_path / "py")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # both versions side by side: the binary one is read, a hostile pickle beside it never
    (base.parent / "cifar-10-batches-py").mkdir()
    (base.parent / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(_System(tmp_path / "PWNED")))
    (base.parent / "cifar-10-batches-py" / "test_batch").write_bytes(b"junk")
    np.testing.assert_array_equal(data.read_cifar10(tmp_path / "bin")[0], want[0])
    assert not (tmp_path / "PWNED").exists()
    train, val = data.load_dataset(f"cifar10:{tmp_path / 'bin'}", image_size=32)
    assert len(train) == 40 and len(val) == 10
    (base / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="3073-byte CIFAR-10 records"):
        data.read_cifar10(tmp_path / "bin")
    _write_bin(base / "test_batch.bin", xt, np.full(len(xt), 200))
    with pytest.raises(ValueError, match="labels outside 0..9"):
        data.read_cifar10(tmp_path / "bin")


_GOOD = pickle.dumps({b"batch_label": b"b", b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)},
                     protocol=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(0, len(_GOOD) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: _GOOD[: t[0]] + t[1] + _GOOD[t[0] + len(t[1]):]),
    st.integers(0, len(_GOOD)).map(lambda n: _GOOD[:n]),
))
def test_fuzzed_batches_load_or_are_one_line_value_errors(tmp_path_factory, raw: bytes) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "data_batch_1").write_bytes(raw)
    (root / "test_batch").write_bytes(_GOOD)
    try:
        tx, ty, _vx, _vy = data.read_cifar10(root)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert tx.dtype == np.uint8 and tx.shape[1:] == (3, 32, 32) and len(ty) == len(tx)


def test_no_loader_in_workloads_unpickles_freely_evals_or_imports_by_name() -> None:
    hits = []
    for path in sorted(WORKLOADS.glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"pickle\.loads?\(|\bUnpickler\(|(?<![.\w])(?:eval|exec)\(|import_module|__import__"
                         r"|np\.load\(|allow_pickle\s*=\s*True|marshal\.|shelve\.", code):
                hits.append(f"{path.name}:{n}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                hits.append(f"{path.name}:{n}: {line.strip()}")
    assert not hits, hits
