"""Data sets for training and evaluating spiking networks.

Three sources, one shape of result (:class:`Dataset`):

- ``"digits"`` — scikit-learn's 8x8 handwritten digits (1797 images, 10 classes; ships
  with scikit-learn, no download), scaled to [0, 1], shape ``(N, 1, 8, 8)``.
- ``"synthetic"`` — class prototypes plus noise; a tiny SNN learns it in seconds.
- a path to a user's own ``.npz`` with arrays ``x``, ``y`` (and optionally ``x_test``,
  ``y_test``);
- a path to a folder of images in torchvision's ``ImageFolder`` layout
  (``root/<class>/<image>``, optionally ``root/train/...`` and ``root/test/...``).

Splits are stratified and deterministic under ``seed``. The *validation* split feeds
rewards of pruning searches; the *test* split is only for reported accuracy.

This module imports numpy only; torch loads inside :func:`batches`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuroprune.errors import DataError, NeuropruneError
from neuroprune.validate import MAX_LAYER_NEURONS, MAX_TENSOR_ELEMENTS, check_declared_size

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Dataset",
    "load_digits",
    "make_synthetic",
    "load_npz",
    "load_folder",
    "load",
    "batches",
    "BUILTIN_DATASETS",
]

BUILTIN_DATASETS = ("digits", "synthetic")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test arrays of one classification task.

    ``x_*`` are float32 in [0, 1] with shape ``(N, C, H, W)`` or ``(N, F)``; ``y_*`` are
    int64 class indices in ``[0, num_classes)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample without the batch axis, e.g. ``(1, 8, 8)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, train={len(self.y_train)}, "
            f"val={len(self.y_val)}, test={len(self.y_test)})"
        )


# --------------------------------------------------------------------------- splits
def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise DataError(
            f"split fractions must lie in [0, 1): got val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no "
            "training data; keep their sum below 1 (e.g. 0.15 and 0.2)"
        )


def _stratified_split(
    y: np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split indices of ``y`` into ``len(fractions) + 1`` stratified, sorted parts.

    Part ``k`` (for ``k < len(fractions)``) receives ``round(fractions[k] * n_c)`` samples
    of each class ``c``; the last part receives the rest. Deterministic under ``seed``.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for k, frac in enumerate(fractions):
            n_take = int(round(frac * len(idx)))
            parts[k].append(idx[start : start + n_take])
            start += n_take
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _finish(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    num_classes: int,
    name: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    where: str | None = None,
) -> Dataset:
    """Split (x, y) into train/val(/test) and wrap as a :class:`Dataset`.

    Refuses splits that leave the validation or test part empty (too few samples per
    class) and validation or test labels without a training sample.
    """
    _check_fractions(val_fraction, 0.0 if x_test is not None else test_fraction)
    where = where or name
    if x_test is None:
        val_idx, test_idx, train_idx = _stratified_split(
            y, (val_fraction, test_fraction), seed
        )
        x_test, y_test = x[test_idx], y[test_idx]
    else:
        val_idx, train_idx = _stratified_split(y, (val_fraction,), seed)
    assert y_test is not None
    _check_split(where, y, y[train_idx], (("validation", val_fraction, y[val_idx]), ("test", test_fraction, y_test)))
    return Dataset(
        x_train=np.ascontiguousarray(x[train_idx], dtype=np.float32),
        y_train=np.ascontiguousarray(y[train_idx], dtype=np.int64),
        x_val=np.ascontiguousarray(x[val_idx], dtype=np.float32),
        y_val=np.ascontiguousarray(y[val_idx], dtype=np.int64),
        x_test=np.ascontiguousarray(x_test, dtype=np.float32),
        y_test=np.ascontiguousarray(y_test, dtype=np.int64),
        num_classes=int(num_classes),
        name=name,
    )


def _check_split(where: str, y: np.ndarray, y_train: np.ndarray,
                 parts: tuple[tuple[str, float, np.ndarray], ...]) -> None:
    """Every split part that should hold samples does, and only of trained classes."""
    trained = np.unique(y_train)
    for part, fraction, labels in parts:
        if fraction > 0 and len(labels) == 0:
            largest = int(np.unique(y, return_counts=True)[1].max())
            need = int(np.ceil(0.5 / fraction))
            raise DataError(
                f"{where}: the {part} split is empty: the largest class has {largest} sample(s) and "
                f"{fraction:g} of it rounds to 0; need at least {need} samples per class — add samples"
            )
        unseen = np.setdiff1d(np.unique(labels), trained)
        if unseen.size:
            raise DataError(
                f"{where}: {part} label(s) {unseen[:5].tolist()} have no training sample; a network cannot "
                "learn a class it never sees — add training samples of those classes or drop them"
            )


# --------------------------------------------------------------------------- sources
def load_digits(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> Dataset:
    """scikit-learn's handwritten digits: 1797 images, 8x8 pixels, 10 classes.

    Pixel intensities (0..16) are divided by 16 to lie in [0, 1]; shape ``(N, 1, 8, 8)``.
    The split is stratified per class and deterministic under ``seed``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    return _finish(x, y, None, None, 10, "digits", seed, val_fraction, test_fraction)


