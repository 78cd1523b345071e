"""NIR import/export: exact round trips, graphs built with nir's own API, errors, CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np
import pytest

from converters import netx
from converters import nir as nir_conv
from neuroprune.cli import main
from neuroprune.errors import FormatError, UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer
from neuroprune.snn.fixed import run_fixed

RNG_SEED = 7


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.integers(-60, 61, size=shape) * 2).astype(np.int32)


@pytest.fixture
def rich_net() -> Network:
    """Every exportable feature at once: input neuron, biases on both paths, pool, odd
    decays (0, 1, 3, 17, 4096), graded spikes, refractory delay, delays, a mask."""
    rng = np.random.default_rng(RNG_SEED)
    return Network(
        [
            InputLayer(shape=(2, 8, 8), neuron=Neuron(i_decay=4096, v_decay=0, v_th_mant=127)),
            ConvLayer(weight=_weights(rng, (4, 2, 3, 3)), neuron=Neuron(i_decay=4096, v_decay=0, v_th_mant=300),
                      padding=1, bias=np.arange(4, dtype=np.int32)),
            PoolLayer(kernel=2, weight=100, neuron=Neuron(i_decay=4096, v_decay=0, v_th_mant=200, ref_delay=3,
                                                           graded_spike=True)),
            ConvLayer(weight=_weights(rng, (6, 4, 3, 3)), neuron=Neuron(i_decay=1024, v_decay=17, v_th_mant=99),
                      stride=2, padding=1, bias=np.arange(6, dtype=np.int32) - 3),
            FlattenLayer(),
            DenseLayer(weight=_weights(rng, (5, 24)), neuron=Neuron(kind="LOIHI", i_decay=0, v_decay=4096, v_th_mant=10),
                       delay=np.arange(5, dtype=np.int32)),
            DenseLayer(weight=_weights(rng, (3, 5)), neuron=Neuron(i_decay=1, v_decay=3, v_th_mant=0),
                       mask=rng.random((3, 5)) > 0.5, bias=np.zeros(3, dtype=np.int32), weight_bits=6),
        ],
        name="rich",
    )


@pytest.mark.parametrize("fixture", ["dense_net", "conv_net", "rich_net"])
def test_round_trip_in_memory_and_through_file_is_identical(fixture: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    network = request.getfixturevalue(fixture)
    assert nir_conv.from_nir(nir_conv.to_nir(network)).same_as(network)
    path = nir_conv.write(network, tmp_path / f"{fixture}.nir")
    assert nir_conv.read(path).same_as(network)
    # nir's own reader with its type checking accepts our file
    graph = nir.read(path, type_check=True)
    assert list(graph.nodes["output"].output_type["output"]) == list(network.output_shape)


def test_round_trip_with_other_dt_is_identical(conv_net: Network) -> None:
    graph = nir_conv.to_nir(conv_net, dt=1e-3)
    assert graph.nodes["conv1.lif"].tau_syn.flat[0] == pytest.approx(4e-3)  # i_decay 1024 -> 4 steps of 1 ms
    assert nir_conv.from_nir(graph, dt=1e-3).same_as(conv_net)


def test_export_maps_cuba_parameters_as_documented(dense_net: Network) -> None:
    graph = nir_conv.to_nir(dense_net, dt=1.0)
    kinds = [type(graph.nodes[k]).__name__ for k in ("input0", "dense1", "dense1.lif", "dense2", "dense2.lif", "output")]
    assert kinds == ["Input", "Linear", "CubaLIF", "Linear", "CubaLIF", "Output"]
    lif = graph.nodes["dense1.lif"]  # NEURON: i_decay 1024, v_decay 128, v_th_mant 80
    assert np.all(lif.tau_syn == 4096 / 1024) and np.all(lif.tau_mem == 4096 / 128)
    assert np.all(lif.w_in == lif.tau_syn) and np.all(lif.r == lif.tau_mem)  # unit gains
    assert np.all(lif.v_threshold == 80) and np.all(lif.v_reset == 0)
    assert lif.metadata["neuroprune_i_decay"] == 1024
    np.testing.assert_array_equal(graph.nodes["dense1"].weight, dense_net[1].weight)


def test_bias_goes_to_affine_without_current_memory_else_to_v_leak() -> None:
    bias = np.array([3, -2], dtype=np.int32)
    no_memory = Neuron(i_decay=4096, v_decay=256, v_th_mant=50)
    with_memory = dataclasses.replace(no_memory, i_decay=2048)
    for neuron, synapse_type in ((no_memory, "Affine"), (with_memory, "Linear")):
        network = Network([InputLayer(shape=(3,)),
                           DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=neuron, bias=bias)])
        graph = nir_conv.to_nir(network, dt=1.0)
        assert type(graph.nodes["dense1"]).__name__ == synapse_type
        lif = graph.nodes["dense1.lif"]
        if synapse_type == "Linear":  # v_leak * dt / tau_mem = bias per step
            np.testing.assert_allclose(lif.v_leak / lif.tau_mem, bias)
        assert nir_conv.from_nir(graph).same_as(network)


def _lif(n: int, tau_syn: float = 4.0, tau_mem: float = 8.0, threshold: float = 1.0) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, tau_mem),
                       v_leak=np.zeros(n), v_threshold=np.full(n, threshold), w_in=np.full(n, tau_syn))


def _reference(x: np.ndarray, synapses: list[tuple[np.ndarray, np.ndarray]],
               neurons: list[nir.CubaLIF | nir.IF]) -> list[np.ndarray]:
    """Forward-Euler simulation (dt = 1) of a dense NIR CubaLIF / IF chain, with the chip's
    one step per synaptic layer. x: (N, F, T) spikes."""
    previous, outputs = x.astype(np.float64), []
    steps = x.shape[-1]
    for (weight, bias), node in zip(synapses, neurons):
        current = np.zeros((x.shape[0], weight.shape[0]))
        voltage = np.zeros_like(current)
        spikes = np.zeros((*current.shape, steps))
        for t in range(steps):
            drive = (previous[..., t - 1] @ weight.T if t else 0.0) + bias
            if isinstance(node, nir.IF):  # dv/dt = r I
                voltage = voltage + node.r * drive
            else:
                current = current + (-current + node.w_in * drive) / node.tau_syn
                voltage = voltage + (node.v_leak - voltage + node.r * current) / node.tau_mem
            fired = voltage > node.v_threshold
            voltage[fired] = 0.0
            spikes[..., t] = fired
        outputs.append(spikes)
        previous = spikes
    return outputs


def test_graph_built_with_nir_api_imports_and_behaves_like_nir() -> None:
    """Float weights and thresholds are quantized to 8-bit mantissas; the chip's spikes
    then match a float simulation of the NIR equations (measured: 99.4 % of the first
    layer's (neuron, step) pairs, spike counts within 1 %)."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.5, (16, 20)), np.zeros(16)
    w2, b2 = rng.normal(0, 0.5, (5, 16)), np.zeros(5)
    lif1, lif2 = _lif(16), _lif(5)
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([20])), nir.Affine(weight=w1, bias=b1), lif1,
                                   nir.Affine(weight=w2, bias=b2), lif2)
    network = nir_conv.from_nir(graph)
    assert [layer.kind for layer in network] == ["input", "dense", "dense"]
    neuron = network[1].neuron
    assert (neuron.i_decay, neuron.v_decay) == (1024, 512)  # 4096 / tau_syn, 4096 / tau_mem
    # W / threshold is kept: gain = (w_in / tau_syn) (r / tau_mem) = 1
    ratio = network[1].weight / neuron.v_th_mant
    assert np.max(np.abs(ratio - w1)) <= 1.0 / neuron.v_th_mant + 1e-12
    assert np.max(np.abs(network[1].weight)) <= 254 and np.all(network[1].weight % 2 == 0)

    x = (rng.random((8, 20, 100)) < 0.3).astype(np.int64)
    ours = run_fixed(network, x).spikes
    reference = _reference(x, [(w1, b1), (w2, b2)], [lif1, lif2])
    first = ours[1].numpy()
    assert (first == reference[0]).mean() > 0.97
    assert abs(int(first.sum()) - reference[0].sum()) <= 0.03 * reference[0].sum()
    assert abs(int(ours[2].numpy().sum()) - reference[1].sum()) <= 0.1 * reference[1].sum()


