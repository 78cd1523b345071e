"""One network holding every layer kind and neuron type the IR knows: written to netx,
fitted, run in Lava (netx's blocks where lava-dl builds them, ``converters.lava_build``
elsewhere) and compared layer by layer with our bit-exact fixed point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import lava_verify, netx
from neuroprune.cli import main
from neuroprune.ir import (AverageLayer, ComplexDenseLayer, ConcatLayer, ConvLayer, ConvTransposeLayer, DenseLayer,
                           FlattenLayer, InputLayer, LAYER_TYPES, Network, Neuron, PoolLayer, RecurrentDenseLayer,
                           UnpoolLayer, NEURON_TYPES)


def _every_kind() -> Network:
    rng = np.random.default_rng(7)

    def weights(*shape: int, low: int = -30, high: int = 60) -> np.ndarray:
        return (rng.integers(low, high, size=shape) * 2).astype(np.int32)

    sdnn = Neuron(kind="SDNN", v_th_mant=4)
    lif = Neuron(kind="CUBA", i_decay=1024, v_decay=128, v_th_mant=80)
    return Network([
        InputLayer(shape=(2, 6, 6), neuron=sdnn),
        ConvLayer(weight=weights(4, 2, 3, 3), padding=1, neuron=sdnn),
        ConcatLayer(layers=(0,)),
        ConvTransposeLayer(weight=weights(6, 3, 2, 2), stride=2, neuron=sdnn),
        PoolLayer(kernel=2, weight=40, neuron=Neuron(kind="LOIHI", i_decay=1024, v_decay=128, v_th_mant=80)),
        UnpoolLayer(kernel=2, weight=30, neuron=lif),
        FlattenLayer(),
        RecurrentDenseLayer(weight=weights(8, 432, low=-2, high=10), weight_rec=weights(8, 8), neuron=lif),
        ComplexDenseLayer(weight=weights(6, 8, low=0, high=60), weight_imag=weights(6, 8),
                          neuron=Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)),
        DenseLayer(weight=weights(4, 6, low=10, high=60),
                   neuron=Neuron(kind="RF_IZHIKEVICH", v_th_mant=1, sin_decay=-2000, cos_decay=3400)),
        AverageLayer(num_outputs=2),
    ], name="every_kind")


def test_the_network_holds_every_kind_and_neuron_type():
    net = _every_kind()
    kinds = {layer.kind for layer in net}
    neurons = {layer.neuron.kind for layer in net if getattr(layer, "neuron", None) is not None}
    assert kinds == set(LAYER_TYPES), set(LAYER_TYPES) - kinds
    assert neurons == set(NEURON_TYPES), set(NEURON_TYPES) - neurons


@pytest.mark.slow
def test_every_kind_fits_and_verifies_in_lava(tmp_path, capsys):
    path = netx.write(_every_kind(), tmp_path / "every.net")
    assert main(["fit", str(path), "--chip", "loihi2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {row["type"] for row in report["layers"]} >= {"convT", "unpool", "concat", "dense_rec", "dense_comp"}
    result = lava_verify.verify(path, steps=16, samples=2, seed=1)
    assert result.exact, [(m.index, m.kind, m.percent, m.first_mismatch) for m in result.layers]
    assert all(m.lava_spikes > 0 for m in result.layers), [(m.index, m.kind, m.lava_spikes) for m in result.layers]
    assert main(["energy", str(path), "--samples", "1", "--json"]) == 0
