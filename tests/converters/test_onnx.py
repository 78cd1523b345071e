"""ONNX: torch-trained ANNs imported and converted to SNNs, onnxruntime equivalence,
unsupported-op errors, ANN-equivalent export, and ``neuroprune convert``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from converters import netx
from converters import onnx as onnx_conv
from neuroprune.cli import main
from neuroprune.data import Dataset, load_digits
from neuroprune.errors import FormatError, ShapeError, UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer
from neuroprune.snn.fixed import run_fixed

STEPS = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models train and run fastest on one thread (and do not fight other jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits(seed=0)


def _train(model: torch.nn.Module, data: Dataset, epochs: int) -> float:
    """Full-batch Adam on the digits training split; returns test accuracy."""
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return float((model(torch.tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean())


def _export(model: torch.nn.Module, path: Path, shape: tuple[int, ...] = (1, 1, 8, 8)) -> Path:
    torch.onnx.export(model, torch.zeros(shape), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def mlp(digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A 64-100-10 MLP trained in plain torch (~0.2 s) and exported by torch.onnx."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    accuracy = _train(model, digits, epochs=60)
    return _export(model, tmp_path_factory.mktemp("onnx") / "mlp.onnx"), accuracy


@pytest.fixture(scope="module")
def cnn(digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """Conv-BN-ReLU-AvgPool-Conv-ReLU-Flatten-Linear trained in plain torch (~1.5 s)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(256, 10),
    )
    accuracy = _train(model, digits, epochs=40)
    return _export(model, tmp_path_factory.mktemp("onnx") / "cnn.onnx"), accuracy


# --------------------------------------------------------------------- ANN -> SNN
def test_torch_mlp_converts_to_snn_within_a_few_points(mlp: tuple[Path, float], digits: Dataset) -> None:
    """Must show: a torch-trained 64-100-10 MLP, exported by torch.onnx, imported and
    converted (input neuron encoding, percentile 99.9), run bit-exactly in fixed point.

    Measured (digits test split, 359 samples): ANN 96.7 %, SNN 95.0 % at T = 64
    (94.2 % at T = 32); with graded input 97.2 % at T = 64 (and at T = 32).
    """
    path, torch_accuracy = mlp
    conversion, error = onnx_conv.convert(path, digits.x_train)
    assert error < 1e-5  # the parsed ANN computes what onnxruntime computes
    ann_accuracy = float((conversion.ann.predict(digits.x_test) == digits.y_test).mean())
    assert ann_accuracy == pytest.approx(torch_accuracy, abs=1e-9) and ann_accuracy > 0.9
    network = conversion.network
    assert [layer.kind for layer in network] == ["input", "flatten", "dense", "dense"]
    for layer in network.layers[2:]:
        assert layer.neuron.i_decay == 4096 and layer.neuron.v_decay == 0
        assert np.abs(layer.weight).max() <= 254 and np.all(layer.weight % 2 == 0)
    snn_accuracy = conversion.accuracy(digits.x_test, digits.y_test, STEPS)
    assert snn_accuracy >= ann_accuracy - 0.03, (ann_accuracy, snn_accuracy)
    graded = onnx_conv.to_snn(conversion.ann, digits.x_train, onnx_conv.ConversionConfig(input_encoding="graded"))
    assert graded.network[0].neuron is None
    assert graded.accuracy(digits.x_test, digits.y_test, STEPS) >= ann_accuracy - 0.03


@pytest.mark.slow
def test_torch_cnn_with_batchnorm_and_avgpool_converts(cnn: tuple[Path, float], digits: Dataset) -> None:
    """A torch CNN with BatchNorm (folded) and AveragePool (a spiking sum-pool layer).

    Measured (359 test samples): ANN 96.1 %; SNN with graded input 94.7 % at T = 64
    (93.9 % at T = 32); with the input neuron layer 89.4 % (coarse input rates, see
    converters.onnx), which is why the graded encoding is asserted here.
    """
    path, torch_accuracy = cnn
    config = onnx_conv.ConversionConfig(input_encoding="graded")
    conversion, error = onnx_conv.convert(path, digits.x_train, config)
    assert error < 1e-4
    assert [layer.kind for layer in conversion.network] == ["input", "conv", "pool", "conv", "flatten", "dense"]
    assert isinstance(conversion.network[2], PoolLayer)
    ann_accuracy = float((conversion.ann.predict(digits.x_test) == digits.y_test).mean())
    assert ann_accuracy == pytest.approx(torch_accuracy, abs=0.003) and ann_accuracy > 0.9
    snn_accuracy = conversion.accuracy(digits.x_test, digits.y_test, STEPS)
    assert snn_accuracy >= ann_accuracy - 0.04, (ann_accuracy, snn_accuracy)


