import h5py
import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.errors import FormatError, UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer


def test_round_trip_dense_is_identical(dense_net, tmp_path):
    path = netx.write(dense_net, tmp_path / "dense.net")
    back = netx.read(path)
    assert back.same_as(dense_net)
    assert back.shapes == dense_net.shapes


def test_round_trip_conv_with_stride_padding_dilation_groups_and_delays(tmp_path):
    rng = np.random.default_rng(3)
    neuron = Neuron(kind="LOIHI", i_decay=4096, v_decay=0, v_th_mant=100, ref_delay=2, graded_spike=False)
    net = Network(
        [
            InputLayer(shape=(4, 9, 7), neuron=neuron),
            ConvLayer(weight=rng.integers(-128, 127, (8, 2, 3, 2)).astype(np.int32), neuron=neuron,
                      stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                      bias=np.arange(8, dtype=np.int32)),
            FlattenLayer(),
            DenseLayer(weight=rng.integers(-128, 127, (5, 8 * 5 * 5)).astype(np.int32), neuron=neuron,
                       delay=np.array([0, 1, 2, 3, 4], dtype=np.int32)),
        ]
    )
    back = netx.read(netx.write(net, tmp_path / "conv.net"))
    assert back.same_as(net)


def test_mask_is_written_as_zero_weights(tmp_path, dense_net):
    mask = np.ones_like(dense_net[1].weight, dtype=bool)
    mask[:, :5] = False
    masked = dense_net.replace(1, DenseLayer(weight=dense_net[1].weight, mask=mask, neuron=dense_net[1].neuron))
    back = netx.read(netx.write(masked, tmp_path / "m.net"))
    assert np.array_equal(back[1].weight, masked[1].effective_weight)
    assert (back[1].weight[:, :5] == 0).all()


def test_pool_is_written_as_depthwise_conv(tmp_path):
    net = Network([InputLayer(shape=(3, 4, 4)), PoolLayer(kernel=2, weight=16, neuron=Neuron())])
    back = netx.read(netx.write(net, tmp_path / "p.net"))
    assert isinstance(back[1], ConvLayer) and back[1].groups == 3
    assert back.shapes == net.shapes


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, dense_net):
    target = tmp_path / "a.net"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    import converters.netx as module

    original = module._WRITERS["dense"]
    module._WRITERS["dense"] = lambda *a, **k: (_ for _ in ()).throw(Boom())
    try:
        with pytest.raises(Boom):
            netx.write(dense_net, target)
    finally:
        module._WRITERS["dense"] = original
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.net"]


def test_unsupported_layer_type_names_index_and_type(tmp_path, dense_net):
    path = netx.write(dense_net, tmp_path / "x.net")
    with h5py.File(path, "a") as handle:
        del handle["layer/2/type"]
        handle["layer/2"].create_dataset("type", (1,), "S10", [b"deconv"])
    with pytest.raises(UnsupportedLayerError,
                       match=r"layer 2: layer type 'deconv' has no netx reader; supported: input, dense, dense_rec, "
                             r"dense_comp, conv, convT, pool, unpool, flatten, concat, average"):
        netx.read(path)


def test_unsupported_neuron_type_is_named(tmp_path, dense_net):
    path = netx.write(dense_net, tmp_path / "x.net")
    with h5py.File(path, "a") as handle:
        del handle["layer/1/neuron/type"]
        handle["layer/1/neuron"].create_dataset("type", data="ADAPTIVE")
    with pytest.raises(UnsupportedLayerError, match="layer 1: neuron type 'ADAPTIVE'"):
        netx.read(path)


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all", None])
def test_corrupt_truncated_or_foreign_files_give_format_error(tmp_path, dense_net, content):
    path = tmp_path / "bad.net"
    if content is None:  # truncated real file
        good = netx.write(dense_net, tmp_path / "good.net").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(FormatError, match="bad.net"):
        netx.read(path)