def make_synthetic(
    num_classes: int = 4,
    shape: tuple[int, ...] = (1, 8, 8),
    n_per_class: int = 100,
    seed: int = 0,
    noise: float = 0.15,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> Dataset:
    """A fast, learnable task: one random binary prototype per class plus noise.

    Each prototype switches on a random ~30% of the pixels; a sample is its class
    prototype scaled by a random gain in [0.7, 1.0], plus Gaussian noise of std
    ``noise``, clipped to [0, 1]. Deterministic under ``seed``.
    """
    if num_classes < 2:
        raise DataError(f"make_synthetic: num_classes must be >= 2, got {num_classes}")
    if n_per_class < 1:
        raise DataError(f"make_synthetic: n_per_class must be >= 1, got {n_per_class}")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise DataError(
            f"make_synthetic: shape must be (F,) or (C, H, W) with positive sizes, got {shape}"
        )
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((num_classes, *shape)) < 0.3).astype(np.float32)
    y = np.repeat(np.arange(num_classes, dtype=np.int64), n_per_class)
    gain = rng.uniform(0.7, 1.0, size=(len(y),) + (1,) * len(shape)).astype(np.float32)
    x = prototypes[y] * gain + rng.normal(0.0, noise, size=(len(y), *shape))
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return _finish(
        x, y, None, None, num_classes, "synthetic", seed, val_fraction, test_fraction
    )


def _check_arrays(path: Path, x: np.ndarray, y: np.ndarray, xk: str, yk: str) -> None:
    """Raise DataError naming ``path`` if ``x``/``y`` cannot be a classification set."""
    if x.ndim not in (2, 4):
        raise DataError(
            f"{path}: '{xk}' has shape {x.shape} ({x.ndim} dims); expected (N, F) or "
            "(N, C, H, W) — add a channel axis to grey images, e.g. x[:, None]"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{xk}' has dtype {x.dtype}; expected real numbers")
    if y.ndim != 1:
        raise DataError(
            f"{path}: '{yk}' has shape {y.shape}; expected one class index per sample, "
            "shape (N,) — convert one-hot labels with y.argmax(axis=1)"
        )
    if len(x) != len(y):
        raise DataError(
            f"{path}: '{xk}' has {len(x)} samples but '{yk}' has {len(y)}; "
            "they must have the same length"
        )
    if len(y) == 0:
        raise DataError(f"{path}: '{xk}' and '{yk}' are empty")
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    )
    if not integral or np.issubdtype(y.dtype, np.bool_):
        raise DataError(
            f"{path}: '{yk}' has dtype {y.dtype} with non-integer values; labels must be "
            "integer class indices 0..K-1 — map them with np.unique(y, return_inverse=True)"
        )
    if y.min() < 0:
        raise DataError(
            f"{path}: '{yk}' has negative label {int(y.min())}; labels must be 0..K-1"
        )
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: '{xk}' contains NaN or infinite values")


def _check_labels(path: Path, y: np.ndarray, y_test: np.ndarray | None) -> None:
    """Class count (largest label + 1) bounded by the samples, before anything is sized by it."""
    largest = int(y.max()) if y_test is None else max(int(y.max()), int(y_test.max()))
    if largest >= len(y):
        raise DataError(
            f"{path}: largest label {largest} means {largest + 1} classes, more than the {len(y)} samples "
            "of 'y'; labels must be class indices 0..K-1 — map them with np.unique(y, return_inverse=True)"
        )
    if y_test is not None:
        unseen = np.setdiff1d(np.unique(y_test), np.unique(y))
        if unseen.size:
            raise DataError(
                f"{path}: 'y_test' has label(s) {unseen[:5].tolist()} that never occur in 'y'; a network cannot "
                "learn a class it never sees — add training samples of those classes or drop them from the test set"
            )


