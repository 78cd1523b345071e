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
    from converters.slayer_export import example_blocks, export_blocks

    folder = tmp_path_factory.mktemp("hw_lava_dl")
    return {name: export_blocks(example_blocks(name)[1], folder / f"hw_lava_{name}.net", example_blocks(name)[0])
            for name in ("dense", "conv")}


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