@pytest.mark.slow
def test_converted_mlp_is_spike_exact_in_lava(mlp: tuple[Path, float], digits: Dataset, tmp_path: Path) -> None:
    """The converted network written as netx runs spike-exactly in Lava on digits input."""
    from converters import lava_verify

    conversion, _ = onnx_conv.convert(mlp[0], digits.x_train)
    path = netx.write(conversion.network, tmp_path / "mlp.net")
    result = lava_verify.verify(path, x=conversion.chip_input(digits.x_test[:2], 24))
    assert result.exact and all(layer.our_spikes > 0 for layer in result.layers)


def test_threshold_balancing_follows_the_percentile(digits: Dataset) -> None:
    """lambda_l is the percentile of the layer's ReLU activations over max_rate;
    weights/threshold keep W * lambda_{l-1} / lambda_l up to the 8-bit grid."""
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(0, 0.3, (20, 64)), rng.normal(0, 0.1, 20)
    ann = onnx_conv.Ann(input_shape=(64,), layers=(
        onnx_conv.AnnLayer("dense", "fc", weight=weight, bias=bias, relu=True),))
    x = digits.x_train.reshape(-1, 64)
    config = onnx_conv.ConversionConfig(percentile=99.0, input_rate=0.5, max_rate=0.8)
    conversion = onnx_conv.to_snn(ann, x, config)
    used = x[: config.max_calibration_samples]
    scale = np.percentile(np.maximum(used @ weight.T + bias, 0), 99.0) / 0.8
    assert conversion.scales[0] == pytest.approx(scale, rel=1e-4)
    layer = conversion.network[1]
    expected = weight * (1 / 0.5) / scale  # lambda_0 = 1 / input_rate
    assert np.max(np.abs(layer.weight / layer.neuron.v_th_mant - expected)) <= 1.0 / layer.neuron.v_th_mant + 1e-9
    np.testing.assert_allclose(layer.bias / layer.neuron.v_th_mant, bias / scale, atol=0.5 / layer.neuron.v_th_mant)
    assert conversion.network[0].neuron.v_th_mant == 127  # round(64 / 0.5) - 1: x = 1 spikes every 2nd step
    spikes = run_fixed(conversion.network, conversion.chip_input(np.ones((1, 64)), 10)).spikes[0]
    assert spikes.sum().item() == 64 * 5
    assert conversion.chip_input(np.array([[0.5] * 64]), 3).shape == (1, 64, 3)


def test_conversion_config_is_checked() -> None:
    with pytest.raises(ShapeError, match="input_rate"):
        onnx_conv.ConversionConfig(input_rate=1.5)
    with pytest.raises(ShapeError, match="percentile"):
        onnx_conv.ConversionConfig(percentile=0)
    with pytest.raises(ShapeError, match="max_rate"):
        onnx_conv.ConversionConfig(max_rate=0)
    with pytest.raises(ShapeError, match="input_encoding"):
        onnx_conv.ConversionConfig(input_encoding="poisson")


