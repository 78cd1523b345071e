"""ONNX export of a network's ANN equivalent.

:func:`to_onnx` writes a network's ANN-equivalent graph -- ``Gemm``/``Conv`` with the IR
weight mantissas and biases, ``Relu`` after every layer with neurons, pools as depthwise
``Conv`` with equal taps, ``ConvTranspose`` (unpools as depthwise ones with equal taps),
``Concat`` along channels, ``Flatten`` -- for inspection tools such as Netron. Each node's
``doc_string`` holds its neuron parameters; a layer's spike rate is about
``relu(W x + b) / v_th_mant`` per step when it neither leaks nor keeps current.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.ann_to_snn import INPUT_SCALE
from converters.onnx_read import _onnx
from neuroprune.atomic import atomic_path
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Layer, Network, Neuron, PoolLayer
from neuroprune.registry import lookup
from neuroprune.ir import ConcatLayer, ConvTransposeLayer, UnpoolLayer  # the transposed and joined kinds

__all__ = ["to_onnx", "write"]

OPSET = 17
ONNX_IR_VERSION = 8  # what onnxruntime releases of the last years all load


def _neuron_doc(neuron: Neuron | None) -> str:
    if neuron is None:
        return "no neuron (non-spiking)"
    return (f"{neuron.kind} neuron: i_decay={neuron.i_decay}/4096, v_decay={neuron.v_decay}/4096, "
            f"v_th_mant={neuron.v_th_mant} (spikes when v > v_th_mant * 64), ref_delay={neuron.ref_delay}, "
            f"graded_spike={neuron.graded_spike}")


@dataclass
class _OnnxParts:
    """The ONNX nodes and initializers written so far (onnx.helper modules passed in)."""

    helper: Any
    numpy_helper: Any
    network: Network
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    outputs: dict[int, str] = field(default_factory=dict)  # each layer's output tensor (concat joins them)

    def doc(self, index: int, layer: Layer) -> str:
        return f"layer {index} ({layer.kind}): {_neuron_doc(getattr(layer, 'neuron', None))}"

    def tensor(self, array: np.ndarray, name: str) -> str:
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name


def _onnx_input(g: _OnnxParts, index: int, layer: InputLayer, current: str) -> str:
    out = f"{layer.name}.out"
    g.nodes.append(g.helper.make_node("Identity", [current], [out], name=layer.name,
                                      doc_string=f"input layer: {_neuron_doc(layer.neuron)}; chip input "
                                                 f"mantissa per step = round({INPUT_SCALE} * x)"))
    return out


def _onnx_flatten(g: _OnnxParts, index: int, layer: FlattenLayer, current: str) -> str:
    out = f"{layer.name}.out"
    g.nodes.append(g.helper.make_node("Flatten", [current], [out], name=layer.name, axis=1))
    return out


def _onnx_neurons(g: _OnnxParts, layer: Layer, current: str) -> str:
    """The ReLU standing for the layer's spiking neurons (none without a neuron)."""
    if getattr(layer, "neuron", None) is None:
        return current
    g.nodes.append(g.helper.make_node("Relu", [current], [f"{layer.name}.rate"], name=f"{layer.name}.relu",
                                      doc_string="spiking neurons rectify: rate ~ relu(input) / v_th_mant"))
    return f"{layer.name}.rate"


def _onnx_dense(g: _OnnxParts, index: int, layer: DenseLayer, current: str) -> str:
    out, doc = f"{layer.name}.out", g.doc(index, layer)
    inputs = [current, g.tensor(layer.effective_weight.astype(np.float32), f"{layer.name}.weight")]
    if layer.bias is not None:
        inputs.append(g.tensor(np.broadcast_to(np.asarray(layer.bias, dtype=np.float32).reshape(-1),
                                               (layer.out_channels,)).copy(), f"{layer.name}.bias"))
    if layer.delay is not None and np.any(layer.delay):
        doc += "; synaptic delays are not shown"
    g.nodes.append(g.helper.make_node("Gemm", inputs, [out], name=layer.name, transB=1, doc_string=doc))
    return _onnx_neurons(g, layer, out)


