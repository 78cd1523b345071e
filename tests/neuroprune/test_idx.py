"""Tests of neuroprune.idx (IDX files, Fashion-MNIST) and neuroprune.resize.

Every test writes its own tiny IDX files; none needs the dataset-fashion-mnist package."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from neuroprune import data, idx
from neuroprune.errors import DataError
from neuroprune.resize import resize_dataset, resize_images


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(dtype).tobytes()


def write_set(folder: Path, n_train: int = 60, n_test: int = 20, side: int = 6, gz: bool = True,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Four IDX files of a 3-class set whose class is the brightness of the image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n, dtype=np.uint8) % 3
        x = (rng.integers(0, 60, size=(n, side, side)) + 90 * y[:, None, None]).astype(np.uint8)
        arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"] = x, y
    for name, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return arrays


def test_read_idx_plain_and_gzip_give_the_stored_array(tmp_path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    (tmp_path / "a").write_bytes(idx_bytes(array, 0x0C))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array, 0x0C)))
    for path in (tmp_path / "a", tmp_path / "a.gz"):
        read = idx.read_idx(path, ndim=3)
        assert read.dtype == np.int32 and read.dtype.isnative
        np.testing.assert_array_equal(read, array)
    floats = np.linspace(-1, 1, 5, dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "f"), floats)


@pytest.mark.parametrize("content, match", [
    (b"\x00\x00\x08", "not an IDX file"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "not an IDX file"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "not an IDX file"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "1 dimensions, expected 3"),
    (b"\x00\x00\x08\x03" + struct.pack(">2I", 2, 2), "header is truncated"),
    (b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 2, 2), "every dimension must be"),
    # header promises 2x1000x1000 bytes, file holds 8: refused before reading or allocating
    (b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 1000, 1000) + b"12345678", "file holds 24 bytes"),
    (b"\x00\x00\x08\x03" + struct.pack(">3I", 1, 2, 2) + b"12345", "truncated or damaged"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_refuses_bad_headers_and_sizes(tmp_path, content, match, gz) -> None:
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=match) as info:
        idx.read_idx(path, ndim=3)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_idx_refuses_corrupt_gzip(tmp_path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 2, 2), np.uint8)))[:-9] + b"\x00" * 9)
    with pytest.raises(DataError, match="broken.gz"):
        idx.read_idx(path, ndim=3)


@pytest.mark.parametrize("layout, gz", [("flat", True), ("raw", False)])
def test_idx_folder_loads_as_dataset_through_load(tmp_path, layout, gz) -> None:
    folder = tmp_path / "MyMNIST"
    arrays = write_set(folder / "raw" if layout == "raw" else folder, gz=gz)
    ds = data.load(str(folder), seed=3)
    assert ds.name == "MyMNIST" and ds.num_classes == 3 and ds.input_shape == (1, 6, 6)
    # the t10k files are the test split, unshuffled; pixels / 255
    np.testing.assert_allclose(ds.x_test[:, 0], arrays["t10k-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    # train + val are exactly the training files, stratified 15 % validation
    assert len(ds.y_train) + len(ds.y_val) == 60 and np.bincount(ds.y_val).tolist() == [3, 3, 3]
    both = np.concatenate([ds.x_train, ds.x_val])[:, 0]
    raw = arrays["train-images-idx3-ubyte"] / np.float32(255.0)
    assert sorted(r.tobytes() for r in both) == sorted(r.astype(np.float32).tobytes() for r in raw)
    again = data.load(str(folder), seed=3)
    np.testing.assert_array_equal(ds.x_val, again.x_val)


def test_named_idx_set_reads_its_folder_and_names_the_install_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(idx.IDX_DATASETS, "fashion-mnist", (tmp_path / "fm", "apt-get install dataset-fashion-mnist"))
    with pytest.raises(DataError) as info:
        data.load("fashion-mnist")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "train-images-idx3-ubyte[.gz]" in message
    assert "\n" not in message
    write_set(tmp_path / "fm")
    ds = data.load("fashion-mnist")
    assert ds.name == "fashion-mnist" and len(ds.y_test) == 20


def test_idx_folder_with_mismatched_files_names_them(tmp_path) -> None:
    folder = tmp_path / "set"
    write_set(folder, gz=False)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="20 images but t10k-labels-idx1-ubyte has 7 labels"):
        data.load(str(folder))
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\[.gz\]; put all four"):
        data.load(str(folder))


def test_resize_area_is_block_mean_and_bilinear_upsamples() -> None:
    x = np.random.default_rng(0).random((5, 2, 8, 8)).astype(np.float32)
    small = resize_images(x, 4)
    expected = x.reshape(5, 2, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(small, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(resize_images(x, 4), small)  # deterministic
    odd = resize_images(x, 3)  # non-integer factor: averages of overlapping windows
    assert odd.shape == (5, 2, 3, 3) and odd.min() >= x.min() and odd.max() <= x.max()
    np.testing.assert_allclose(odd.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=0.08)
    flat = np.full((1, 1, 2, 2), 0.5, np.float32)
    np.testing.assert_allclose(resize_images(flat, 5), 0.5)


def test_resize_dataset_and_its_errors(tmp_path) -> None:
    folder = tmp_path / "set"
    write_set(folder)
    ds = resize_dataset(data.load(str(folder)), 3)
    assert ds.input_shape == (1, 3, 3) and ds.x_test.dtype == np.float32
    with pytest.raises(DataError, match="--resize 0: the image side must be in 1..1024"):
        resize_dataset(ds, 0)
    with pytest.raises(DataError, match="not images"):
        resize_dataset(data.make_synthetic(shape=(10,)), 4)


def test_train_and_prune_cli_reuse_resize_and_refuse_missing_data(tmp_path, capsys, monkeypatch) -> None:
    from neuroprune.cli import main
    from neuroprune.pipeline import load_trained

    folder = tmp_path / "set"
    write_set(folder, side=8)
    out = tmp_path / "m.pt"
    assert main(["train", "--data", str(folder), "--resize", "4", "--arch", "c4,f", "--epochs", "1", "--steps", "4",
                 "--quiet", "--out", str(out)]) == 0
    trained = load_trained(str(out))
    assert trained.model.input_shape == (1, 4, 4) and trained.dataset.input_shape == (1, 4, 4)
    capsys.readouterr()
    # pruning at another size fails with the shape error and the fix
    assert main(["prune", str(out), "--resize", "6", "--method", "uniform", "--synops-target", "0.5",
                 "--out", str(tmp_path / "p.pt"), "--quiet"]) == 2
    assert "--resize" in capsys.readouterr().err
    monkeypatch.setitem(idx.IDX_DATASETS, "fashion-mnist", (tmp_path / "none", "apt-get install dataset-fashion-mnist"))
    assert main(["train", "--data", "fashion-mnist", "--out", str(tmp_path / "x.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err
