"""Tests of neuroprune.data: built-in sets, splits, user .npz files and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune import data
from neuroprune.errors import DataError


def test_digits_shapes_range_and_split_sizes() -> None:
    ds = data.load_digits(seed=0)
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.input_shape == (1, 8, 8)
    n_total = len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert n_total == 1797
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))  # stratified: every class present
    # fractions 0.15 / 0.2 per class (rounded), the rest trains
    assert abs(len(ds.y_val) - 0.15 * 1797) <= 10
    assert abs(len(ds.y_test) - 0.2 * 1797) <= 10
    # the brightest pixel of the raw data is 16 -> 1.0
    assert ds.x_train.max() == 1.0


def test_digits_split_is_disjoint_deterministic_and_seed_dependent() -> None:
    a, b, c = data.load_digits(seed=0), data.load_digits(seed=0), data.load_digits(seed=1)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_val, c.x_val)
    # the three splits together are exactly the 1797 raw images, each used once
    from sklearn.datasets import load_digits as sk_load_digits

    all_rows = np.concatenate([a.x_train, a.x_val, a.x_test]).reshape(1797, -1)
    raw = (sk_load_digits().images.reshape(1797, -1) / 16.0).astype(np.float32)
    assert sorted(r.tobytes() for r in raw) == sorted(r.tobytes() for r in all_rows)


def test_bad_split_fractions_raise() -> None:
    with pytest.raises(DataError, match="leaves no training data"):
        data.load_digits(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match=r"\[0, 1\)"):
        data.load_digits(val_fraction=-0.1)


def test_synthetic_is_deterministic_and_class_balanced() -> None:
    a = data.make_synthetic(num_classes=3, shape=(2, 4, 4), n_per_class=40, seed=5)
    b = data.make_synthetic(num_classes=3, shape=(2, 4, 4), n_per_class=40, seed=5)
    assert a.input_shape == (2, 4, 4) and a.num_classes == 3
    np.testing.assert_array_equal(a.x_train, b.x_train)
    counts = np.bincount(np.concatenate([a.y_train, a.y_val, a.y_test]))
    np.testing.assert_array_equal(counts, [40, 40, 40])
    assert a.x_train.min() >= 0 and a.x_train.max() <= 1


def test_synthetic_is_learnable_by_nearest_prototype() -> None:
    ds = data.make_synthetic(num_classes=4, seed=0)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    means = np.stack([flat(ds.x_train)[ds.y_train == k].mean(0) for k in range(4)])
    dist = ((flat(ds.x_test)[:, None, :] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == ds.y_test).mean() > 0.95


def test_synthetic_flat_shape() -> None:
    ds = data.make_synthetic(num_classes=2, shape=(16,), n_per_class=10)
    assert ds.x_train.ndim == 2 and ds.input_shape == (16,)
    with pytest.raises(DataError, match="shape"):
        data.make_synthetic(shape=(4, 4))


def test_npz_roundtrip_with_and_without_test_split(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 1, 4, 4)).astype(np.uint8)
    y = np.repeat(np.arange(3), 20)
    p = tmp_path / "mine.npz"
    np.savez(p, x=x, y=y)
    ds = data.load_npz(p, seed=0)
    assert ds.name == "mine" and ds.num_classes == 3 and ds.input_shape == (1, 4, 4)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 60
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    # min-max scaling with the range of x: x=255 -> 1, x=0 -> 0 (both occur)
    lo, hi = x.min(), x.max()
    all_x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    np.testing.assert_allclose(np.sort(all_x.ravel()), np.sort(((x - lo) / (hi - lo)).ravel()), rtol=1e-6)

    p2 = tmp_path / "with_test.npz"
    xt = rng.random((9, 1, 4, 4)).astype(np.float32)
    yt = np.array([0, 1, 2] * 3)
    np.savez(p2, x=rng.random((30, 1, 4, 4)), y=np.repeat(np.arange(3), 10), x_test=xt, y_test=yt)
    ds2 = data.load(str(p2))
    np.testing.assert_array_equal(ds2.y_test, yt)
    np.testing.assert_allclose(ds2.x_test, xt)
    assert len(ds2.y_train) + len(ds2.y_val) == 30


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((4, 3))}, r"missing array\(s\) 'y'"),
        ({"features": np.zeros((4, 3)), "labels": np.zeros(4)}, "found: features, labels"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(5, dtype=int)}, "4 samples but 'y' has 5"),
        ({"x": np.zeros((4, 3, 2)), "y": np.zeros(4, dtype=int)}, r"3 dims.*\(N, F\) or"),
        ({"x": np.zeros((4, 3)), "y": np.array([0.0, 1.5, 1.0, 0.0])}, "integer class indices"),
        ({"x": np.zeros((4, 3)), "y": np.array(["a", "b", "a", "b"])}, "integer class indices"),
        ({"x": np.zeros((4, 3)), "y": np.zeros((4, 2), dtype=int)}, "argmax"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, -1, 1, 0])}, "negative label"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int)}, "single class"),
        (
            {"x": np.zeros((4, 3)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3))},
            "only one of 'x_test'",
        ),
        (
            {
                "x": np.zeros((4, 3)),
                "y": np.array([0, 1, 0, 1]),
                "x_test": np.zeros((2, 5)),
                "y_test": np.array([0, 1]),
            },
            "must match",
        ),
    ],
)
def test_npz_errors_name_file_and_fix(tmp_path, arrays, match) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match) as info:
        data.load_npz(p)
    assert str(p) in str(info.value)


def test_npz_missing_and_corrupt_file(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file.*np.savez"):
        data.load_npz(tmp_path / "nope.npz")
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="garbage.npz: cannot be read"):
        data.load_npz(bad)


def test_load_dispatch_and_unknown_name() -> None:
    assert data.load("digits").name == "digits"
    assert data.load("synthetic", seed=3).name == "synthetic"
    with pytest.raises(DataError, match="unknown data set 'mnist'.*digits, synthetic"):
        data.load("mnist")


def test_batches_cover_all_samples_once_and_shuffle_deterministically() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    plain = list(data.batches(x, y, batch_size=4))
    assert [len(b[1]) for b in plain] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in plain]), torch.arange(10))
    assert plain[0][0].dtype == torch.float32 and plain[0][1].dtype == torch.int64

    def order(**kw):
        return torch.cat([b[1] for b in data.batches(x, y, 3, shuffle=True, **kw)])

    o1, o2 = order(seed=1), order(seed=1)
    assert torch.equal(o1, o2) and not torch.equal(o1, torch.arange(10))
    assert sorted(o1.tolist()) == list(range(10))
    # x and y stay paired
    for xb, yb in data.batches(x, y, 3, shuffle=True, seed=2):
        assert torch.equal(xb[:, 0].long(), yb)
    # a generator is advanced: two epochs differ, and replaying the seed replays both
    g = torch.Generator().manual_seed(7)
    e1, e2 = order(generator=g), order(generator=g)
    assert not torch.equal(e1, e2)
    g2 = torch.Generator().manual_seed(7)
    assert torch.equal(order(generator=g2), e1) and torch.equal(order(generator=g2), e2)
    with pytest.raises(DataError, match="batch_size"):
        next(data.batches(x, y, 0))


def _write_images(root, x, y, names=("zero", "one", "two")) -> None:
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")


def test_image_folder_reads_classes_pixels_and_splits(tmp_path) -> None:
    digits = data.load_digits(seed=0)
    keep = digits.y_train < 3
    x, y = digits.x_train[keep][:90], digits.y_train[keep][:90]
    _write_images(tmp_path / "flat", x, y)
    ds = data.load(str(tmp_path / "flat"), seed=1)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 3 and ds.name == "flat"
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 90
    # pixels come back as written (8-bit), labels follow the sorted class folder names
    order = {"one": 0, "two": 1, "zero": 2}  # sorted folder names, as torchvision numbers them
    everything = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    labels = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    for image, label in zip(everything[:10], labels[:10]):
        match = np.flatnonzero(np.all(np.abs(x - image).reshape(len(x), -1) <= 0.5 / 255 + 1e-6, axis=1))
        assert len(match) >= 1 and order[("zero", "one", "two")[y[match[0]]]] == label

    # train/test layout: test split from its own folder, images resized to the train size
    _write_images(tmp_path / "split" / "train", x[:60], y[:60])
    _write_images(tmp_path / "split" / "test", x[60:], y[60:])
    ds = data.load_folder(tmp_path / "split", size=(16, 12))
    assert ds.input_shape == (1, 16, 12) and len(ds.y_test) == 30
    rgb = data.load_folder(tmp_path / "split", grayscale=False)
    assert rgb.input_shape == (3, 8, 8)
    np.testing.assert_allclose(rgb.x_test[:, 0], rgb.x_test[:, 2])


def test_image_folder_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        data.load_folder(tmp_path / "missing")
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="1 class folder"):
        data.load_folder(tmp_path / "one")
    (tmp_path / "one" / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        data.load_folder(tmp_path / "one")
    (tmp_path / "one" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        data.load_folder(tmp_path / "one")


# --------------------------------------------------------------------------- hostile input
def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("label", [10**6, np.iinfo(np.int64).max])
def test_npz_one_huge_label_is_refused_before_sizing_classes(tmp_path, label) -> None:
    y = np.repeat(np.arange(3), 20).astype(np.int64)
    y[5] = label
    path = _npz(tmp_path, x=np.zeros((60, 4), np.float32), y=y)
    with pytest.raises(DataError, match=f"{path}: largest label {label} means {label + 1} classes") as info:
        data.load_npz(path)
    assert "np.unique" in str(info.value)


def test_npz_uint64_max_label_is_refused_not_wrapped(tmp_path) -> None:
    y = np.repeat(np.arange(3), 20).astype(np.uint64)
    y[0] = np.iinfo(np.uint64).max
    path = _npz(tmp_path, x=np.zeros((60, 4), np.float32), y=y)
    with pytest.raises(DataError, match=f"largest label {np.iinfo(np.uint64).max}"):
        data.load_npz(path)


def test_npz_one_sample_per_class_cannot_be_split(tmp_path) -> None:
    path = _npz(tmp_path, x=np.random.default_rng(0).random((10, 4)), y=np.arange(10))
    with pytest.raises(DataError, match=r"validation split is empty: the largest class has 1 sample\(s\)") as info:
        data.load_npz(path)
    assert str(path) in str(info.value) and "samples per class" in str(info.value)


def test_npz_test_labels_never_seen_in_training(tmp_path) -> None:
    x = np.random.default_rng(0).random((40, 4))
    y = np.repeat([0, 1], 20)
    path = _npz(tmp_path, x=x, y=y, x_test=x[:4], y_test=np.array([0, 1, 2, 2]))
    with pytest.raises(DataError, match=r"'y_test' has label\(s\) \[2\] that never occur in 'y'"):
        data.load_npz(path)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height pixels and whose data is a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [5000, 100000])  # above PIL's warning limit here, and above its error limit
def test_decompression_bomb_png_is_refused(tmp_path, side) -> None:
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    for name in ("a", "b"):
        (tmp_path / "set" / name).mkdir(parents=True)
    _png_header_only(tmp_path / "set" / "a" / "bomb.png", side, side)
    _png_header_only(tmp_path / "set" / "b" / "small.png", 8, 8)
    with pytest.raises(DataError, match=f"bomb.png: image declares more than {2**24} pixels"):
        data.load_folder(tmp_path / "set")
    assert Image.MAX_IMAGE_PIXELS == before  # the limit is set for the read only
