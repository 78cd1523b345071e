"""Sigma-delta (SDNN) nets on slayer's sigma_delta blocks: build, train, export, SynOps."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from converters import netx
from neuroprune.data import Dataset
from neuroprune.errors import UnsupportedLayerError
from neuroprune.prune.base import Measurer
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import record_activity
from neuroprune.snn.train import TrainConfig


def _datasets(path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path (groups left out)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda key, item: out.__setitem__(key, np.asarray(item[()]))
                          if isinstance(item, h5py.Dataset) else None)
    return out


def _slayer_export(model: snn_model.SNN, path) -> None:
    with h5py.File(path, "w") as handle:
        group = handle.create_group("layer")
        for index, block in enumerate(model.blocks):
            block.export_hdf5(group.create_group(str(index)))


def test_sdnn_build_uses_sigma_delta_blocks_and_sigma_output():
    model = snn_model.build("c4s2,f", (1, 8, 8), num_classes=3, neuron=snn_model.SigmaDeltaConfig(), seed=0)
    names = [f"{type(b).__module__.rsplit('.', 1)[-1]}.{type(b).__name__}" for b in model.blocks]
    assert names == ["sigma_delta.Input", "sigma_delta.Conv", "sigma_delta.Flatten", "sigma_delta.Output"]
    network = snn_model.to_ir(model)
    neurons = [layer.neuron for layer in network.layers if getattr(layer, "neuron", None) is not None]
    assert [n.kind for n in neurons] == ["SDNN"] * 3
    assert [n.sigma_output for n in neurons] == [False, False, True]
    assert all(n.activation == "relu" and n.v_th_mant == 6 for n in neurons)  # int(0.1 * 64)
    rebuilt = snn_model.build_from_meta(model.meta())
    assert rebuilt.neuron_kind == "sdnn" and [type(b) for b in rebuilt.blocks] == [type(b) for b in model.blocks]
    with pytest.raises(Exception, match="ends in a dense"):
        snn_model.build("c4", (1, 8, 8), neuron=snn_model.SigmaDeltaConfig())


def test_cuba_meta_has_no_neuron_kind():
    assert "neuron_kind" not in snn_model.build("c4,f", (1, 8, 8), num_classes=3, seed=0).meta()


def _hand_net(steps: int = 6) -> tuple[snn_model.SNN, torch.Tensor]:
    """Input 4 -> dense 3 (sigma-delta ReLU) -> sigma output 2, weights on slayer's grid (1/32)."""
    model = snn_model.build("f,d3,d2", (1, 2, 2), neuron=snn_model.SigmaDeltaConfig(event_weight=0.0), seed=0)
    hidden, output = model.blocks[2], model.blocks[3]
    with torch.no_grad():
        w1 = torch.tensor([[0.25] * 4, [-0.25] * 4, [1 / 32] * 4])
        hidden.synapse.weight.copy_(w1.reshape(hidden.synapse.weight.shape))
        output.synapse.weight.copy_(torch.full_like(output.synapse.weight, 0.5))
    x = torch.full((1, 1, 2, 2, steps), 0.5)  # a constant (static) image
    return model, x


def test_sdnn_synops_by_hand_constant_input():
    """A constant input sends its deltas on the first step only. Input: 4 pixels of 0.5, each
    >= the threshold 6/64, send one delta each at t=0 to 3 hidden neurons: 12 SynOps. Hidden
    sigma = W x: 0.5 (sends at t=0, then nothing), -0.5 (ReLU 0: never), 4 * 0.5/32 = 0.0625
    (under the threshold, and its residual stays under it: never). One hidden message to the
    2 outputs: 2 SynOps. Total 14 per inference, whatever the number of steps."""
    for steps in (4, 6):
        model, x = _hand_net(steps)
        activity = record_activity(model, x)
        assert activity.rates[0].sum() * steps == pytest.approx(4)  # the Input block's deltas
        assert activity.rates[2].sum() * steps == pytest.approx(1)  # ids: input 0, flatten 1, dense 2, output 3
        dataset = Dataset(*(np.full((1, 1, 2, 2), 0.5, np.float32), np.zeros(1, np.int64)) * 3, num_classes=2,
                          name="constant")
        measured = Measurer(dataset, TrainConfig(steps=steps, encoder="direct")).measure(model)
        assert measured.layer_synops == pytest.approx({2: 12.0, 3: 2.0})
        assert measured.synops == pytest.approx(14.0)


def test_sdnn_voltage_recording_is_refused():
    model, x = _hand_net()
    with pytest.raises(UnsupportedLayerError, match="no membrane potential"):
        record_activity(model, x, voltage=True)