def test_graded_first_layer_cannot_overflow_the_current() -> None:
    """Graded input: the first threshold is capped so that sum(|w|) * 64 < 2**17 for
    every neuron; the chip then integrates exactly what integer arithmetic predicts."""
    weight = np.full((4, 400), 0.5)
    weight[1] = -0.5
    ann = onnx_conv.Ann(input_shape=(400,), layers=(onnx_conv.AnnLayer("dense", "fc", weight=weight, relu=True),))
    x = np.linspace(0.2, 1.0, 400)[None]
    conversion = onnx_conv.to_snn(ann, np.repeat(x, 8, axis=0), onnx_conv.ConversionConfig(input_encoding="graded"))
    layer = conversion.network[1]
    assert np.abs(layer.weight).sum(axis=1).max() * onnx_conv.INPUT_SCALE < 1 << 17
    steps = 12
    out = run_fixed(conversion.network, conversion.chip_input(x, steps)).spikes[1][0].numpy()
    drive = layer.weight.astype(np.int64) @ np.round(x[0] * onnx_conv.INPUT_SCALE).astype(np.int64)
    voltage, expected = np.zeros(4, dtype=np.int64), np.zeros((4, steps), dtype=np.int8)
    for t in range(1, steps):  # one step of synaptic delay
        voltage += drive
        expected[:, t] = voltage > layer.neuron.v_th_mant
        voltage[expected[:, t] == 1] = 0
    np.testing.assert_array_equal(out, expected)
    assert expected[0].sum() >= 2 and expected[1].sum() == 0