def test_missing_file_and_wrong_hdf5_layout(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        netx.read(tmp_path / "missing.net")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("x", data=[1, 2])
    with pytest.raises(FormatError, match="no /layer group"):
        netx.read(other)


def test_cli_info_prints_table_and_fails_cleanly(tmp_path, conv_net, capsys):
    path = netx.write(conv_net, tmp_path / "c.net")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "6x4x4" in out and "CUBA" in out
    bad = tmp_path / "bad.net"
    bad.write_bytes(b"garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_info_subprocess_exit_code(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.net"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    result = subprocess.run([sys.executable, "-m", "neuroprune.cli", "info", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error:")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_lava_dl_export_reads_back_with_identical_weights(slayer_export, kind):
    path, blocks = slayer_export(kind)
    net = netx.read(path)
    synaptic = [b for b in blocks if hasattr(b, "synapse") and b.synapse is not None]
    ours = [net[i] for i in net.synaptic_indices()]
    assert len(ours) == len(synaptic)
    for layer, block in zip(ours, synaptic):
        expected = block.synapse.pre_hook_fx(block.synapse.weight, descale=True).detach().numpy()
        expected = expected.reshape(layer.weight.shape)
        assert np.array_equal(layer.weight, expected.astype(np.int32))
        assert np.array_equal(expected, np.round(expected))  # mantissas are integers
        params = block.neuron.device_params
        assert layer.neuron.i_decay == params["iDecay"] and layer.neuron.v_th_mant == params["vThMant"]
    if kind == "dense":
        assert net[1].delay is not None and net[1].delay.shape == (16,)


@pytest.mark.slow
def test_written_file_loads_in_lava_dl_netx_with_matching_shapes(conv_net, dense_net, tmp_path):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        from lava.lib.dl.netx import hdf5

    for net in (conv_net, dense_net):
        path = netx.write(net, tmp_path / f"{net.name}.net")
        lava_net = hdf5.Network(net_config=str(path))
        ours = [tuple(reversed(s)) for layer, s in zip(net.layers, net.shapes)
                if layer.kind != "flatten" and (layer.kind != "input" or layer.neuron is not None)]
        assert [tuple(layer.shape) for layer in lava_net.layers] == ours


def _lava_dl_pool_file(path, weight=64, kernel=2, stride=2):
    """A netx file laid out as lava-dl's slayer exports conv -> Pool -> flatten -> dense."""
    rng = np.random.default_rng(0)
    neuron = {"type": b"CUBA", "iDecay": 1024, "vDecay": 128, "vThMant": 40, "refDelay": 1, "gradedSpike": False}
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")

        def group(index, kind, shape):
            g = layers.create_group(str(index))
            g.create_dataset("type", (1,), "S10", [kind.encode()])
            g.create_dataset("shape", data=np.array(shape))
            for key, value in neuron.items():
                g.create_dataset(f"neuron/{key}", data=value)
            return g

        inp = layers.create_group("0")
        inp.create_dataset("type", (1,), "S10", [b"input"])
        inp.create_dataset("shape", data=np.array([2, 6, 6]))
        conv = group(1, "conv", [4, 6, 6])
        conv.create_dataset("weight", data=rng.integers(-60, 60, size=(4, 2, 3, 3)) * 2)
        for key, value in (("inChannels", 2), ("outChannels", 4), ("kernelSize", [3, 3]), ("stride", [1, 1]),
                           ("padding", [1, 1]), ("dilation", [1, 1]), ("groups", 1)):
            conv.create_dataset(key, data=value)
        pool = group(2, "pool", [4, 6 // stride, 6 // stride])
        for key, value in (("kernelSize", [kernel, kernel]), ("stride", [stride, stride]), ("padding", [0, 0]),
                           ("dilation", [1, 1])):
            pool.create_dataset(key, data=np.array(value))
        pool.create_dataset("weight", data=np.full((1, 1, kernel, kernel), float(weight)))
        flat = layers.create_group("3")
        flat.create_dataset("type", (1,), "S10", [b"flatten"])
        flat.create_dataset("shape", data=np.array([4 * (6 // stride) ** 2, 1, 1]))
        dense = group(4, "dense", [5])
        dense.create_dataset("weight", data=rng.integers(-60, 60, size=(5, 4 * (6 // stride) ** 2)) * 2)
    return path


def test_lava_dl_pool_layer_reads_as_a_pool_and_is_written_as_its_depthwise_conv(tmp_path):
    from neuroprune.snn.fixed import run_fixed

    network = netx.read(_lava_dl_pool_file(tmp_path / "pool.net", weight=48))
    pool = network[2]
    assert isinstance(pool, PoolLayer)
    assert (pool.kernel, pool.stride, pool.padding, pool.weight) == ((2, 2), (2, 2), (0, 0), 48)
    assert pool.neuron is not None and pool.neuron.v_th_mant == 40
    assert network.shapes[2] == (4, 3, 3)
    # written for Lava as the depthwise conv; both forms spike alike in fixed point
    again = netx.read(netx.write(network, tmp_path / "again.net"))
    assert isinstance(again[2], ConvLayer) and again[2].groups == 4 and np.all(again[2].weight == 48)
    x = (np.random.default_rng(1).random((2, 2, 6, 6, 12)) < 0.4).astype(np.int64)
    ours, theirs = run_fixed(network, x).spikes, run_fixed(again, x).spikes
    assert sorted(ours) == sorted(theirs) == [1, 2, 4]
    assert int(ours[2].sum()) > 0
    for index in ours:
        assert np.array_equal(ours[index].numpy(), theirs[index].numpy())


def test_pool_layer_with_unequal_taps_is_refused(tmp_path):
    path = _lava_dl_pool_file(tmp_path / "pool.net")
    with h5py.File(path, "a") as handle:
        del handle["layer/2/weight"]
        handle["layer/2"].create_dataset("weight", data=np.array([[[[64.0, 32.0], [64.0, 64.0]]]]))
    with pytest.raises(UnsupportedLayerError, match=r"layer 2: pool layer with 2 different tap weights.*depthwise conv"):
        netx.read(path)


def test_cli_info_and_fit_show_a_lava_dl_pool_layer(tmp_path, capsys):
    path = _lava_dl_pool_file(tmp_path / "pool.net", weight=48)
    assert main(["info", str(path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " pool " in line)
    assert "4x3x3" in row and "CUBA" in row and "k2x2 s2,2 p0,0 w48" in row
    assert main(["fit", str(path), "--chip", "loihi2"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " pool " in line)
    assert " 36 " in row  # 4x3x3 compartments placed
