"""Spike-exact agreement with Lava (Loihi2SimCfg, fixed point). These run Lava for real."""

import h5py
import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from neuroprune.cli import main
from neuroprune.data import load_digits
from neuroprune.ir import ConvLayer
from neuroprune.snn import model as snn_model

pytestmark = pytest.mark.slow
STEPS = 32


def _export(model, path):
    return netx.write(snn_model.to_ir(model), path)


def _digits_input(model, samples=2):
    data = load_digits(seed=0)
    x = torch.as_tensor(data.x_test[:samples]).unsqueeze(-1).repeat(1, 1, 1, 1, STEPS)
    return model.chip_input(x).numpy()


def _assert_exact(result):
    assert result.exact, [(m.index, m.percent, m.first_mismatch) for m in result.layers]
    assert result.steps >= 32
    # the check is not vacuous: every layer spiked
    assert all(m.lava_spikes > 0 for m in result.layers), [(m.index, m.lava_spikes) for m in result.layers]


def test_dense_net_random_spikes(tmp_path):
    model = snn_model.build("d24,d6", (40,), input_neuron=False, seed=0)
    with torch.no_grad():
        for block in model.blocks:
            block.synapse.weight.mul_(4)
    path = _export(model, tmp_path / "dense.net")
    _assert_exact(lava_verify.verify(path, steps=STEPS, samples=2, seed=1))


def test_conv_net_random_and_digits_input(tmp_path):
    model = snn_model.build("c6,c8,f,d10", (1, 8, 8), seed=1)
    path = _export(model, tmp_path / "conv.net")
    _assert_exact(lava_verify.verify(path, steps=STEPS, samples=1, seed=2))
    _assert_exact(lava_verify.verify(path, x=_digits_input(model)))


def test_strided_conv_net_digits_input(tmp_path):
    model = snn_model.build("c6,c8s2,f,d10", (1, 8, 8), seed=2)
    path = _export(model, tmp_path / "strided.net")
    network = netx.read(path)
    assert network[2].stride == (2, 2)
    _assert_exact(lava_verify.verify(path, x=_digits_input(model)))


def test_net_with_zeroed_channels(tmp_path):
    model = snn_model.build("c6,c8s2,f,d10", (1, 8, 8), seed=3)
    with torch.no_grad():
        model.blocks[1].synapse.weight[[1, 4]] = 0  # two silent conv channels
    network = snn_model.to_ir(model)
    assert isinstance(network[1], ConvLayer) and not network[1].weight[[1, 4]].any()
    path = netx.write(network, tmp_path / "zeroed.net")
    result = lava_verify.verify(path, x=_digits_input(model, samples=1))
    _assert_exact(result)
    fixed = lava_verify.run_lava(path, network, _digits_input(model, samples=1)[0])
    assert fixed[1][[1, 4]].sum() == 0 and fixed[1].sum() > 0


def test_lava_dl_written_file_verifies(slayer_export):
    path, _ = slayer_export("conv")
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=4))


def test_mismatch_is_reported_with_first_location(tmp_path, conv_net):
    path = netx.write(conv_net, tmp_path / "c.net")
    with h5py.File(path, "a") as handle:
        weight = handle["layer/4/weight"][()]
        weight[0] = -weight[0] + 20  # the file differs from the IR we compare against
        handle["layer/4/weight"][...] = weight
    result = lava_verify.verify(path, steps=STEPS, seed=5, network=conv_net)
    assert not result.exact
    bad = [m for m in result.layers if m.matched != m.total]
    assert [m.index for m in bad] == [4]
    sample, neuron, step = bad[0].first_mismatch
    assert sample == 0 and neuron == 0 and 0 < step < STEPS


def test_cli_verify_exit_codes(tmp_path, conv_net, capsys):
    path = netx.write(conv_net, tmp_path / "c.net")
    assert main(["verify", str(path), "--steps", "32"]) == 0
    assert "spike-exact" in capsys.readouterr().out
    bad_input = tmp_path / "x.npy"
    np.save(bad_input, np.zeros((3, 3, 32), dtype=np.int64))
    assert main(["verify", str(path), "--input", str(bad_input)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "expects (2, 8, 8)" in err



def test_lava_dl_pool_file_verifies_spike_exact(slayer_export):
    """lava-dl's 'pool' layer: read as a pool, run in fixed point as sum pooling, run in
    Lava as the depthwise conv (lava-dl 0.6's netx builds no process for 'pool')."""
    path, _ = slayer_export("pool")
    assert netx.stored_types(path) == ["input", "conv", "pool", "flatten", "dense"]
    network = netx.read(path)
    assert network[2].kind == "pool" and network[2].weight == 128
    result = lava_verify.verify(path, steps=STEPS, samples=2, seed=4)
    assert [m.kind for m in result.layers] == ["input", "conv", "pool", "dense"]
    _assert_exact(result)