# ----------------------------------------------------------- import vs onnxruntime
def test_conv_bn_pools_and_runtime_reshape_match_onnxruntime(tmp_path: Path) -> None:
    """Untrained model with non-trivial BN statistics, a 1x1 MaxPool (subsampling), a
    GlobalAveragePool, Dropout and ``x.view(x.size(0), -1)`` (shape computed at run time)."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 6, 3, padding=1, bias=False)
            self.bn = torch.nn.BatchNorm2d(6)
            self.sub = torch.nn.MaxPool2d(1, stride=2)
            self.conv2 = torch.nn.Conv2d(6, 4, 3, stride=1, padding=1, groups=2)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.drop = torch.nn.Dropout(0.3)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.sub(torch.relu(self.bn(self.conv(x))))
            x = self.pool(torch.relu(self.conv2(x)))
            return self.fc(self.drop(x.view(x.size(0), -1)))

    torch.manual_seed(1)
    model = Net()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    path = _export(model, tmp_path / "net.onnx", (1, 2, 8, 8))
    ann = onnx_conv.read_ann(path)
    assert [(layer.kind, layer.relu) for layer in ann.layers] == [
        ("conv", True), ("pool", False), ("conv", True), ("pool", False), ("flatten", False), ("dense", False)]
    assert ann.layers[2].groups == 2 and ann.layers[1].stride == (2, 2) and ann.layers[3].kernel == (4, 4)
    x = np.random.default_rng(0).random((16, 2, 8, 8)).astype(np.float32)
    assert onnx_conv.check_against_onnxruntime(ann, path, x) < 1e-5
    with torch.no_grad():
        np.testing.assert_allclose(ann.forward(x), model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def _model(nodes: list, initializers: list, input_shape: list, output_shape: list, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_matmul_add_gemm_attributes_and_softmax_match_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(size=(12, 7)).astype(np.float32), rng.normal(size=(1, 7)).astype(np.float32)
    w2, c2 = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["x2"], name="flat"),
        helper.make_node("MatMul", ["x2", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "w2", "c2"], ["z"], name="fc2", alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 12], dtype=np.int64), "flat"), numpy_helper.from_array(w1, "w1"),
             numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(c2, "c2")]
    path = tmp_path / "mm.onnx"
    onnx.save(_model(nodes, inits, ["N", 3, 4], ["N", 5]), str(path))
    ann = onnx_conv.read_ann(path)
    assert [layer.kind for layer in ann.layers] == ["flatten", "dense", "dense"] and ann.output == "softmax"
    np.testing.assert_allclose(ann.layers[2].weight, 0.5 * w2.T, rtol=1e-6)
    np.testing.assert_allclose(ann.layers[2].bias, 2.0 * c2, rtol=1e-6)
    x = rng.random((10, 3, 4)).astype(np.float32)
    assert onnx_conv.check_against_onnxruntime(ann, path, x) < 1e-5


def test_import_mistakes_are_caught_by_the_onnxruntime_check(mlp: tuple[Path, float], digits: Dataset) -> None:
    ann = onnx_conv.read_ann(mlp[0])
    broken = onnx_conv.Ann(ann.input_shape, ann.layers[:-1] + (
        onnx_conv.AnnLayer("dense", "x", weight=ann.layers[-1].weight * 1.01, bias=ann.layers[-1].bias),))
    with pytest.raises(FormatError, match="differs from onnxruntime"):
        onnx_conv.check_against_onnxruntime(broken, mlp[0], digits.x_test[:8])


# -------------------------------------------------------------------- errors
def test_unsupported_ops_are_listed_in_one_error(tmp_path: Path) -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - 0.5) * 2.0  # input normalization: Sub, Mul
            x = self.pool(torch.sigmoid(self.conv(x)))
            return torch.tanh(self.fc(x.flatten(1)))

    path = _export(Net().eval(), tmp_path / "bad.onnx")
    with pytest.raises(UnsupportedLayerError) as info:
        onnx_conv.read_ann(path)
    message = str(info.value)
    assert "5 unsupported ONNX node(s)" in message and len(message.splitlines()) == 1
    for op in ("Sub", "Mul", "Sigmoid", "MaxPool", "Tanh"):
        assert f"{op} '" in message, op
    assert "max pooling over 2x2 has no spike-rate equivalent" in message
    assert "Conv '" not in message and "Gemm '" not in message  # the supported ones are not listed


def test_skip_connections_and_linear_hidden_layers_are_refused(tmp_path: Path) -> None:
    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
            self.fc = torch.nn.Linear(64, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x) + x).flatten(1))

    path = _export(Residual().eval(), tmp_path / "residual.onnx")
    with pytest.raises(UnsupportedLayerError, match="Add '.*' \\(branches the graph"):
        onnx_conv.read_ann(path)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Linear(8, 2))
    path = _export(linear.eval(), tmp_path / "linear.onnx")
    with pytest.raises(UnsupportedLayerError, match="has no Relu after it but feeds another layer"):
        onnx_conv.read_ann(path)


def test_asymmetric_padding_and_excluded_pad_average_are_refused(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((2, 1, 3, 3), dtype=np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("AveragePool", ["r"], ["y"], name="avg", kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=0),
    ]
    path = tmp_path / "pads.onnx"
    onnx.save(_model(nodes, [weight], [1, 1, 6, 6], [1, 2, 5, 5]), str(path))
    with pytest.raises(UnsupportedLayerError, match=r"2 unsupported.*asymmetric padding.*count_include_pad=0"):
        onnx_conv.read_ann(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        onnx_conv.read_ann(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(FormatError, match="not a readable ONNX model|no nodes"):
        onnx_conv.read_ann(junk)


# -------------------------------------------------------------------- export
def _reference_ann_output(network: Network, x: np.ndarray) -> np.ndarray:
    """relu(W x + b) layer by layer with the IR mantissas (what the export should compute)."""
    import torch.nn.functional as F

    h = torch.from_numpy(x.astype(np.float64))
    for layer in network.layers[1:]:
        if isinstance(layer, FlattenLayer):
            h = h.reshape(h.shape[0], -1)
            continue
        if isinstance(layer, PoolLayer):
            layer = layer.as_conv(h.shape[1])
        bias = None if layer.bias is None else torch.from_numpy(np.asarray(layer.bias, dtype=np.float64))
        weight = torch.from_numpy(layer.effective_weight.astype(np.float64))
        if isinstance(layer, DenseLayer):
            h = F.linear(h, weight, bias)
        else:
            h = F.conv2d(h, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        if layer.neuron is not None:
            h = torch.relu(h)
    return h.numpy()


@pytest.fixture
def pooled_net() -> Network:
    rng = np.random.default_rng(5)
    neuron = Neuron(i_decay=4096, v_decay=0, v_th_mant=100)
    return Network([
        InputLayer(shape=(2, 8, 8), neuron=neuron),
        ConvLayer(weight=rng.integers(-30, 30, (4, 2, 3, 3)) * 2, bias=np.arange(4) - 2, neuron=neuron, padding=1),
        PoolLayer(kernel=2, weight=64, neuron=neuron),
        ConvLayer(weight=rng.integers(-30, 30, (6, 2, 3, 3)) * 2, neuron=neuron, stride=2, groups=2),
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-30, 30, (3, 6)) * 2, bias=np.array([1, 0, -1]), neuron=neuron,
                   mask=rng.random((3, 6)) > 0.3),
    ], name="pooled")


@pytest.mark.parametrize("fixture", ["conv_net", "dense_net", "pooled_net"])
def test_export_loads_in_onnxruntime_with_the_right_shapes_and_values(fixture: str, request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    network = request.getfixturevalue(fixture)
    path = onnx_conv.write(network, tmp_path / f"{fixture}.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    shapes = {info.name: [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]
              for info in list(model.graph.value_info) + list(model.graph.output)}
    for index, layer in enumerate(network.layers[1:], start=1):
        if getattr(layer, "neuron", None) is not None:
            assert shapes[f"{layer.name}.rate"] == ["N", *network.shapes[index]]
    assert shapes["output"] == ["N", *network.output_shape]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, *network.input_shape)).astype(np.float32)
    out = session.run(None, {"input": x})[0]
    assert out.shape == (5, *network.output_shape)
    np.testing.assert_allclose(out, _reference_ann_output(network, x), rtol=1e-4, atol=1e-3)
    docs = " ".join(node.doc_string for node in model.graph.node)
    assert "v_th_mant=" in docs


def test_exported_graph_reimports_as_the_same_ann(pooled_net: Network, tmp_path: Path) -> None:
    path = onnx_conv.write(pooled_net, tmp_path / "pooled.onnx")
    ann = onnx_conv.read_ann(path)
    assert [layer.kind for layer in ann.layers] == ["conv", "conv", "conv", "flatten", "dense"]
    x = np.random.default_rng(1).random((4, 2, 8, 8)).astype(np.float32)
    assert onnx_conv.check_against_onnxruntime(ann, path, x) < 1e-5


def test_write_errors(conv_net: Network, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="does not exist"):
        onnx_conv.write(conv_net, tmp_path / "missing" / "x.onnx")


# ---------------------------------------------------------------------- CLI
def test_cli_converts_onnx_to_net_and_reports_accuracy(mlp: tuple[Path, float], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlp.net"
    assert main(["convert", str(mlp[0]), str(out), "--data", "digits", "--steps", "32"]) == 0
    text = capsys.readouterr().out
    assert "ANN 96.7 %" in text.replace(f"{100 * mlp[1]:.1f}", "96.7") and "SNN" in text and "32 steps" in text
    network = netx.read(out)
    assert [layer.kind for layer in network] == ["input", "flatten", "dense", "dense"]
    assert network[0].neuron is not None


def test_cli_converts_net_to_onnx_and_pt_round_trip(tmp_path: Path) -> None:
    from neuroprune.snn import model as snn_model

    model = snn_model.build("d12", (20,), num_classes=4, seed=0)
    network = snn_model.to_ir(model)
    snn_model.save_model(str(tmp_path / "model.pt"), model)
    assert main(["convert", str(tmp_path / "model.pt"), str(tmp_path / "model.net")]) == 0
    assert netx.read(tmp_path / "model.net").same_as(network)
    assert main(["convert", str(tmp_path / "model.net"), str(tmp_path / "again.pt")]) == 0
    again, _ = snn_model.load_model(str(tmp_path / "again.pt"))
    assert snn_model.to_ir(again).same_as(network)
    assert main(["convert", str(tmp_path / "model.net"), str(tmp_path / "model.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 20), dtype=np.float32)})[0].shape == (2, 4)


@pytest.mark.parametrize("args, message", [
    (["in.xyz", "out.net"], "unknown input extension '.xyz'"),
    (["in.net", "out"], r"unknown output extension '\(none\)'"),
    (["missing.net", "out.nir"], "missing.net: no such file"),
    (["model.onnx", "out.onnx"], "ONNX to ONNX is not a conversion"),
    (["model.net", "nofolder/out.nir"], "folder .*nofolder does not exist"),
])
def test_cli_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path, conv_net: Network,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    netx.write(conv_net, tmp_path / "model.net")
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "in.xyz").write_bytes(b"x")
    assert main(["convert", *(str(tmp_path / a) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_cli_refuses_a_checkpoint_slayer_cannot_hold(pooled_net: Network, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    netx.write(pooled_net, tmp_path / "pooled.net")
    assert main(["convert", str(tmp_path / "pooled.net"), str(tmp_path / "pooled.pt")]) == 2
    assert "cannot store the network as a slayer checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "pooled.pt").exists()
