"""ONNX export of a network's ANN equivalent.

:func:`to_onnx` writes a network's ANN-equivalent graph -- ``Gemm``/``Conv`` with the IR
weight mantissas and biases, ``Relu`` after every layer with neurons, pools as depthwise
``Conv`` with equal taps, ``ConvTranspose`` (unpools as depthwise ones with equal taps),
``Concat`` along channels, ``Flatten`` -- for inspection tools such as Netron. Each node's
``doc_string`` holds its neuron parameters; a layer's spike rate is about
``relu(W x + b) / v_th_mant`` per step when it neither leaks nor keeps current.

Sigma-delta (SDNN) layers are ReLU layers already: their graded output tracks
``relu(W x + b)`` up to the delta threshold and the chip's fixed-point rounding, so they
export as the same ``Gemm``/``Conv`` + ``Relu`` (the ANN a sigma-delta net runs at its
limit of fine thresholds). Synaptic delays shift spike times, not rates, and are named in the
node's ``doc_string`` only. The host-side ``average`` readout is a ``Reshape`` to ``(N, groups,
group size)`` and a ``ReduceMean``. Kinds with no ANN equivalent are refused in one line naming
netx, the format that carries them: recurrent (``dense_rec``) and complex (``dense_comp``)
layers, resonate-and-fire neurons.
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
from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import (
    AverageLayer,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    Network,
    Neuron,
    PoolLayer,
)
from neuroprune.registry import lookup
from neuroprune.ir import ConcatLayer, ConvTransposeLayer, UnpoolLayer  # the transposed and joined kinds

__all__ = ["to_onnx", "write"]

OPSET = 17
ONNX_IR_VERSION = 8  # what onnxruntime releases of the last years all load
#: neuron types whose ANN equivalent is a ReLU: Loihi's CUBA (rate) and lava-dl's sigma-delta (activation)
RELU_NEURONS = ("CUBA", "LOIHI", "SDNN")


def _neuron_doc(neuron: Neuron | None) -> str:
    if neuron is None:
        return "no neuron (non-spiking)"
    if neuron.kind == "SDNN":
        return (f"SDNN sigma-delta neuron, ReLU: its graded output tracks relu(input) (a delta is sent when the "
                f"change exceeds v_th_mant={neuron.v_th_mant} * 64), sigma_output={neuron.sigma_output}")
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
    """The ReLU standing for the layer's spiking neurons (none without a neuron): a CUBA
    layer's rate, a sigma-delta layer's ReLU activation. Resonate-and-fire neurons have no
    ANN equivalent and are refused."""
    neuron = getattr(layer, "neuron", None)
    if neuron is None:
        return current
    if neuron.kind not in RELU_NEURONS:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: neuron type {neuron.kind} has no ANN equivalent in ONNX (a resonator is no "
            "rectifier); write .net (lava-dl netx) instead"
        )
    doc = ("sigma-delta ReLU activation" if neuron.kind == "SDNN"
           else "spiking neurons rectify: rate ~ relu(input) / v_th_mant")
    g.nodes.append(g.helper.make_node("Relu", [current], [f"{layer.name}.rate"], name=f"{layer.name}.relu",
                                      doc_string=doc))
    return f"{layer.name}.rate"


def _onnx_dense(g: _OnnxParts, index: int, layer: DenseLayer, current: str) -> str:
    out, doc = f"{layer.name}.out", g.doc(index, layer)
    inputs = [current, g.tensor(layer.effective_weight.astype(np.float32), f"{layer.name}.weight")]
    if layer.bias is not None:
        inputs.append(g.tensor(np.broadcast_to(np.asarray(layer.bias, dtype=np.float32).reshape(-1),
                                               (layer.out_channels,)).copy(), f"{layer.name}.bias"))
    if layer.delay is not None and np.any(layer.delay):
        doc += "; synaptic delays (they shift spike times, not rates) are not shown"
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


def _onnx_average(g: _OnnxParts, index: int, layer: AverageLayer, current: str) -> str:
    """The host's readout: ``Reshape`` to ``(N, num_outputs, group)``, then ``ReduceMean`` over the group."""
    grouped, out = f"{layer.name}.groups", f"{layer.name}.out"
    shape = g.tensor(np.array([-1, layer.num_outputs, int(np.prod(g.network.input_shape_of(index))) //
                               layer.num_outputs], dtype=np.int64), f"{layer.name}.shape")
    g.nodes.append(g.helper.make_node("Reshape", [current, shape], [grouped], name=f"{layer.name}.reshape"))
    g.nodes.append(g.helper.make_node("ReduceMean", [grouped], [out], name=layer.name, axes=[2], keepdims=0,
                                      doc_string=f"layer {index} (average, computed by the host): mean of "
                                                 f"{layer.num_outputs} equal groups"))
    return out


def _refusal(kind: str, why: str) -> Any:
    def refuse(g: _OnnxParts, index: int, layer: Layer, current: str) -> str:
        raise UnsupportedLayerError(f"layer {index} ({layer.name}): layer type {kind!r} has no ONNX export ({why}); "
                                    "write .net (lava-dl netx) instead")
    return refuse


#: the ONNX nodes of each layer kind, from (parts, index, layer, current tensor name) to the next name
_ONNX_EXPORTERS: dict[str, Any] = {
    "input": _onnx_input,
    "flatten": _onnx_flatten,
    "dense": _onnx_dense,
    "dense_rec": _refusal("dense_rec", "a feed-forward ANN graph has no recurrent spiking layer"),
    "dense_comp": _refusal("dense_comp", "a complex synapse drives resonate-and-fire neurons, no rectifier"),
    "conv": _onnx_conv,
    "convT": _onnx_conv,
    "unpool": _onnx_unpool,
    "concat": _onnx_concat,
    "pool": _onnx_pool,
    "average": _onnx_average,
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
