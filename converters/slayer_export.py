"""Write a list of lava-dl slayer blocks as a netx HDF5 file, the way lava-dl does.

A user who trains with slayer exports a network with each block's own
``export_hdf5`` into ``/layer/{i}``; this module does exactly that (after one forward
pass, which sets the neurons' shapes), atomically. :func:`example_blocks` builds the
two nets lava-dl's tutorials train (an MNIST-style dense 784-512-10 net and a strided
conv net on 28x28 input) with random weights, as real files of lava-dl's own making for
tests and benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from neuroprune.atomic import atomic_path

__all__ = ["SLAYER_NEURON", "export_blocks", "example_blocks"]

SLAYER_NEURON = {
    "threshold": 1.25,
    "current_decay": 0.25,
    "voltage_decay": 0.03,
    "tau_grad": 0.03,
    "scale_grad": 3,
    "requires_grad": False,
}
"""CUBA neuron parameters of lava-dl's tutorials (slayer units)."""


def export_blocks(blocks: Sequence[Any], path: str | os.PathLike[str], sample: Any) -> Path:
    """Run ``sample`` (``(N, ..., T)`` tensor) through ``blocks`` once, then write each
    block's ``export_hdf5`` into ``/layer/{i}`` of ``path``. Returns ``path``."""
    import h5py
    import torch

    with torch.no_grad():
        x = sample
        for block in blocks:  # a forward pass sets the neurons' shapes
            x = block(x)
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            group = handle.create_group("layer")
            for index, block in enumerate(blocks):
                block.export_hdf5(group.create_group(str(index)))
    return path


def example_blocks(name: str, seed: int = 0) -> tuple[Any, list[Any]]:
    """``(sample input, slayer blocks)`` of a lava-dl tutorial-sized net: ``"dense"``
    (784-512-10) or ``"conv"`` (input neurons, two stride-2 convs 1->8->16 on 28x28,
    flatten, dense 10)."""
    import torch

    from neuroprune.snn.model import slayer

    cuba = slayer().block.cuba
    torch.manual_seed(seed)
    if name == "dense":
        return torch.rand(1, 784, 2), [
            cuba.Dense(SLAYER_NEURON, 784, 512, weight_scale=4, weight_norm=False),
            cuba.Dense(SLAYER_NEURON, 512, 10, weight_scale=4, weight_norm=False),
        ]
    if name == "conv":
        return torch.rand(1, 1, 28, 28, 2), [
            cuba.Input(SLAYER_NEURON),
            cuba.Conv(SLAYER_NEURON, 1, 8, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            cuba.Conv(SLAYER_NEURON, 8, 16, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            cuba.Flatten(),
            cuba.Dense(SLAYER_NEURON, 16 * 7 * 7, 10, weight_scale=4, weight_norm=False),
        ]
    raise ValueError(f"unknown example net {name!r}; choose dense or conv")
