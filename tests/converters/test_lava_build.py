"""converters.lava_build: the Lava graph of networks lava-dl 0.6's netx cannot build."""

from __future__ import annotations

import contextlib
import io

import h5py
import numpy as np
import pytest

from converters import lava_build, lava_verify, netx
from neuroprune.ir import (ComplexDenseLayer, ConcatLayer, ConvLayer, DenseLayer, InputLayer, Network, Neuron,
                           PoolLayer)

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=30)


def test_complex_dense_builds_and_runs_where_netx_fails(tmp_path):
    from lava.lib.dl.netx import hdf5

    rng = np.random.default_rng(0)
    rf = Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=300, cos_decay=4000)
    net = Network([InputLayer(shape=(6,)), ComplexDenseLayer(weight=rng.integers(0, 250, (4, 6)),
                                                             weight_imag=rng.integers(-250, 250, (4, 6)), neuron=rf)])
    path = netx.write(net, tmp_path / "complex.net")
    with pytest.raises(AttributeError, match="create_complex_dense"), contextlib.redirect_stdout(io.StringIO()):
        hdf5.Network(net_config=str(path))  # lava-dl 0.6's netx has no create_complex_dense
    out = lava_build.run_lava(path, net, (rng.random((6, 12)) < 0.5).astype(np.int64))
    assert list(out) == [1] and out[1].shape == (4, 12) and out[1].sum() > 0


def test_verify_uses_netx_when_it_builds_every_layer_and_the_builder_otherwise(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    layers = [InputLayer(shape=(2, 4, 4)), ConvLayer(weight=rng.integers(-10, 80, (3, 2, 2, 2)), neuron=NEURON)]
    plain = netx.write(Network(layers), tmp_path / "plain.net")
    built = []
    real = lava_build.run_lava
    monkeypatch.setattr(lava_build, "run_lava", lambda *args: built.append(args[0]) or real(*args))
    assert lava_verify.verify(plain, steps=6).exact and built == []
    # a pool layer as lava-dl's slayer writes it (netx cannot build it): the builder
    path = netx.write(Network(layers + [PoolLayer(kernel=2, weight=40, neuron=NEURON)]), tmp_path / "pool.net")
    with h5py.File(path, "a") as handle:  # our writer stores the depthwise conv; make it slayer's pool
        group = handle["layer/2"]
        del group["type"], group["weight"], group["groups"], group["inChannels"], group["outChannels"]
        group.create_dataset("type", (1,), "S10", [b"pool"])
        group.create_dataset("weight", data=np.full((1, 1, 2, 2), 40))
    assert netx.read(path)[2].kind == "pool"
    result = lava_verify.verify(path, steps=8)
    assert built == [path] and result.exact and all(layer.lava_spikes > 0 for layer in result.layers)


def test_a_concat_may_end_the_network(tmp_path):
    rng = np.random.default_rng(2)
    net = Network([
        InputLayer(shape=(5,)),
        DenseLayer(weight=rng.integers(-10, 90, (4, 5)), neuron=NEURON),
        DenseLayer(weight=rng.integers(-10, 90, (3, 4)), neuron=NEURON),
        ConcatLayer(layers=(1, 0)),
    ])
    result = lava_verify.verify(netx.write(net, tmp_path / "end.net"), steps=8)
    assert [layer.index for layer in result.layers] == [1, 2] and result.exact


def test_a_transposed_conv_too_large_to_unroll_is_refused_in_one_line(tmp_path, capsys):
    from neuroprune.cli import main
    from neuroprune.ir import ConvTransposeLayer

    weight = np.ones((32, 16, 4, 4), dtype=np.int32)
    net = Network([InputLayer(shape=(32, 16, 16)), ConvTransposeLayer(weight=weight, stride=2, padding=1,
                                                                       neuron=NEURON)])
    path = netx.write(net, tmp_path / "big.net")
    assert main(["verify", str(path), "--steps", "1"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (a first Lava import may print a CUDA note before)
    assert last.startswith("error: convT layer 'convT1': Lava runs it as a 16384 x 8192 dense matrix"), last
