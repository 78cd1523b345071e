"""IDX data sets: Fashion-MNIST from Debian's package, and any folder of IDX files.

The IDX format (LeCun's MNIST files) is a big-endian header -- two zero bytes, a type
code, the number of dimensions, one ``uint32`` per dimension -- followed by the raw
array. The four files of a classification set are named as torchvision's raw layout
names them::

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

each optionally gzipped (``.gz``). Sources:

- ``"fashion-mnist"`` -- the files Debian's ``dataset-fashion-mnist`` package installs
  under ``/usr/share/datasets/fashion-mnist/`` (60,000 train + 10,000 test grey images
  of 28x28, 10 classes);
- a folder ``DIR`` holding the four files in ``DIR`` or ``DIR/raw`` (torchvision's
  ``root/FashionMNIST/raw``), so a user's MNIST / KMNIST copy works the same way.

The header is validated (magic, type, dimensions, size against the file) before any
array is allocated. Pixels are scaled to [0, 1] (``/ 255`` for bytes); samples have
shape ``(1, H, W)``. The t10k files are the test split; the validation split is cut
from the training files (stratified, deterministic under ``seed``).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from neuroprune.errors import DataError

__all__ = ["IDX_DATASETS", "IDX_FILES", "read_idx", "find_idx_files", "is_idx_folder", "load_idx"]

# name -> (folder, command that installs it)
IDX_DATASETS: dict[str, tuple[Path, str]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"), "apt-get install dataset-fashion-mnist"),
}

# split part -> (file stem, dimensions)
IDX_FILES: dict[str, tuple[str, int]] = {
    "x_train": ("train-images-idx3-ubyte", 3),
    "y_train": ("train-labels-idx1-ubyte", 1),
    "x_test": ("t10k-images-idx3-ubyte", 3),
    "y_test": ("t10k-labels-idx1-ubyte", 1),
}

# IDX type code -> big-endian numpy dtype
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_DIM = 1 << 28  # no real IDX file has a dimension this large


def _stored_size(path: Path) -> int:
    """Bytes of the (decompressed) content of ``path``; for gzip, the trailer's ISIZE
    (the size modulo 2**32, exact for files under 4 GiB)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 18:
            raise DataError(f"{path}: {handle.tell()} bytes is too short for a gzip file; the file is truncated")
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def read_idx(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """The array stored in IDX file ``path`` (plain or ``.gz``), in its native dtype.

    Raises :class:`DataError` naming the file when the magic, type code, number of
    dimensions (``ndim``, if given) or the size implied by the header does not match.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        stored = _stored_size(path)
        with opener(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _TYPES:
                raise DataError(
                    f"{path}: not an IDX file (magic {head.hex() or 'empty'}, expected 0000 then a type code "
                    f"{'/'.join(f'{t:02x}' for t in _TYPES)} and the dimension count); pass the original "
                    "train-/t10k- images and labels files"
                )
            dims_found = head[3]
            if ndim is not None and dims_found != ndim:
                raise DataError(
                    f"{path}: IDX header has {dims_found} dimensions, expected {ndim} "
                    f"({'images N x H x W' if ndim == 3 else 'labels N'}); are image and label files swapped?"
                )
            raw_dims = handle.read(4 * dims_found)
            if len(raw_dims) < 4 * dims_found:
                raise DataError(f"{path}: IDX header is truncated ({len(raw_dims) + 4} bytes); the file is damaged")
            shape = struct.unpack(f">{dims_found}I", raw_dims)
            if any(d == 0 or d > _MAX_DIM for d in shape):
                raise DataError(f"{path}: IDX header gives shape {shape}; every dimension must be in 1..{_MAX_DIM}")
            dtype = np.dtype(_TYPES[head[2]])
            expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            header = 4 + 4 * dims_found
            if path.suffix == ".gz":
                matches = (header + expected) % (1 << 32) == stored
            else:
                matches = header + expected == stored
            if not matches:
                raise DataError(
                    f"{path}: IDX header gives shape {shape} ({header + expected:,} bytes with the header) but the "
                    f"file holds {stored:,} bytes; the file is truncated or damaged, download it again"
                )
            payload = handle.read(expected)
            if len(payload) != expected:
                raise DataError(f"{path}: holds {len(payload):,} of the {expected:,} data bytes its header announces; "
                                "the file is truncated, download it again")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(root: str | os.PathLike[str]) -> tuple[dict[str, Path], list[str]]:
    """The four IDX files under ``root`` (or ``root/raw``) and the names still missing.

    A plain file wins over its ``.gz`` twin."""
    root = Path(root)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for part, (stem, _) in IDX_FILES.items():
        for folder in (root, root / "raw"):
            hit = next((folder / name for name in (stem, stem + ".gz") if (folder / name).is_file()), None)
            if hit is not None:
                found[part] = hit
                break
        else:
            missing.append(stem + "[.gz]")
    return found, missing


def is_idx_folder(path: str | os.PathLike[str]) -> bool:
    """Whether folder ``path`` (or ``path/raw``) holds any of the four IDX files."""
    return Path(path).is_dir() and len(find_idx_files(path)[0]) > 0


def load_idx(name_or_dir: str | os.PathLike[str], seed: int = 0, val_fraction: float = 0.15):  # -> Dataset
    """``"fashion-mnist"`` or a folder of IDX files as a :class:`~neuroprune.data.Dataset`."""
    from neuroprune.data import _finish

    name = os.fspath(name_or_dir)
    if name in IDX_DATASETS:
        root, install = IDX_DATASETS[name]
        hint = f"install it with `{install}` (as root), or pass --data DIR holding the IDX files"
        label = name
    else:
        root, label = Path(name), Path(name).name
        hint = "put all four IDX files (optionally .gz) in the folder or its raw/ subfolder"
    files, missing = find_idx_files(root)
    if missing:
        raise DataError(f"{label}: {root} lacks {', '.join(missing)}; {hint}")
    arrays = {part: read_idx(files[part], ndim) for part, (_, ndim) in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DataError(f"{files['x_' + split]}: {len(x):,} images but {files['y_' + split].name} has "
                            f"{len(y):,} labels; they must pair up one to one")
        if y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
            raise DataError(f"{files['y_' + split]}: labels must be non-negative integers (found dtype {y.dtype})")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{files['x_test']}: images of {arrays['x_test'].shape[1:]} pixels, the training images have "
                        f"{arrays['x_train'].shape[1:]}; they must match")
    scale = 255.0 if arrays["x_train"].dtype == np.uint8 else None

    def images(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)[:, None]
        if scale is not None:
            return x / np.float32(scale)
        lo, hi = float(arrays["x_train"].min()), float(arrays["x_train"].max())
        return np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0).astype(np.float32)

    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_classes < 2:
        raise DataError(f"{files['y_train']}: a single class; need at least 2 classes")
    return _finish(images(arrays["x_train"]), y_train, images(arrays["x_test"]), y_test, num_classes, label, seed,
                   val_fraction, 0.0)
