"""Resumable training state: everything :func:`neuroprune.snn.train.train` needs to continue
a run exactly (weights, optimizer, schedule, random generators, epoch, history), tied to
the training split it was made on.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroprune.data import Dataset
from neuroprune.errors import CheckpointError
from neuroprune.snn.checkpoint import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from neuroprune.snn.train import TrainConfig, TrainHistory

__all__ = ["TRAIN_STATE_KIND", "save_train_state", "load_train_state", "data_identity"]

TRAIN_STATE_KIND = "train-state"


def save_train_state(path: str | os.PathLike[str], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, generators: dict[str, torch.Generator], config: TrainConfig,
                     epoch: int, step: int, history: TrainHistory, dataset: Dataset) -> None:
    """Write the whole training state after ``epoch`` (``step`` optimizer steps) to ``path`` atomically."""
    tensors = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in generators.items()}},
    }
    meta = {"epoch": epoch, "step": step, "config": config.to_dict(), "history": history.to_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(), "data": data_identity(dataset)}
    save_checkpoint(path, tensors, meta, kind=TRAIN_STATE_KIND)


def data_identity(dataset: Dataset) -> dict[str, str]:
    """Name and SHA-256 of the training split (arrays, shapes, dtypes): what a resumed
    run must train on to continue the same run."""
    digest = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return {"name": str(dataset.name), "sha256": digest.hexdigest()}


def load_train_state(path: str | os.PathLike[str], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, generators: dict[str, torch.Generator],
                     config: TrainConfig, dataset: Dataset) -> tuple[int, int, dict[str, Any]]:
    """Restore model, optimizer, schedule and generators from ``path`` in place; return the
    epoch and step to continue from and the history so far (``TrainHistory`` fields)."""
    tensors, meta = load_checkpoint(path, kind=TRAIN_STATE_KIND)
    made_on, now = meta.get("data"), data_identity(dataset)
    if made_on is not None and made_on != now:
        raise CheckpointError(
            f"{path}: training state was made on data set {made_on.get('name')!r} (training split SHA-256 "
            f"{str(made_on.get('sha256'))[:12]}), this run trains on {now['name']!r} ({now['sha256'][:12]}); "
            "resume with the same --data or delete the file to start over"
        )
    if meta["config"] != config.to_dict():
        changed = sorted(k for k, v in config.to_dict().items() if meta["config"].get(k) != v)
        raise CheckpointError(
            f"{path}: training state belongs to another run ({', '.join(changed)} differ); "
            "resume with the same options or delete the file to start over"
        )
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: training state does not match this model ({str(exc).splitlines()[0][:120]}); "
            "resume with the same --arch or delete the file"
        ) from None
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise CheckpointError(f"{path}: {broken[0]} holds NaN or infinite values; the training state is corrupt, "
                              "delete the file to start over")
    optimizer.load_state_dict(tensors["optimizer"])
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng"]["torch"])
    for name, generator in generators.items():
        generator.set_state(tensors["rng"][name])
    return int(meta["epoch"]), int(meta["step"]), dict(meta["history"])
