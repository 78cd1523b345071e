"""Shared builders for the hw_models tests: small IR networks, chip-file variants and
netx files written by lava-dl's own slayer blocks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hw_models.chip import CHIPS_DIR, load_chip
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron

NEURON = Neuron()


def dense_net(weights: list[np.ndarray], name: str = "dense") -> Network:
    """Input (no neurons, spikes from the host) followed by dense layers."""
    layers = [InputLayer(shape=(weights[0].shape[1],))]
    layers += [DenseLayer(weight=w, neuron=NEURON) for w in weights]
    return Network(layers, name=name)


def full_weights(out: int, inp: int, low: int = -128, high: int = 127, seed: int = 0) -> np.ndarray:
    """Integer weights with no zero, spanning [low, high] (8-bit mixed by default)."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(low, high + 1, size=(out, inp))
    weight[weight == 0] = high
    weight.flat[0], weight.flat[-1] = low, high
    return weight.astype(np.int32)


def chip_variant(tmp_path: Path, base: str = "loihi1", **replace: object) -> Path:
    """A copy of a preset chip file with some ``key = value`` lines replaced."""
    text = (CHIPS_DIR / f"{base}.toml").read_text()
    for key, value in replace.items():
        text, count = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {value}   ", text)
        assert count == 1, key
    path = tmp_path / f"hw_{base}_variant.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def loihi1():
    return load_chip("loihi1")


@pytest.fixture(scope="session")
def loihi2():
    return load_chip("loihi2")


@pytest.fixture(scope="session")
def lava_dl_files(tmp_path_factory) -> dict[str, Path]:
    """netx files written by lava-dl itself: a dense MNIST-like 784-512-10 net and a
    conv net (input neurons, two strided convs, flatten, dense)."""
    import h5py
    import torch

    import lava.lib.dl.slayer as slayer

    folder = tmp_path_factory.mktemp("hw_lava_dl")
    neuron = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "tau_grad": 0.03, "scale_grad": 3, "requires_grad": False}
    torch.manual_seed(0)
    nets = {
        "dense": (torch.rand(1, 784, 2), [
            slayer.block.cuba.Dense(neuron, 784, 512, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Dense(neuron, 512, 10, weight_scale=4, weight_norm=False),
        ]),
        "conv": (torch.rand(1, 1, 28, 28, 2), [
            slayer.block.cuba.Input(neuron),
            slayer.block.cuba.Conv(neuron, 1, 8, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Conv(neuron, 8, 16, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(neuron, 16 * 7 * 7, 10, weight_scale=4, weight_norm=False),
        ]),
    }
    paths = {}
    for name, (x, blocks) in nets.items():
        with torch.no_grad():
            for block in blocks:  # a forward pass sets the neurons' shapes
                x = block(x)
        path = folder / f"hw_lava_{name}.net"
        with h5py.File(path, "w") as handle:
            group = handle.create_group("layer")
            for index, block in enumerate(blocks):
                block.export_hdf5(group.create_group(str(index)))
        paths[name] = path
    return paths


def small_conv_net(channels: int = 4) -> Network:
    """Input 2x12x12 -> conv k3 s1 p1 -> conv k3 s2 p1 -> flatten -> dense 10 -> dense 5."""
    rng = np.random.default_rng(1)
    return Network([
        InputLayer(shape=(2, 12, 12), neuron=NEURON),
        ConvLayer(weight=rng.integers(-8, 8, size=(channels, 2, 3, 3)).astype(np.int32), padding=1, neuron=NEURON),
        ConvLayer(weight=rng.integers(-8, 8, size=(8, channels, 3, 3)).astype(np.int32), padding=1, stride=2,
                  neuron=NEURON),
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-8, 8, size=(10, 8 * 6 * 6)).astype(np.int32), neuron=NEURON),
        DenseLayer(weight=rng.integers(-8, 8, size=(5, 10)).astype(np.int32), neuron=NEURON),
    ], name="small_conv")
