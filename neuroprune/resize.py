"""Input resizing for CPU budgets: ``--resize 14`` turns 28x28 images into 14x14.

Down-sampling averages the source pixels each output pixel covers (area, as
``torch.nn.functional.interpolate(mode="area")``: an adaptive average pool, exact block
means for integer factors); up-sampling is bilinear. Both are deterministic, so a
checkpoint trained with ``--resize N`` sees the same inputs again when it is pruned.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neuroprune.data import Dataset
from neuroprune.errors import DataError

__all__ = ["resize_images", "resize_dataset", "MAX_SIZE"]

MAX_SIZE = 1024


def check_size(size: int, shape: tuple[int, ...], name: str = "data set") -> None:
    """Raise :class:`DataError` unless ``size`` can resize samples of ``shape``."""
    if not 1 <= size <= MAX_SIZE:
        raise DataError(f"--resize {size}: the image side must be in 1..{MAX_SIZE} pixels (e.g. --resize 14)")
    if len(shape) != 3:
        raise DataError(f"--resize {size}: {name} has samples of shape {tuple(shape)}, not images (C, H, W); "
                        "drop --resize for feature vectors")


def resize_images(x: np.ndarray, size: int, chunk: int = 8192) -> np.ndarray:
    """Images ``(N, C, H, W)`` resized to ``(N, C, size, size)`` (float32)."""
    import torch
    import torch.nn.functional as F

    check_size(size, tuple(x.shape[1:]), "the array")
    if x.shape[2:] == (size, size):
        return np.ascontiguousarray(x, dtype=np.float32)
    down = size <= min(x.shape[2:])
    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.float32)
    for start in range(0, len(x), chunk):
        block = torch.from_numpy(np.ascontiguousarray(x[start:start + chunk], dtype=np.float32))
        if down:
            block = F.adaptive_avg_pool2d(block, (size, size))
        else:
            block = F.interpolate(block, size=(size, size), mode="bilinear", align_corners=False)
        out[start:start + chunk] = block.numpy()
    return out


def resize_dataset(dataset: Dataset, size: int | None) -> Dataset:
    """``dataset`` with every split resized to ``size`` x ``size`` (unchanged for None)."""
    if size is None:
        return dataset
    check_size(size, dataset.input_shape, repr(dataset.name))
    return dataclasses.replace(
        dataset,
        x_train=resize_images(dataset.x_train, size),
        x_val=resize_images(dataset.x_val, size),
        x_test=resize_images(dataset.x_test, size),
    )