def test_if_graph_with_integer_weights_spikes_exactly_like_nir() -> None:
    rng = np.random.default_rng(1)
    w1 = rng.integers(-20, 21, (12, 10)).astype(np.float64)
    w2 = rng.integers(-20, 21, (4, 12)).astype(np.float64)
    b1 = rng.integers(-3, 4, 12).astype(np.float64)
    if1, if2 = nir.IF(r=np.ones(12), v_threshold=np.full(12, 40.0)), nir.IF(r=np.ones(4), v_threshold=np.full(4, 30.0))
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([10])), nir.Affine(weight=w1, bias=b1), if1,
                                   nir.Linear(weight=w2), if2)
    network = nir_conv.from_nir(graph)
    assert network[1].neuron == Neuron(i_decay=4096, v_decay=0, v_th_mant=40)
    np.testing.assert_array_equal(network[1].bias, b1)
    x = (rng.random((4, 10, 40)) < 0.4).astype(np.int64)
    ours = run_fixed(network, x).spikes
    reference = _reference(x, [(w1, b1), (w2, np.zeros(4))], [if1, if2])
    np.testing.assert_array_equal(ours[1].numpy(), reference[0])
    np.testing.assert_array_equal(ours[2].numpy(), reference[1])
    assert ours[2].numpy().sum() > 0


