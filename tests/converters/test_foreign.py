"""Files written by other tools: NIR graphs exported by snntorch, sinabs and norse (their
exporters run here), our NIR read back by their importers, an ONNX graph of a
torchvision-defined net exported by torch.onnx, and lava-dl's own netx files and
recorded inputs (N-TIDIGITS, PilotNet) through ``verify``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from converters import nir as nir_conv
from converters import onnx as onnx_conv
from converters.nir_merge import _compose_conv, _conv_matrix
from neuroprune.cli import main
from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer
from neuroprune.snn.fixed import run_fixed


def _lava_dl_gts() -> Path:
    """lava-dl's reference networks and recorded inputs (its wheel ships tests/.../netx/gts)."""
    import importlib.util

    spec = importlib.util.find_spec("lava.lib.dl.netx")
    site = Path(spec.origin).parents[4]  # .../site-packages/lava/lib/dl/netx/__init__.py
    return site / "tests" / "lava" / "lib" / "dl" / "netx" / "gts"


GTS = _lava_dl_gts()


# ------------------------------------------------------------------ exporters
def _snntorch_cnn(seed: int = 0) -> nir.NIRGraph:
    """snntorch's standard CNN: Conv -> Leaky -> AvgPool -> Conv -> Leaky -> Flatten -> Linear -> Leaky."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(seed)

    def leaky(*shape: int) -> torch.nn.Module:  # per-neuron parameters: snntorch's exporter needs full shapes
        return snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape), init_hidden=True)

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), leaky(4, 8, 8), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3), leaky(6, 2, 2), torch.nn.Flatten(0), torch.nn.Linear(24, 5), leaky(5),
    )
    with torch.no_grad():  # strong enough that every layer spikes on random input
        for module in net:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.mul_(4.0)
    return export_to_nir(net, torch.zeros(1, 10, 10))  # unbatched sample: NIR shapes carry no batch


def _sinabs_cnn() -> nir.NIRGraph:
    """sinabs CNN with a SumPool2d and no neuron after it; integer weights (exact import)."""
    import sinabs.layers as sl
    from sinabs.nir import to_nir

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, bias=False), sl.IAFSqueeze(batch_size=1), sl.SumPool2d(2),
        torch.nn.Conv2d(4, 4, 3, bias=False), sl.IAFSqueeze(batch_size=1), torch.nn.Flatten(),
        torch.nn.Linear(16, 3, bias=False), sl.IAFSqueeze(batch_size=1),
    )
    with torch.no_grad():
        for module in net:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.copy_(torch.randint(-1, 3, module.weight.shape).float())
    return to_nir(net, torch.zeros(1, 2, 10, 10))


def _norse_mlp() -> nir.NIRGraph:
    """norse MLP; norse keeps the batch dimension: the Input is (1, 8)."""
    import norse.torch as norse

    torch.manual_seed(2)

    def params(n: int) -> "norse.LIFBoxParameters":
        return norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0), v_leak=torch.zeros(n),
                                      v_th=torch.full((n,), 0.1), v_reset=torch.zeros(n))

    net = norse.SequentialState(torch.nn.Linear(8, 6), norse.LIFBoxCell(params(6)),
                                torch.nn.Linear(6, 3), norse.LIFBoxCell(params(3)))
    return norse.to_nir(net, torch.zeros(1, 8))


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ------------------------------------------------------------------ fast: import
def test_pool_then_conv_composes_to_the_same_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 4, 11, 11)))
    pool_w = np.full((4, 1, 2, 2), 0.25)  # AvgPool2d(2) with padding 1, as a depthwise conv
    pool_g = {"stride": (2, 2), "padding": (1, 1), "groups": 4}
    for groups in (1, 2):
        conv_w, conv_b = rng.normal(size=(6, 4 // groups, 3, 3)), rng.normal(size=6)
        conv_g = {"stride": (2, 1), "padding": (0, 0), "dilation": (1, 1), "groups": groups}
        mid = torch.nn.functional.conv2d(x, torch.from_numpy(pool_w), stride=2, padding=1, groups=4)
        want = torch.nn.functional.conv2d(mid, torch.from_numpy(conv_w), torch.from_numpy(conv_b),
                                          stride=(2, 1), groups=groups)
        kernel, bias, geometry = _compose_conv(pool_w, None, pool_g, conv_w, conv_b, conv_g)
        assert geometry["groups"] == groups and geometry["stride"] == (4, 2) and kernel.shape[2:] == (6, 6)
        got = torch.nn.functional.conv2d(x, torch.from_numpy(kernel), torch.from_numpy(bias),
                                         stride=geometry["stride"], padding=geometry["padding"], groups=groups)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-10)
    matrix = _conv_matrix(pool_w, pool_g, (4, 11, 11), "pool")
    mid = torch.nn.functional.conv2d(x, torch.from_numpy(pool_w), stride=2, padding=1, groups=4)
    np.testing.assert_allclose(matrix @ x.numpy().reshape(-1), mid.numpy().reshape(-1), rtol=1e-12)


def test_sinabs_sum_pool_without_neuron_merges_into_the_next_conv() -> None:
    graph = _sinabs_cnn()
    with pytest.warns(UserWarning, match=r"SumPool2d\) has no neuron node after it: merged with '3' into one conv"):
        network = nir_conv.from_nir(graph)
    assert [layer.kind for layer in network.layers] == ["input", "conv", "conv", "flatten", "dense"]
    assert all(layer.neuron is not None for layer in network.layers if layer.synaptic)
    merged = network[2]
    assert merged.stride == (2, 2) and merged.weight.shape == (4, 4, 6, 6)
    # integer weights stay integers: each 3x3 conv tap spreads over the 2x2 window it sums
    conv = np.asarray(graph.nodes["3"].weight)
    np.testing.assert_array_equal(merged.weight, conv.repeat(2, axis=2).repeat(2, axis=3))


def test_snntorch_avg_pool_between_leaky_and_conv_is_merged() -> None:
    network = _quiet(nir_conv.from_nir, _snntorch_cnn(), dt=1e-4)
    assert [layer.kind for layer in network.layers] == ["input", "conv", "conv", "flatten", "dense"]
    assert network.shapes[2] == (6, 2, 2)


def _pool_graph(after: list[tuple[str, object]]) -> nir.NIRGraph:
    """Input (2, 6, 6) -> Conv2d -> IF -> AvgPool2d(2), no neuron -> ``after``."""
    rng = np.random.default_rng(5)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.integers(-2, 3, (3, 2, 3, 3)).astype(float), stride=1,
                           padding=1, dilation=1, groups=1, bias=np.zeros(3)),
        "conv.if": nir.IF(r=np.ones((3, 6, 6)), v_threshold=np.full((3, 6, 6), 4.0)),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        **dict(after), "output": nir.Output(output_type={"output": np.array([1])}),
    }
    keys = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])), type_check=False)


def test_pool_before_flatten_and_dense_becomes_one_dense_layer() -> None:
    weight = np.random.default_rng(6).normal(size=(4, 27))
    graph = _pool_graph([("flat", nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0)),
                         ("fc", nir.Affine(weight=weight, bias=np.zeros(4))),
                         ("fc.lif", nir.LIF(tau=np.full(4, 10.0), r=np.full(4, 10.0), v_leak=np.zeros(4),
                                            v_threshold=np.ones(4)))])
    with pytest.warns(UserWarning, match="merged with 'fc' into one dense layer over the flattened input"):
        network = nir_conv.from_nir(graph)
    assert [layer.kind for layer in network.layers] == ["input", "conv", "flatten", "dense"]
    dense = network[3]
    assert dense.weight.shape == (4, 108)
    pool = np.zeros((27, 108))  # the 2x2 average of each (channel, 3x3 cell) of the (3, 6, 6) map
    for c in range(3):
        for y in range(3):
            for x in range(3):
                for a in range(2):
                    for b in range(2):
                        pool[c * 9 + y * 3 + x, c * 36 + (2 * y + a) * 6 + 2 * x + b] = 0.25
    composed = weight @ pool  # quantized per layer: v_th = round(254 / max|W|), even mantissas
    v_th = dense.neuron.v_th_mant
    np.testing.assert_array_equal(dense.weight, np.clip(2 * np.round(composed * v_th / 2), -256, 254))


def test_pool_before_a_padded_conv_is_refused() -> None:
    graph = _pool_graph([("conv2", nir.Conv2d(input_shape=(3, 3), weight=np.ones((2, 3, 3, 3)), stride=1, padding=1,
                                              dilation=1, groups=1, bias=np.zeros(2))),
                         ("conv2.if", nir.IF(r=np.ones((2, 3, 3)), v_threshold=np.ones((2, 3, 3))))])
    with pytest.raises(UnsupportedLayerError, match=r"'pool' \(AvgPool2d\) has no neuron node after it and feeds "
                                                    r"'conv2' \(Conv2d, padding \(1, 1\).*add a neuron node"):
        nir_conv.from_nir(graph)


def test_neuronless_synapse_with_nothing_to_merge_into_is_refused() -> None:
    graph = _sinabs_cnn()
    tail = [key for key, node in graph.nodes.items() if type(node).__name__ in ("Conv2d", "IF", "Flatten", "Affine")
            and key not in ("0", "1")]
    for key in tail:
        del graph.nodes[key]
    graph.edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "output")]
    with pytest.raises(UnsupportedLayerError, match=r"'2' \(SumPool2d\) has no neuron node after it and no synapse "
                                                    "follows.*add a neuron node"):
        nir_conv.from_nir(graph)


def test_norse_batch_dimension_of_one_is_dropped_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "norse.nir"
    nir.write(path, _norse_mlp())
    with pytest.warns(UserWarning, match=r"input shape \(1, 8\) read as a batch of 1 of \(8,\)"):
        network = nir_conv.read(path, dt=1e-6)
    assert network.input_shape == (8,) and [layer.kind for layer in network.layers] == ["input", "dense", "dense"]


def test_time_step_error_names_dt_and_suggests_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "snntorch.nir"
    nir.write(path, _snntorch_cnn())
    assert main(["convert", str(path), str(tmp_path / "x.net")]) == 2
    err = capsys.readouterr().err
    assert "tau=0.001 is shorter than the time step dt=1" in err and "--dt 0.0001" in err
    assert "Traceback" not in err and not (tmp_path / "x.net").exists()
    with pytest.raises(UnsupportedLayerError, match=r"pass the graph's time step with --dt .*at most 1e-05"):
        _quiet(nir_conv.from_nir, _norse_mlp())


# ------------------------------------------------------------------ fast: our NIR read by others
def test_snntorch_imports_our_export_and_spikes_like_our_model() -> None:
    from snntorch.import_nir import import_from_nir

    rng = np.random.default_rng(3)
    neuron = Neuron(i_decay=4096, v_decay=0, v_th_mant=40)  # integer arithmetic: float and chip agree exactly
    network = Network([InputLayer(shape=(6,)),
                       DenseLayer(weight=rng.integers(-10, 40, (5, 6)).astype(np.int32), neuron=neuron,
                                  delay=np.zeros(5, dtype=np.int32)),
                       DenseLayer(weight=rng.integers(-10, 40, (3, 5)).astype(np.int32), neuron=neuron)])
    graph = nir_conv.to_nir(network)
    assert not any(type(node).__name__ == "Delay" for node in graph.nodes.values())
    assert nir_conv.from_nir(graph).same_as(network)  # the zero delays travel in metadata
    steps = 30
    x = (rng.random((1, 6, steps)) < 0.4).astype(np.int64)
    ours = run_fixed(network, x).spikes[2][0].numpy()
    module = _quiet(import_from_nir, graph)
    state, theirs = None, []
    for t in range(steps):
        out, state = module(torch.tensor(x[0, :, t], dtype=torch.float32)[None], state)
        theirs.append(out.detach().numpy()[0])
    theirs = np.array(theirs).T
    assert ours.sum() > 10
    np.testing.assert_array_equal(ours[:, 2:], theirs[:, :-2])  # the chip adds one step per layer


def test_norse_imports_our_export_with_pool_and_zero_delays() -> None:
    import norse.torch as norse

    rng = np.random.default_rng(4)
    neuron = Neuron(i_decay=2048, v_decay=512, v_th_mant=40)
    network = Network([InputLayer(shape=(2, 8, 8)),
                       ConvLayer(weight=rng.integers(-5, 20, (4, 2, 3, 3)).astype(np.int32), neuron=neuron, padding=1),
                       PoolLayer(kernel=2, weight=30, neuron=neuron), FlattenLayer(),
                       DenseLayer(weight=rng.integers(-5, 20, (3, 64)).astype(np.int32), neuron=neuron,
                                  delay=np.zeros(3, dtype=np.int32))])
    graph = nir_conv.to_nir(network)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert "Delay" not in kinds and "Scale" not in kinds  # the pool weight sits in the CubaLIF's w_in
    assert nir_conv.from_nir(graph).same_as(network)
    module = _quiet(norse.from_nir, graph, dt=nir_conv.EXPORT_DT)
    out, _ = module(torch.ones(1, 2, 8, 8))
    assert out.numel() == 3


# ------------------------------------------------------------------ fast: ONNX, input layouts
def _torchvision_net_onnx(path: Path) -> Path:
    """A net of torchvision's Conv2dNormActivation blocks with an AvgPool2d, fresh (no weights
    download): torch.onnx folds the batch norms and writes the equal zero biases once, then Identity."""
    from torchvision.ops import Conv2dNormActivation

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        Conv2dNormActivation(1, 8, 3), Conv2dNormActivation(8, 8, 3), torch.nn.AvgPool2d(2),
        Conv2dNormActivation(8, 16, 3), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10),
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), str(path))
    return path


def test_torchvision_net_exported_by_torch_onnx_reads_through_identity(tmp_path: Path) -> None:
    import onnx

    path = _torchvision_net_onnx(tmp_path / "tv.onnx")
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Identity" in ops and "AveragePool" in ops
    ann = onnx_conv.read_ann(path)
    assert [layer.kind for layer in ann.layers] == ["conv", "conv", "pool", "conv", "flatten", "dense"]
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    assert onnx_conv.check_against_onnxruntime(ann, path, x) < 1e-4


def test_input_layouts_chw_xyc_and_squeezed() -> None:
    x = np.arange(2 * 3 * 5 * 4).reshape(2, 3, 5, 4)  # (C, H, W, T)
    xyc = np.transpose(x, (2, 1, 0, 3))
    np.testing.assert_array_equal(lava_verify.to_chw(x, (2, 3, 5)), x[None])
    np.testing.assert_array_equal(lava_verify.to_chw(xyc, (2, 3, 5)), x[None])
    np.testing.assert_array_equal(lava_verify.to_chw(xyc[None], (2, 3, 5), "xyc"), x[None])
    flat = np.arange(64 * 7).reshape(64, 7)  # lava-dl's N-TIDIGITS input for a (64, 1, 1) net
    np.testing.assert_array_equal(lava_verify.to_chw(flat, (64, 1, 1)), flat.reshape(1, 64, 1, 1, 7))
    with pytest.raises(ShapeError, match="reads as C, H, W and as lava-dl's X, Y, C order alike"):
        lava_verify.to_chw(np.zeros((2, 5, 2, 3)), (2, 5, 2))
    np.testing.assert_array_equal(lava_verify.to_chw(np.ones((2, 5, 2, 3)), (2, 5, 2), "chw"), np.ones((1, 2, 5, 2, 3)))
    with pytest.raises(ShapeError, match=r"input has shape \(3, 5, 2, 4\).*--input-layout chw"):
        lava_verify.to_chw(xyc[None].transpose(0, 2, 1, 3, 4)[0], (2, 3, 5), "chw")


# ------------------------------------------------------------------ slow: Lava
def _cli_verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    """``neuroprune verify --json``: exit 0, spike-exact, and every layer spiked."""
    code = main(["verify", str(path), "--json", *extra])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["exact"], result
    assert all(layer["lava_spikes"] > 0 for layer in result["layers"]), result
    return result


def _verify_spiking(path: Path, network: Network, steps: int = 24) -> None:
    result = lava_verify.verify(path, steps=steps, network=network)
    assert result.exact, result.to_dict()
    assert all(layer.lava_spikes > 0 for layer in result.layers), result.to_dict()


@pytest.mark.slow
def test_snntorch_cnn_converts_and_verifies_in_lava(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "snntorch.nir"
    nir.write(source, _snntorch_cnn())
    target = tmp_path / "snntorch.net"
    assert _quiet(main, ["convert", str(source), str(target), "--dt", "1e-4"]) == 0
    _verify_spiking(target, netx.read(target))
    back = tmp_path / "back.nir"  # and our export of it is a graph nir itself reads
    assert main(["convert", str(target), str(back)]) == 0
    assert {type(n).__name__ for n in nir.read(back).nodes.values()} <= {"Input", "Conv2d", "CubaLIF", "Flatten",
                                                                         "Linear", "Affine", "Output"}


@pytest.mark.slow
def test_sinabs_cnn_converts_and_verifies_in_lava(tmp_path: Path) -> None:
    network = _quiet(nir_conv.from_nir, _sinabs_cnn())
    path = netx.write(network, tmp_path / "sinabs.net")
    _verify_spiking(path, netx.read(path))


@pytest.mark.slow
def test_norse_mlp_converts_and_verifies_in_lava(tmp_path: Path) -> None:
    source = tmp_path / "norse.nir"
    nir.write(source, _norse_mlp())
    target = tmp_path / "norse.net"
    assert _quiet(main, ["convert", str(source), str(target), "--dt", "1e-6"]) == 0
    _verify_spiking(target, netx.read(target))


def _first_layers(source: Path, target: Path, count: int, input_neuron: bool = True) -> Path:
    """A netx file with the first ``count`` layers of ``source`` (lava-dl's own file);
    without ``input_neuron`` the input layer keeps only its type and shape."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        layers = dst.create_group("layer")
        for index in range(count):
            src.copy(src["layer"][str(index)], layers, name=str(index))
        if not input_neuron:
            for key in [k for k in layers["0"] if k not in ("type", "shape")]:
                del layers["0"][key]
    return target


@pytest.mark.slow
def test_ntidigits_first_layers_verify_with_recorded_input(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    net = _first_layers(GTS / "ntidigits" / "ntidigits.net", tmp_path / "ntidigits4.net", 4)  # input, flatten, 2 dense
    assert [layer.kind for layer in netx.read(net).layers] == ["input", "flatten", "dense", "dense"]
    recorded = tmp_path / "input.npy"
    np.save(recorded, np.load(GTS / "ntidigits" / "input.npy")[:, :40])  # (64, T) for the (64, 1, 1) input
    result = _cli_verify(net, capsys, "--input", str(recorded))
    assert result["steps"] == 40 and [layer["shape"] for layer in result["layers"]] == [[256], [256]]


@pytest.mark.slow
def test_pilotnet_recorded_xyc_input_runs_through_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # input.npy holds the spikes of PilotNet's input layer, so they drive the first conv directly
    # (lava-dl's own spike-input test skips the input layer the same way)
    net = _first_layers(GTS / "pilotnet_lif" / "network.net", tmp_path / "pilotnet2.net", 2, input_neuron=False)
    recorded = np.load(GTS / "pilotnet_lif" / "input.npy")[..., :4]  # (W, H, C, T) = (200, 66, 3, T), bool
    path = tmp_path / "input.npy"
    np.save(path, recorded)
    assert main(["verify", str(net), "--input", str(path), "--input-layout", "chw"]) == 2
    assert "X, Y, C order" in capsys.readouterr().err
    result = _cli_verify(net, capsys, "--input", str(path))  # detected: only the X, Y, C reading fits
    assert result["steps"] == 4 and result["layers"][0]["shape"] == [24, 32, 99]


@pytest.mark.slow
def test_torchvision_onnx_converts_without_edits_and_verifies(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _torchvision_net_onnx(tmp_path / "tv.onnx")
    target = tmp_path / "tv.net"
    assert main(["convert", str(path), str(target), "--steps", "16"]) == 0
    capsys.readouterr()
    _cli_verify(target, capsys, "--steps", "16")
