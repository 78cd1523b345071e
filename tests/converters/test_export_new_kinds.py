"""ONNX export of convT, unpool and concat (ConvTranspose, Concat), checked by running the
graph in onnxruntime against torch; NIR, which has neither, refuses them in one line."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from converters import netx, onnx_write
from neuroprune.cli import main
from neuroprune.ir import ConcatLayer, ConvLayer, ConvTransposeLayer, InputLayer, Network, Neuron, UnpoolLayer

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=30)


def _net() -> Network:
    rng = np.random.default_rng(9)
    return Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=rng.integers(-20, 30, size=(3, 2, 3, 3)), padding=1, neuron=NEURON),
        ConcatLayer(layers=(0,)),
        ConvTransposeLayer(weight=rng.integers(-20, 30, size=(5, 2, 2, 2)), stride=2, neuron=NEURON,
                           bias=np.array([4, -3])),
        UnpoolLayer(kernel=2, weight=3, neuron=NEURON),
    ], name="decoder")


def test_onnx_export_runs_and_matches_torch():
    import onnxruntime as ort
    net = _net()
    model = onnx_write.to_onnx(net)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("ConvTranspose") == 2 and ops.count("Concat") == 1
    x = np.random.default_rng(1).random((2, 2, 4, 4)).astype(np.float32)
    out = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]

    t = torch.as_tensor(x, dtype=torch.float64)
    conv = F.relu(F.conv2d(t, torch.as_tensor(net[1].weight, dtype=torch.float64), padding=1))
    joined = torch.cat([conv, t], dim=1)
    up = F.relu(F.conv_transpose2d(joined, torch.as_tensor(net[3].weight, dtype=torch.float64), stride=2,
                                   bias=torch.tensor([4.0, -3.0], dtype=torch.float64)))
    expected = F.relu(F.conv_transpose2d(up, torch.full((2, 1, 2, 2), 3.0, dtype=torch.float64), stride=2,
                                         groups=2))
    assert out.shape == (2, 2, 16, 16)
    assert np.allclose(out, expected.numpy(), rtol=1e-4, atol=1e-2)


def test_nir_refuses_each_new_kind_in_one_line(tmp_path, capsys):
    path = netx.write(_net(), tmp_path / "decoder.net")
    assert main(["convert", str(path), str(tmp_path / "decoder.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: layer 2 (concat 'concat2'): layer type 'concat' has no NIR export"), err
    assert not (tmp_path / "decoder.nir").exists()
    no_concat = Network(_net().layers[:2] + (ConvTransposeLayer(weight=np.ones((3, 1, 2, 2), dtype=np.int32),
                                                                 stride=2, neuron=NEURON),))
    path = netx.write(no_concat, tmp_path / "up.net")
    assert main(["convert", str(path), str(tmp_path / "up.nir")]) == 2
    assert "layer type 'convT' has no NIR export" in capsys.readouterr().err
