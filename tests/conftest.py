"""Shared fixtures: small IR networks and netx files written by lava-dl's slayer."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

# One torch thread: the models under test are small, and extra threads only fight the Lava
# processes, Ray workers and Chromium the tests start (oversubscription made steps 5-10x slower).
torch.set_num_threads(1)

from converters.slayer_export import SLAYER_NEURON, export_blocks
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=80)


def random_weights(rng: np.random.Generator, shape: tuple[int, ...], low: int = -60, high: int = 60) -> np.ndarray:
    """Even integer mantissas, as lava-dl's 8-bit quantizer produces."""
    return (rng.integers(low // 2, high // 2 + 1, size=shape) * 2).astype(np.int32)


@pytest.fixture
def dense_net() -> Network:
    rng = np.random.default_rng(0)
    return Network(
        [
            InputLayer(shape=(20,)),
            DenseLayer(weight=random_weights(rng, (16, 20), -40, 120), neuron=NEURON),
            DenseLayer(weight=random_weights(rng, (5, 16), -40, 120), neuron=NEURON),
        ],
        name="dense",
    )


@pytest.fixture
def conv_net() -> Network:
    rng = np.random.default_rng(1)
    return Network(
        [
            InputLayer(shape=(2, 8, 8), neuron=NEURON),
            ConvLayer(weight=random_weights(rng, (4, 2, 3, 3), -40, 120), neuron=NEURON, padding=1),
            ConvLayer(weight=random_weights(rng, (6, 4, 3, 3), -40, 120), neuron=NEURON, stride=2, padding=1),
            FlattenLayer(),
            DenseLayer(weight=random_weights(rng, (3, 96), -40, 120), neuron=NEURON),
        ],
        name="conv",
    )


@pytest.fixture
def slayer_export(tmp_path: Path) -> Callable[[str], tuple[Path, list]]:
    """Build a slayer network ('dense', 'conv' or 'pool'), run it once, export it with lava-dl's
    own ``export_hdf5`` and return the file and the blocks."""
    from neuroprune.snn.model import slayer as quiet_slayer

    slayer = quiet_slayer()

    def make(kind: str) -> tuple[Path, list]:
        torch.manual_seed(0)
        cuba = slayer.block.cuba
        if kind == "dense":
            blocks = [
                cuba.Dense(SLAYER_NEURON, 12, 16, weight_scale=2, delay=True),
                cuba.Dense(SLAYER_NEURON, 16, 4, weight_scale=2),
            ]
            x = (torch.rand(2, 12, 8) > 0.5).float()
        elif kind == "conv":
            blocks = [
                cuba.Input(SLAYER_NEURON),
                cuba.Conv(SLAYER_NEURON, 1, 4, 3, padding=1, weight_scale=2),
                cuba.Conv(SLAYER_NEURON, 4, 6, 3, padding=1, stride=2, weight_scale=2),
                cuba.Flatten(),
                cuba.Dense(SLAYER_NEURON, 6 * 4 * 4, 3, weight_scale=2),
            ]
            x = torch.rand(2, 1, 8, 8, 8)
        elif kind == "pool":  # sum pooling: lava-dl writes a netx 'pool' layer
            blocks = [
                cuba.Input(SLAYER_NEURON),
                cuba.Conv(SLAYER_NEURON, 1, 4, 3, padding=1, weight_scale=2),
                cuba.Pool(SLAYER_NEURON, 2, weight_scale=2),
                cuba.Flatten(),
                cuba.Dense(SLAYER_NEURON, 4 * 4 * 4, 3, weight_scale=2),
            ]
            x = torch.rand(2, 1, 8, 8, 8)
        else:  # pragma: no cover
            raise ValueError(kind)
        return export_blocks(blocks, tmp_path / f"slayer_{kind}.net", x), blocks

    return make


@pytest.fixture(scope="session")
def lava_dl_netx_dir() -> Path:
    """The folder of netx files lava-dl's own netx tests load (installed with lava-dl)."""
    import sysconfig

    folder = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx"
    if not folder.is_dir():  # pragma: no cover - lava-dl installed without its tests
        pytest.skip("lava-dl's netx test files are not installed")
    return folder