def test_conv_graph_from_nir_api_with_flatten_start_dim_1_imports(tmp_path: Path) -> None:
    """Conv2d -> CubaLIF -> SumPool2d -> CubaLIF -> Flatten(start_dim=1, as many tools
    write it) -> Affine -> LIF, written with nir.write and read by us."""
    rng = np.random.default_rng(2)
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 8, 8])),
        nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1, (4, 1, 3, 3)), stride=1, padding=1, dilation=1,
                   groups=1, bias=np.zeros(4)),
        nir.CubaLIF(
            tau_syn=np.ones((4, 8, 8)), tau_mem=np.full((4, 8, 8), 2.0), r=np.full((4, 8, 8), 2.0),
            v_leak=np.zeros((4, 8, 8)), v_threshold=np.full((4, 8, 8), 0.5)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.IF(r=np.ones((4, 4, 4)), v_threshold=np.full((4, 4, 4), 2.0)),
        nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=1),
        nir.Affine(weight=rng.normal(0, 1, (3, 64)), bias=np.zeros(3)),
        nir.LIF(tau=np.full(3, 16.0), r=np.full(3, 16.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        type_check=False,
    )
    path = tmp_path / "conv.nir"
    nir.write(path, graph)
    network = nir_conv.read(path)
    assert [layer.kind for layer in network] == ["input", "conv", "pool", "flatten", "dense"]
    assert network.shapes[2] == (4, 4, 4) and network.output_shape == (3,)
    pool = network[2]
    assert isinstance(pool, PoolLayer) and pool.neuron.v_decay == 0 and pool.weight / pool.neuron.v_th_mant == 0.5
    assert network[1].neuron.v_decay == 2048 and network[4].neuron.v_decay == 256
    out = run_fixed(network, (rng.random((2, 1, 8, 8, 20)) < 0.5).astype(np.int64))
    assert out.spikes[1].sum() > 0


def test_unsupported_nodes_are_listed_in_one_error() -> None:
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([4])),
            "integrator": nir.I(r=np.ones(4)),
            "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
            "leaky": nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
            "thr": nir.Threshold(threshold=np.ones(3)),
            "out": nir.Output(output_type=np.array([3])),
        },
        edges=[("in", "integrator"), ("integrator", "fc"), ("fc", "leaky"), ("leaky", "thr"), ("thr", "out")],
        metadata={},
    )
    with pytest.raises(UnsupportedLayerError, match=r"3 unsupported node\(s\): integrator \(I\), leaky \(LI\), thr \(Threshold\)"):
        nir_conv.from_nir(graph)


def test_unsupported_nodes_in_a_file_are_listed_in_one_error(tmp_path: Path) -> None:
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 10])),
        nir.Conv1d(input_shape=10, weight=np.ones((2, 1, 3)), stride=1, padding=1, dilation=1, groups=1,
                   bias=np.zeros(2)),
        nir.LI(tau=np.ones((2, 10)), r=np.ones((2, 10)), v_leak=np.zeros((2, 10))),
    )
    path = tmp_path / "conv1d.nir"
    nir.write(path, graph)
    with pytest.raises(UnsupportedLayerError, match=r"2 unsupported node\(s\): conv1d \(Conv1d\), li \(LI\)"):
        nir_conv.read(path)


def test_branching_graph_is_refused() -> None:
    nodes = {
        "in": nir.Input(input_type=np.array([4])),
        "a": nir.Linear(weight=np.ones((2, 4))),
        "b": nir.Linear(weight=np.ones((2, 4))),
        "out": nir.Output(output_type=np.array([2])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "a"), ("in", "b"), ("a", "out"), ("b", "out")],
                         metadata={}, type_check=False)
    with pytest.raises(UnsupportedLayerError, match="not a chain: node.*in, out"):
        nir_conv.from_nir(graph)


