"""NIR and ONNX mappings of the recurrent, complex, delayed, pooled and read-out layers and of
the sigma-delta and resonate-and-fire neurons: exact NIR round trips, snntorch's recurrent
leaky files read and run in Lava against snntorch's own simulation, our recurrent export read
by snntorch, ONNX graphs checked with onnxruntime, one-line refusals for what a format lacks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from converters import nir as nir_conv
from converters import onnx as onnx_conv
from neuroprune.cli import main
from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import (
    AverageLayer,
    ComplexDenseLayer,
    ConvLayer,
    DenseLayer,
    InputLayer,
    Network,
    Neuron,
    PoolLayer,
    RecurrentDenseLayer,
)

IF_NEURON = Neuron(i_decay=4096, v_decay=0, v_th_mant=8)  # integer arithmetic: float tools and the chip agree
SDNN = Neuron(kind="SDNN", v_th_mant=4, activation="relu")
RF = Neuron(kind="RF_PHASE", v_th_mant=20, sin_decay=300, cos_decay=4000)


def _ints(rng: np.random.Generator, low: int, high: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(low, high, size=shape).astype(np.int32)


def _recurrent_net(neuron: Neuron = IF_NEURON, bias: bool = False, mask: bool = False) -> Network:
    rng = np.random.default_rng(11)
    return Network([
        InputLayer(shape=(6,)),
        RecurrentDenseLayer(weight=_ints(rng, -2, 8, (5, 6)), weight_rec=_ints(rng, -6, 4, (5, 5)), neuron=neuron,
                            bias=np.arange(5, dtype=np.int32) - 2 if bias else None,
                            mask=rng.random((5, 6)) > 0.4 if mask else None, weight_bits=7 if mask else None),
        DenseLayer(weight=_ints(rng, -2, 8, (3, 5)), neuron=neuron),
    ], name="rec")


def _complex_net() -> Network:
    ones = np.ones((2, 4), dtype=np.int32)
    return Network([InputLayer(shape=(4,)), ComplexDenseLayer(weight=ones, weight_imag=ones, neuron=RF)])


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ------------------------------------------------------------------ NIR: recurrent layers as a cycle
LEAKY = Neuron(i_decay=1024, v_decay=128, v_th_mant=30, ref_delay=2)


@pytest.mark.parametrize("neuron,bias,mask", [(IF_NEURON, False, False), (LEAKY, True, True), (IF_NEURON, True, False)])
def test_recurrent_layer_round_trips_through_a_nir_cycle(neuron: Neuron, bias: bool, mask: bool,
                                                         tmp_path: Path) -> None:
    network = _recurrent_net(neuron, bias, mask)
    graph = nir_conv.to_nir(network)
    assert ("dense_rec1_rec.lif", "dense_rec1_rec.w_rec") in graph.edges
    assert ("dense_rec1_rec.w_rec", "dense_rec1_rec.lif") in graph.edges
    assert type(graph.nodes["dense_rec1_rec.lif"]).__name__ == "CubaLIF"
    np.testing.assert_array_equal(graph.nodes["dense_rec1_rec.w_rec"].weight, network[1].weight_rec)
    assert nir_conv.from_nir(graph).same_as(network)
    path = nir_conv.write(network, tmp_path / "rec.nir")
    assert nir_conv.read(path).same_as(network)
    nir.read(path, type_check=True)  # nir's own checks accept the cycle


def test_recurrent_synapse_on_a_conv_neuron_is_refused() -> None:
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(size=(2, 1, 3, 3)), stride=1, padding=0,
                           dilation=1, groups=1, bias=np.zeros(2)),
        "lif": nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.ones((2, 2, 2))),
        "rec": nir.Linear(weight=np.ones((8, 8))),
        "output": nir.Output(output_type={"output": np.array([2, 2, 2])}),
    }, edges=[("input", "conv"), ("conv", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(UnsupportedLayerError, match=r"'lif' \(IF\): a recurrent synapse 'rec' is supported on "
                                                    r"neurons behind an Affine/Linear synapse only"):
        nir_conv.from_nir(graph)


def _snntorch_rleaky(seed: int = 0) -> tuple[torch.nn.Module, nir.NIRGraph]:
    """snntorch: Linear -> RLeaky (all-to-all recurrent Linear, with its bias) -> Linear -> Leaky,
    integer weights and thresholds, no leak, reset to zero at the spike (the chip's reset).
    (snntorch 1.0's exporter fails on an RSynaptic in a Sequential; our CubaLIF cycles are
    covered by the round trips above.)"""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rleaky = snn.RLeaky(beta=torch.ones(5), threshold=torch.full((5,), 8.0), linear_features=5, init_hidden=True,
                        reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5, bias=False), rleaky, torch.nn.Linear(5, 3, bias=False),
                              snn.Leaky(beta=torch.ones(3), threshold=torch.full((3,), 8.0), init_hidden=True,
                                        reset_mechanism="zero", reset_delay=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(rng.integers(-2, 8, (5, 6)).astype(np.float32)))
        rleaky.recurrent.weight.copy_(torch.from_numpy(rng.integers(-6, 4, (5, 5)).astype(np.float32)))
        rleaky.recurrent.bias.copy_(torch.tensor([1.0, 0.0, -1.0, 0.0, 2.0]))  # a constant drive every step
        net[2].weight.copy_(torch.from_numpy(rng.integers(-2, 8, (3, 5)).astype(np.float32)))
    return net, _quiet(export_to_nir, net, torch.zeros(6))


def test_snntorch_rleaky_file_converts_fits_and_runs_in_lava_like_snntorch(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    module, graph = _snntorch_rleaky()
    kinds = {key: type(node).__name__ for key, node in graph.nodes.items()}
    assert kinds["1.lif"] == "LIF" and kinds["1.w_rec"] == "Affine"  # snntorch writes the cycle flat
    assert ("1.lif", "1.w_rec") in graph.edges and ("1.w_rec", "1.lif") in graph.edges
    source, target = tmp_path / "rleaky.nir", tmp_path / "rleaky.net"
    nir.write(source, graph)
    assert _quiet(main, ["convert", str(source), str(target), "--dt", "1e-4"]) == 0
    network = netx.read(target)
    assert [layer.kind for layer in network.layers] == ["input", "dense_rec", "dense"]
    rec = network[1]
    assert rec.neuron.is_lif and rec.neuron.v_th_mant == 8 and (rec.neuron.i_decay, rec.neuron.v_decay) == (4096, 0)
    np.testing.assert_array_equal(rec.weight_rec, module[1].recurrent.weight.detach().numpy())
    np.testing.assert_array_equal(rec.bias, [1, 0, -1, 0, 2])  # the recurrent Linear's bias drives the neurons
    capsys.readouterr()
    assert main(["fit", str(target), "--chip", "loihi2", "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert [layer["type"] for layer in report["layers"]] == ["input", "dense_rec", "dense"]
    steps = 40
    x = (np.random.default_rng(5).random((6, steps)) < 0.5).astype(np.int64)
    theirs_rec, theirs_out = [], []
    for t in range(steps):
        out = module(torch.tensor(x[:, t], dtype=torch.float32))
        theirs_rec.append(module[1].spk.detach().numpy().copy())
        theirs_out.append(out.detach().numpy().copy())
    theirs_rec, theirs_out = np.array(theirs_rec).T, np.array(theirs_out).T
    lava = lava_verify.run_lava(target, network, x)
    assert theirs_rec.sum() > 10 and theirs_out.sum() > 5
    np.testing.assert_array_equal(lava[1][:, 1:], theirs_rec[:, :-1])  # the chip adds one step per layer
    np.testing.assert_array_equal(lava[2][:, 2:], theirs_out[:, :-2])


def test_nested_recurrent_subgraph_reads_like_the_flat_cycle(tmp_path: Path) -> None:
    """snntorch builds an RLeaky as a nested graph ``Input -> lif <-> w_rec, lif -> Output``
    (nirtorch flattens it on export); a file holding the nested form reads the same."""
    from snntorch.export_nir import _extract_snntorch_module

    module, flat = _snntorch_rleaky()
    nested = nir.NIRGraph(nodes={
        "input": flat.nodes["input"], "0": flat.nodes["0"], "1": _quiet(_extract_snntorch_module, module[1]),
        "2": flat.nodes["2"], "3": flat.nodes["3"], "output": flat.nodes["output"],
    }, edges=[("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")], type_check=False)
    assert sorted(nested.nodes["1"].edges) == [("input", "lif"), ("lif", "output"), ("lif", "w_rec"),
                                               ("w_rec", "lif")]
    nir.write(tmp_path / "nested.nir", nested)
    nir.write(tmp_path / "flat.nir", flat)
    got = _quiet(nir_conv.read, tmp_path / "nested.nir", dt=1e-4)
    want = _quiet(nir_conv.read, tmp_path / "flat.nir", dt=1e-4)
    assert [layer.kind for layer in got] == ["input", "dense_rec", "dense"]
    assert got.same_as(want)


def test_a_subgraph_that_links_to_itself_is_refused_in_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    _, flat = _snntorch_rleaky()
    graph = nir.NIRGraph(nodes={"input": flat.nodes["input"], "block": flat, "output": flat.nodes["output"]},
                         edges=[("input", "block"), ("block", "output")], type_check=False)
    path = tmp_path / "loop.nir"
    nir.write(path, graph)
    with h5py.File(path, "a") as handle:  # an HDF5 hard link back to the subgraph's own group
        handle["node/nodes/block/nodes/again"] = handle["node/nodes/block"]
    assert main(["convert", str(path), str(tmp_path / "loop.net")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nests subgraphs more than 16 deep" in err, err


def test_snntorch_reads_our_recurrent_export_in_the_form_it_writes() -> None:
    """snntorch's importer finds our cycle and wraps it into its recurrent subgraph with our
    weights. (It runs that subgraph as ``lif(W_rec (x + s[t-1]))``, passing the layer input
    through the recurrent weights too, for its own RLeaky files as well; so only the
    structure is compared here, and the dynamics against Lava above.)"""
    from snntorch.import_nir import import_from_nir

    network = _recurrent_net(bias=True)
    graph = nir_conv.to_nir(network)
    _, theirs = _snntorch_rleaky()
    assert {type(graph.nodes[k]).__name__ for k in ("dense_rec1_rec.lif", "dense_rec1_rec.w_rec")} == {"CubaLIF",
                                                                                                       "Linear"}
    assert sorted(kind for key, kind in ((k, type(n).__name__) for k, n in theirs.nodes.items()) if "." in key) == \
        ["Affine", "LIF"]  # theirs: '1.lif' <-> '1.w_rec', ours: '<layer>_rec.lif' <-> '<layer>_rec.w_rec'
    module = _quiet(import_from_nir, graph)
    modules = dict(module.named_modules())
    np.testing.assert_array_equal(modules["dense_rec1_rec.dense_rec1_rec_w_rec"].weight.detach().numpy(),
                                  network[1].weight_rec)
    np.testing.assert_array_equal(modules["dense_rec1"].weight.detach().numpy(), network[1].weight)


def _has_recurrent_fixed_point() -> bool:
    from neuroprune.snn import fixed

    return "dense_rec" in fixed.SYNAPSES


@pytest.mark.skipif(not _has_recurrent_fixed_point(), reason="verify needs the bit-exact model of dense_rec")
def test_snntorch_rleaky_file_verifies_in_lava(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, graph = _snntorch_rleaky()
    source, target = tmp_path / "rleaky.nir", tmp_path / "rleaky.net"
    nir.write(source, graph)
    assert _quiet(main, ["convert", str(source), str(target), "--dt", "1e-4"]) == 0
    capsys.readouterr()
    assert main(["verify", str(target), "--json", "--steps", "24"]) == 0
    assert json.loads(capsys.readouterr().out)["exact"]


# ------------------------------------------------------------------ NIR: delays, average, pooling, refusals
def test_delays_are_nir_times_of_whole_steps() -> None:
    network = Network([InputLayer(shape=(4,)),
                       DenseLayer(weight=np.ones((3, 4), dtype=np.int32), delay=np.array([0, 2, 5], dtype=np.int32),
                                  neuron=IF_NEURON)])
    graph = nir_conv.to_nir(network, dt=1e-3)
    np.testing.assert_allclose(graph.nodes["dense1.delay"].delay, [0, 2e-3, 5e-3])  # y(t) = x(t - tau)
    assert nir_conv.from_nir(graph, dt=1e-3).same_as(network)
    graph.nodes["dense1.delay"].delay = np.array([0, 2.5e-3, 5e-3])
    with pytest.raises(UnsupportedLayerError, match=r"delays must be non-negative whole time steps of dt=0.001"):
        nir_conv.from_nir(graph, dt=1e-3)


def test_average_readout_round_trips_as_a_neuronless_linear(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    flat = Network([InputLayer(shape=(8,)), DenseLayer(weight=_ints(rng, -60, 60, (12, 8)), neuron=Neuron()),
                    AverageLayer(num_outputs=3)])
    mapped = Network([InputLayer(shape=(2, 5, 5)), ConvLayer(weight=_ints(rng, -9, 9, (4, 2, 3, 3)), neuron=Neuron()),
                      AverageLayer(num_outputs=2)])
    for network in (flat, mapped):
        graph = nir_conv.to_nir(network)
        linear = graph.nodes["average2"]
        assert type(linear).__name__ == "Linear" and linear.weight.shape == (network.output_shape[0],
                                                                              int(np.prod(network.shapes[1])))
        spikes = rng.integers(0, 2, size=int(np.prod(network.shapes[1])))
        np.testing.assert_allclose(linear.weight @ spikes, spikes.reshape(network.output_shape[0], -1).mean(axis=1),
                                   rtol=1e-6)
        assert nir_conv.read(nir_conv.write(network, tmp_path / "avg.nir")).same_as(network)
    # a neuron-less Linear that is no group mean is still refused as before
    graph = nir_conv.to_nir(flat)
    graph.nodes["average2"].weight = graph.nodes["average2"].weight * 2
    with pytest.raises(UnsupportedLayerError, match="has no neuron node after it"):
        nir_conv.from_nir(graph)


@pytest.mark.parametrize("kernel,threshold", [(2, 1.0), (3, 1.0), (2, 3.0), (3, 0.7), (2, 0.3), (5, 1 / 3)])
def test_avg_pool_with_neurons_imports_as_an_exact_pool_layer(kernel: int, threshold: float) -> None:
    """AvgPool2d taps 1/k^2 with a threshold: one mantissa w and v_th with w / v_th = 1 / (k^2 threshold),
    exactly (0.7: 250 / 1575 = 10 / 63, where 254 / round(254 * 6.3) would be off by 1e-4)."""
    side = 2 * kernel
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([2, side, side])}),
        "pool": nir.AvgPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([kernel, kernel]),
                              padding=np.array([0, 0])),
        "if": nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.full((2, 2, 2), threshold)),
        "output": nir.Output(output_type={"output": np.array([2, 2, 2])}),
    }, edges=[("input", "pool"), ("pool", "if"), ("if", "output")], type_check=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact: no rounding note
        pool = nir_conv.from_nir(graph)[1]
    assert isinstance(pool, PoolLayer) and pool.kernel == (kernel, kernel)
    assert pool.weight / pool.neuron.v_th_mant == pytest.approx(1 / (kernel * kernel * threshold), rel=1e-12)
    assert pool.weight >= 128  # the largest multiple: the chip's decays round relative to a large scale


def test_avg_pool_without_an_exact_fraction_is_rounded_with_a_note() -> None:
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
        "pool": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]), padding=np.array([0, 0])),
        "if": nir.IF(r=np.ones((1, 2, 2)), v_threshold=np.full((1, 2, 2), 0.712345678)),
        "output": nir.Output(output_type={"output": np.array([1, 2, 2])}),
    }, edges=[("input", "pool"), ("pool", "if"), ("if", "output")], type_check=False)
    with pytest.warns(UserWarning, match=r"'pool' \(AvgPool2d\): the average pool's 1/\(k\^2 threshold\) has no exact "
                                         r"fraction of chip integers; stored as 254/1628 \(relative error 2.6e-04\)"):
        pool = nir_conv.from_nir(graph)[1]
    assert (pool.weight, pool.neuron.v_th_mant) == (254, round(254 * 9 * 0.712345678))


@pytest.mark.parametrize("make,text", [
    (lambda: _recurrent_net(SDNN), "neuron type SDNN has no NIR node"),
    (lambda: _recurrent_net(RF), "neuron type RF_PHASE has no NIR node"),
    (_complex_net,
     "layer type 'dense_comp' has no NIR form"),
])
def test_nir_export_refuses_what_nir_has_no_node_for_in_one_line(make, text: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = netx.write(make(), tmp_path / "n.net")
    assert main(["convert", str(source), str(tmp_path / "n.nir")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and text in err and "write .net (lava-dl netx)" in err, err
    assert not (tmp_path / "n.nir").exists()


# ------------------------------------------------------------------ ONNX
def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def test_onnx_average_is_a_mean_of_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    network = Network([InputLayer(shape=(8,)), DenseLayer(weight=_ints(rng, -60, 60, (12, 8)), neuron=Neuron()),
                       AverageLayer(num_outputs=3)])
    source, target = netx.write(network, tmp_path / "avg.net"), tmp_path / "avg.onnx"
    assert main(["convert", str(source), str(target)]) == 0
    x = rng.random((4, 8))
    relu = np.maximum(x @ network[1].weight.T, 0)
    np.testing.assert_allclose(_onnxruntime(target, x), relu.reshape(4, 3, 4).mean(axis=2), rtol=1e-5)


def test_onnx_sigma_delta_net_is_its_relu_ann(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    network = Network([InputLayer(shape=(6,), neuron=Neuron(kind="SDNN", v_th_mant=0, activation="relu")),
                       DenseLayer(weight=_ints(rng, -8, 8, (5, 6)), neuron=SDNN, bias=_ints(rng, -3, 3, (5,))),
                       DenseLayer(weight=_ints(rng, -8, 8, (3, 5)),
                                  neuron=Neuron(kind="SDNN", v_th_mant=2, activation="relu", sigma_output=True))])
    source, target = netx.write(network, tmp_path / "sdnn.net"), tmp_path / "sdnn.onnx"
    assert main(["convert", str(source), str(target)]) == 0
    x = rng.random((4, 6))
    hidden = np.maximum(x @ network[1].weight.T + network[1].bias, 0)
    np.testing.assert_allclose(_onnxruntime(target, x), np.maximum(hidden @ network[2].weight.T, 0), rtol=1e-5)
    import onnx

    docs = [node.doc_string for node in onnx.load(str(target)).graph.node if node.op_type == "Gemm"]
    assert all("SDNN sigma-delta neuron, ReLU" in doc for doc in docs)


def test_onnx_delays_export_the_rates_and_say_so() -> None:
    network = Network([InputLayer(shape=(4,)),
                       DenseLayer(weight=np.ones((3, 4), dtype=np.int32), delay=np.array([0, 2, 5], dtype=np.int32),
                                  neuron=IF_NEURON)])
    gemm = [node for node in onnx_conv.to_onnx(network).graph.node if node.op_type == "Gemm"][0]
    assert "synaptic delays (they shift spike times, not rates) are not shown" in gemm.doc_string


@pytest.mark.parametrize("make,text", [
    (lambda: _recurrent_net(), "layer type 'dense_rec' has no ONNX export"),
    (_complex_net,
     "layer type 'dense_comp' has no ONNX export"),
    (lambda: Network([InputLayer(shape=(4,)), DenseLayer(weight=np.ones((2, 4), dtype=np.int32), neuron=RF)]),
     "neuron type RF_PHASE has no ANN equivalent in ONNX"),
])
def test_onnx_export_refuses_what_has_no_ann_form_in_one_line(make, text: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = netx.write(make(), tmp_path / "n.net")
    assert main(["convert", str(source), str(tmp_path / "n.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and text in err and "write .net (lava-dl netx)" in err, err
    assert not (tmp_path / "n.onnx").exists()


# ------------------------------------------------------------------ CLI
def _delay_net() -> Network:
    rng = np.random.default_rng(9)
    return Network([InputLayer(shape=(6,)),
                    DenseLayer(weight=_ints(rng, -9, 9, (5, 6)), neuron=IF_NEURON, delay=np.arange(5, dtype=np.int32)),
                    DenseLayer(weight=_ints(rng, -9, 9, (4, 5)), neuron=IF_NEURON, delay=np.arange(5, dtype=np.int32)),
                    AverageLayer(num_outputs=2)], name="delays")


@pytest.mark.parametrize("make", [_recurrent_net, _delay_net], ids=["dense_rec", "delays_average"])
def test_convert_netx_to_nir_and_back_is_exact(make, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    network = make()
    source = netx.write(network, tmp_path / "a.net")
    assert main(["convert", str(source), str(tmp_path / "a.nir"), "--dt", "1e-3"]) == 0
    assert main(["convert", str(tmp_path / "a.nir"), str(tmp_path / "b.net")]) == 0  # dt from the graph metadata
    assert netx.read(tmp_path / "b.net").same_as(netx.read(source))
    capsys.readouterr()
    assert main(["convert", str(source), str(tmp_path / "a.onnx")]) == (2 if make is _recurrent_net else 0)


def test_lava_dl_ntidigits_with_delays_and_average_converts_to_nir_and_onnx(lava_dl_netx_dir, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = lava_dl_netx_dir / "gts/ntidigits/ntidigits.net"
    network = netx.read(source)
    assert int(network[2].delay.max()) == 62 and network[-1].kind == "average"
    assert main(["convert", str(source), str(tmp_path / "nt.nir")]) == 0
    back = nir_conv.read(tmp_path / "nt.nir")
    assert back.same_as(network)
    graph = nir.read(tmp_path / "nt.nir", type_check=False)
    assert float(np.max(graph.nodes["dense2.delay"].delay)) == pytest.approx(62 * nir_conv.EXPORT_DT)
    assert main(["convert", str(source), str(tmp_path / "nt.onnx")]) == 0
    assert _onnxruntime(tmp_path / "nt.onnx", np.zeros((2, *network.input_shape))).shape == (2, 11)