def _scale_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` to ``[0, 1]`` (identity when already inside [0, 1])."""
    x = x.astype(np.float32)
    if lo >= 0.0 and hi <= 1.0:
        return x
    span = hi - lo if hi > lo else 1.0
    return ((x - lo) / span).astype(np.float32)


def load_npz(
    path: str | os.PathLike[str],
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> Dataset:
    """A user's own ``.npz`` with arrays ``x`` (N, F) or (N, C, H, W) and ``y`` (N,).

    Optional ``x_test`` / ``y_test`` give the test split; otherwise it is cut from
    ``x``. Values outside [0, 1] are min-max scaled using the range of ``x`` (the same
    affine map is applied to ``x_test``). ``num_classes`` = largest label + 1.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such file; pass an existing .npz with arrays 'x' and 'y' "
            "(np.savez(path, x=x, y=y)) or one of " + ", ".join(BUILTIN_DATASETS)
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile / pickle / value errors
        raise DataError(
            f"{path}: cannot be read as a numpy .npz archive ({type(exc).__name__}: "
            f"{exc}); write it with np.savez(path, x=x, y=y)"
        ) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing array(s) {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(sorted(arrays)) or 'none'}); save with np.savez(path, x=x, y=y)"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(
            f"{path}: has only one of 'x_test' / 'y_test'; store both or neither"
        )
    x, y = arrays["x"], arrays["y"]
    _check_arrays(path, x, y, "x", "y")
    x_test = arrays.get("x_test")
    y_test = arrays.get("y_test")
    if x_test is not None and y_test is not None:
        _check_arrays(path, x_test, y_test, "x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{path}: 'x_test' samples have shape {x_test.shape[1:]} but 'x' samples "
                f"have {x.shape[1:]}; they must match"
            )
    _check_labels(path, y, y_test)
    lo, hi = float(x.min()), float(x.max())
    x = _scale_unit(x, lo, hi)
    y = y.astype(np.int64)
    num_classes = int(y.max()) + 1
    if x_test is not None and y_test is not None:
        x_test = np.clip(_scale_unit(x_test, lo, hi), 0.0, 1.0)
        y_test = y_test.astype(np.int64)
        num_classes = max(num_classes, int(y_test.max()) + 1)
    if num_classes < 2:
        raise DataError(f"{path}: 'y' holds a single class; need at least 2 classes")
    return _finish(
        x, y, x_test, y_test, num_classes, path.stem, seed, val_fraction, test_fraction, str(path)
    )


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def _image_classes(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_images(root: Path, classes: list[str], size: tuple[int, int] | None,
                 grayscale: bool) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    import warnings

    from PIL import Image, UnidentifiedImageError

    images: list[np.ndarray] = []
    labels: list[int] = []
    folders = []
    for name in classes:
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{root}: class folder {name!r} is missing; every split needs the same class folders")
        folders.append(sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
    count = sum(len(files) for files in folders)
    for label, files in enumerate(folders):
        for file in files:
            try:
                with _pixel_limit(Image), warnings.catch_warnings():
                    # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: refuse both
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    image = Image.open(file)
                with image:
                    if size is None:
                        _check_image_size(file, (image.height, image.width), count, grayscale)
                    image = image.convert("L" if grayscale else "RGB")
                    if size is None:
                        size = (image.height, image.width)
                    elif (image.height, image.width) != size:
                        image = image.resize((size[1], size[0]), Image.BILINEAR)
                    pixels = np.asarray(image, dtype=np.float32) / 255.0
            except NeuropruneError:
                raise
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise DataError(
                    f"{file}: image declares more than {MAX_LAYER_NEURONS} pixels ({exc}); "
                    "a neuromorphic network's input is far smaller — downscale the images"
                ) from None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                raise DataError(f"{file}: not a readable image ({exc}); remove or replace the file") from None
            images.append(pixels[None] if grayscale else pixels.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(
            f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders; "
            "use the layout root/<class>/<image>"
        )
    assert size is not None
    return np.stack(images), np.asarray(labels, dtype=np.int64), size


@contextlib.contextmanager
def _pixel_limit(image_module: Any) -> Iterator[None]:
    """PIL's decompression-bomb limit set to the largest input layer, for this read only."""
    saved = image_module.MAX_IMAGE_PIXELS
    image_module.MAX_IMAGE_PIXELS = MAX_LAYER_NEURONS
    try:
        yield
    finally:
        image_module.MAX_IMAGE_PIXELS = saved


def _check_image_size(file: Path, size: tuple[int, int], count: int, grayscale: bool) -> None:
    """The data set every image is resized to stays within the sanity limits."""
    values = size[0] * size[1] * (1 if grayscale else 3)
    check_declared_size(values, f"image of {size[0]}x{size[1]} pixels", str(file), MAX_LAYER_NEURONS,
                        "downscale the images or pass size=(H, W)")
    check_declared_size(values * count, f"{count} images of {size[0]}x{size[1]} pixels", str(file.parent.parent),
                        MAX_TENSOR_ELEMENTS, "downscale the images or pass size=(H, W)")


def load_folder(
    path: str | os.PathLike[str],
    seed: int = 0,
    size: tuple[int, int] | None = None,
    grayscale: bool = True,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> Dataset:
    """Images in torchvision's ``ImageFolder`` layout: ``root/<class>/<image>``.

    Classes are the sub-folder names in sorted order (label 0 is the first, as
    torchvision numbers them). With ``root/train`` and ``root/test`` the test split is
    ``root/test``; otherwise it is cut from the images. Pixels are scaled to [0, 1];
    samples have shape ``(1, H, W)`` (``grayscale``, default) or ``(3, H, W)``. Every
    image is resized (bilinear) to ``size`` = ``(H, W)``, by default the size of the
    first image.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass a folder laid out as root/<class>/<image>")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _image_classes(train_root)
    if len(classes) < 2:
        raise DataError(
            f"{train_root}: found {len(classes)} class folder(s); need at least 2 "
            "(layout root/<class>/<image>)"
        )
    x, y, size = _read_images(train_root, classes, size, grayscale)
    x_test = y_test = None
    if split:
        extra = sorted(set(_image_classes(root / "test")) - set(classes))
        if extra:
            raise DataError(f"{root / 'test'}: class folder(s) {', '.join(extra)} are not in {train_root}")
        x_test, y_test, _ = _read_images(root / "test", classes, size, grayscale)
    return _finish(x, y, x_test, y_test, len(classes), root.name, seed, val_fraction, test_fraction, str(root))


def load(name_or_path: str | os.PathLike[str], seed: int = 0) -> Dataset:
    """Load ``"digits"``, ``"synthetic"``, ``"fashion-mnist"``, a folder of IDX files
    (:mod:`neuroprune.idx`), a ``.npz`` file or an image folder."""
    from neuroprune import idx

    name = os.fspath(name_or_path)
    if name == "digits":
        return load_digits(seed=seed)
    if name == "synthetic":
        return make_synthetic(seed=seed)
    if name in idx.IDX_DATASETS or idx.is_idx_folder(name):
        return idx.load_idx(name, seed=seed)
    if Path(name).is_dir():
        return load_folder(name, seed=seed)
    if name.endswith(".npz") or os.path.sep in name or Path(name).exists():
        return load_npz(name, seed=seed)
    raise DataError(
        f"unknown data set {name!r}; use one of {', '.join((*BUILTIN_DATASETS, *idx.IDX_DATASETS))}, a path to a .npz "
        "file with arrays 'x' and 'y', or an image folder laid out as root/<class>/<image>"
    )


# --------------------------------------------------------------------------- batches
def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` torch tensors (float32, int64) of at most ``batch_size`` samples.

    With ``shuffle``, the order comes from ``generator`` (a ``torch.Generator``, advanced
    by this call) or else from a fresh generator seeded with ``seed`` (default 0).
    The last batch may be smaller.
    """
    import torch

    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} samples but y has {len(y)}")
    n = len(y)
    if shuffle:
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    x_all = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x_all[idx].to(device), y_all[idx].to(device)