def test_parameters_the_chip_cannot_hold_are_refused() -> None:
    def graph_with(neuron: nir.NIRNode) -> nir.NIRGraph:
        return nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 3))), neuron)

    reset = nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                        v_threshold=np.ones(2), v_reset=np.full(2, 0.5))
    with pytest.raises(UnsupportedLayerError, match="v_reset must be 0"):
        nir_conv.from_nir(graph_with(reset))
    mixed = nir.LIF(tau=np.array([2.0, 4.0]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(UnsupportedLayerError, match="v_decay differs between neurons"):
        nir_conv.from_nir(graph_with(mixed))
    fast = nir.LIF(tau=np.full(2, 0.5), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(UnsupportedLayerError, match=r"tau=0.5 is shorter than the time step dt=1 .*--dt"):
        nir_conv.from_nir(graph_with(fast))


def test_bias_behind_synaptic_time_constant_warns() -> None:
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])),
                                   nir.Affine(weight=np.ones((2, 3)), bias=np.full(2, 0.1)), _lif(2))
    with pytest.warns(UserWarning, match="steady-state"):
        network = nir_conv.from_nir(graph)
    assert network[1].bias is not None and np.all(network[1].bias > 0)


def test_export_refuses_bias_without_any_decay_path() -> None:
    network = Network([InputLayer(shape=(3,)),
                       DenseLayer(weight=np.ones((2, 3), dtype=np.int32), bias=np.ones(2, dtype=np.int32),
                                  neuron=Neuron(i_decay=1024, v_decay=0, v_th_mant=10))])
    with pytest.raises(UnsupportedLayerError, match="v_leak would be infinite"):
        nir_conv.to_nir(network)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        nir_conv.read(tmp_path / "missing.nir")
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        nir_conv.read(junk)
    with pytest.raises(FormatError, match="does not exist"):
        nir_conv.write(Network([InputLayer(shape=(2,))]), tmp_path / "no" / "x.nir")


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "keep.nir"
    target.write_bytes(b"old")
    bad = Network([InputLayer(shape=(3,)),
                   DenseLayer(weight=np.ones((2, 3), dtype=np.int32), bias=np.ones(2, dtype=np.int32),
                              neuron=Neuron(i_decay=1024, v_decay=0, v_th_mant=10))])
    with pytest.raises(UnsupportedLayerError):
        nir_conv.write(bad, target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.nir"]


# ---------------------------------------------------------------------------- CLI
def test_cli_convert_net_to_nir_and_back(conv_net: Network, tmp_path: Path) -> None:
    source = netx.write(conv_net, tmp_path / "conv.net")
    assert main(["convert", str(source), str(tmp_path / "conv.nir")]) == 0
    assert nir_conv.read(tmp_path / "conv.nir").same_as(netx.read(source))
    assert main(["convert", str(tmp_path / "conv.nir"), str(tmp_path / "back.net")]) == 0
    assert netx.read(tmp_path / "back.net").same_as(netx.read(source))


def test_cli_convert_reports_unsupported_nir_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 3))),
                                   nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
    nir.write(tmp_path / "li.nir", graph)
    assert main(["convert", str(tmp_path / "li.nir"), str(tmp_path / "li.net")]) == 2
    err = capsys.readouterr().err
    assert "unsupported node(s): li (LI)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "li.net").exists()


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_round_trip_of_a_file_written_by_lava_dl(kind: str, slayer_export, tmp_path: Path) -> None:
    """A netx file written by lava-dl's own exporter (axonal delays in the dense case)."""
    path, _ = slayer_export(kind)
    network = netx.read(path)
    assert nir_conv.read(nir_conv.write(network, tmp_path / f"{kind}.nir")).same_as(network)


def test_per_input_delays_export_as_a_delay_before_the_synapse() -> None:
    network = Network([InputLayer(shape=(4,)),
                       DenseLayer(weight=np.ones((3, 4), dtype=np.int32), delay=np.array([0, 1, 2, 3], dtype=np.int32),
                                  neuron=Neuron(i_decay=4096, v_decay=0, v_th_mant=2))])
    graph = nir_conv.to_nir(network)
    assert graph.edges[:2] == [("input0", "dense1.delay_in"), ("dense1.delay_in", "dense1")]
    np.testing.assert_allclose(graph.nodes["dense1.delay_in"].delay, np.array([0, 1, 2, 3]) * nir_conv.EXPORT_DT)  # times
    assert nir_conv.from_nir(graph).same_as(network)


def test_layer_names_with_slashes_round_trip(dense_net: Network, tmp_path: Path) -> None:
    """ONNX node names such as '/fc1/Gemm' cannot be HDF5 group names; they travel in metadata."""
    named = Network([dataclasses.replace(layer, name=f"/block{i}/op") for i, layer in enumerate(dense_net.layers)])
    path = nir_conv.write(named, tmp_path / "named.nir")
    assert "_block1_op" in nir.read(path, type_check=False).nodes
    back = nir_conv.read(path)
    assert back.same_as(named) and back[1].name == "/block1/op"