def _onnx_conv(g: _OnnxParts, index: int, layer: Layer, current: str,
               conv: ConvLayer | ConvTransposeLayer | None = None, note: str = "") -> str:
    """A Conv (or ConvTranspose) node for ``conv`` (the layer itself, or its depthwise form),
    its bias, its neurons."""
    conv = layer if conv is None else conv  # type: ignore[assignment]
    out = f"{layer.name}.out"
    inputs = [current, g.tensor(conv.effective_weight.astype(np.float32), f"{layer.name}.weight")]
    bias, extra_bias = getattr(layer, "bias", None), None
    if bias is not None:
        flat = np.asarray(bias, dtype=np.float32).reshape(-1)
        if flat.size in (1, conv.out_channels):
            inputs.append(g.tensor(np.broadcast_to(flat, (conv.out_channels,)).copy(), f"{layer.name}.bias"))
        else:  # per-neuron bias: add it after the convolution
            extra_bias = np.asarray(bias, dtype=np.float32).reshape(g.network.shapes[index])
    g.nodes.append(g.helper.make_node(
        "ConvTranspose" if isinstance(conv, ConvTransposeLayer) else "Conv", inputs, [out], name=layer.name,
        doc_string=g.doc(index, layer) + note,
        kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
        pads=[conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]],
        dilations=list(conv.dilation), group=conv.groups,
    ))
    if extra_bias is not None:
        g.nodes.append(g.helper.make_node("Add", [out, g.tensor(extra_bias, f"{layer.name}.bias")],
                                          [f"{layer.name}.biased"], name=f"{layer.name}.bias"))
        out = f"{layer.name}.biased"
    return _onnx_neurons(g, layer, out)


def _onnx_unpool(g: _OnnxParts, index: int, layer: UnpoolLayer, current: str) -> str:
    conv = layer.as_conv_transpose(g.network.input_shape_of(index)[0])
    return _onnx_conv(g, index, layer, current, conv, "; unpooling as a depthwise transposed conv")


def _onnx_concat(g: _OnnxParts, index: int, layer: ConcatLayer, current: str) -> str:
    out = f"{layer.name}.out"
    g.nodes.append(g.helper.make_node("Concat", [g.outputs[source] for source in g.network.sources_of(index)],
                                      [out], name=layer.name, axis=1))
    return out


def _onnx_pool(g: _OnnxParts, index: int, layer: PoolLayer, current: str) -> str:
    conv = layer.as_conv(g.network.input_shape_of(index)[0])
    return _onnx_conv(g, index, layer, current, conv, "; sum pooling as a depthwise conv")


#: the ONNX nodes of each layer kind, from (parts, index, layer, current tensor name) to the next name
_ONNX_EXPORTERS: dict[str, Any] = {
    "input": _onnx_input,
    "flatten": _onnx_flatten,
    "dense": _onnx_dense,
    "conv": _onnx_conv,
    "convT": _onnx_conv,
    "unpool": _onnx_unpool,
    "concat": _onnx_concat,
    "pool": _onnx_pool,
}


def to_onnx(network: Network) -> Any:
    """The ANN-equivalent ONNX graph of ``network`` (see the module docstring).

    Input ``input`` of shape ``(N, *input_shape)``, output ``output`` of shape
    ``(N, *output_shape)``; intermediate shapes are filled in by ONNX shape inference.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph_parts = _OnnxParts(helper, numpy_helper, network)
    current = "input"
    for index, layer in enumerate(network.layers):
        exporter = lookup(_ONNX_EXPORTERS, layer.kind, "ONNX export", f"layer {index}")
        current = graph_parts.outputs[index] = exporter(graph_parts, index, layer, current)
    nodes, initializers = graph_parts.nodes, graph_parts.initializers
    nodes.append(helper.make_node("Identity", [current], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, network.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *network.input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *network.output_shape])],
        initializer=initializers,
        doc_string="ANN equivalent of a neuroprune spiking network: weights are chip mantissas",
    )
    model = helper.make_model(graph, producer_name="neuroprune", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, {"neuroprune.network": network.name, "neuroprune.layers": str(len(network))})
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def write(network: Network, path: str | os.PathLike[str]) -> Path:
    """Write the ANN-equivalent ONNX graph of ``network`` to ``path`` atomically."""
    onnx = _onnx()
    path = Path(path)
    model = to_onnx(network)
    with atomic_path(path) as tmp_name:
        onnx.save(model, str(tmp_name))
    return path
