"""ONNX import with ANN -> SNN conversion, and ONNX export of a network's ANN equivalent.

Import (:func:`read_ann`, :func:`to_snn`, or both at once with :func:`convert`)
---------------------------------------------------------------------------------
:func:`read_ann` parses a feed-forward ONNX graph with the ``onnx`` package into an
:class:`Ann`: a chain of float layers (``dense``, ``conv``, ``pool``, ``flatten``, each
with an optional ReLU). Understood ops:

- ``Gemm``; ``MatMul`` (+ ``Add`` of a constant bias); ``Conv`` (2-D, symmetric padding);
- ``Relu``; ``BatchNormalization`` folded into the ``Conv``/``Gemm`` before it;
- ``Flatten`` (axis 1) and ``Reshape`` that flattens (shape constant or inferred);
- ``AveragePool`` / ``GlobalAveragePool`` as a depthwise convolution with equal taps;
  ``MaxPool`` only with a 1x1 kernel (plain subsampling) -- a max has no rate equivalent;
- ``Identity``, ``Dropout`` (inference: identity), a final ``Softmax``/``LogSoftmax``
  (monotone: the arg-max, which is what spike counts give, is unchanged).

Constant inputs may also come through ``Identity`` (torch.onnx writes equal initializers
once and refers to the copy with an Identity), ``Constant`` (any value form) or
``ConstantOfShape``.

Every other op, and every understood op with attributes the chip cannot express, is
collected; :func:`read_ann` then raises one :class:`UnsupportedLayerError` listing each
``OpType 'node name' (reason)``. Nodes that only compute shapes (``Shape``, ``Gather``,
``Concat`` of constants, ...) are skipped. :func:`check_against_onnxruntime` runs the
same samples through onnxruntime and the parsed :class:`Ann` and reports the difference.

ANN -> SNN (:func:`to_snn`): data-based threshold balancing
-----------------------------------------------------------
Rate coding with non-leaky integrate-and-fire neurons (``i_decay = 4096``: no current
memory; ``v_decay = 0``: no leak; reset to 0). A neuron driven by ``z`` threshold units
per step fires about ``z`` spikes per step. With ``p_l`` the ``percentile``-th
percentile (default 99.9, Rueckauer et al. 2017) of layer ``l``'s ReLU activations on
the calibration samples, ``lambda_l = p_l / max_rate`` is the activation that fires every
step, so activations ``a_l`` map to rates ``a_l / lambda_l`` (``max_rate`` = 0.5 by
default: reset to zero throws away the voltage above threshold, which costs most at
high rates; measured on a digits CNN, 0.5 instead of 1 gains 2-4 points). In threshold
units the weights become::

    W~_l = W_l * lambda_{l-1} / lambda_l        b~_l = b_l / lambda_l  (per step)

Loihi has one threshold and one weight scale per layer, so per layer
``v_th_mant = round(254 / max|W~_l|)`` and the weight mantissas are
``2 * round(v_th_mant * W~_l / 2)`` clipped to [-256, 254] -- slayer's even 8-bit grid, so
the result also loads into a slayer model exactly -- and the bias mantissa is
``round(v_th_mant * b~_l)``: the ratios weight / threshold are those of the ANN up to
the 8-bit rounding. A last layer without ReLU (logits) is balanced on its positive part;
the class is the output neuron with the most spikes (:meth:`Conversion.predict`).

Input encoding. The chip receives the input mantissa ``round(64 x)`` every step for an
analog ``x`` in [0, 1] -- the convention of :meth:`neuroprune.snn.model.SNN.chip_input`;
:meth:`Conversion.chip_input` builds these integers. Two encodings
(``ConversionConfig.input_encoding``):

- ``"neuron"`` (default; direct encoding by an input neuron layer, any chip, verifiable
  in Lava): the same IF neuron with threshold ``round(64 / input_rate) - 1``, so ``x = 1``
  spikes at ``input_rate`` (default 0.5; ``lambda_0 = 1 / input_rate``); negative inputs
  never spike. A constant drive into a reset-to-zero neuron fires periodically, at rates
  1/n only, so the input is quantized coarsely (x in (0.69, 1) all give 1/2 or 1/3).
  Dense first layers average this out; small convolution kernels do not.
- ``"graded"`` (Loihi 2 graded spikes): no input neurons; the mantissas enter the first
  layer directly (``lambda_0 = 1 / 64`` per mantissa unit), with the first threshold
  capped so ``sum |w| * 64`` stays within the 24-bit current. netx writes
  binary-message synapses, so Lava runs such a file with binary input: this encoding
  is for graded-spike deployments and the fixed-point model.

Measured on the digits test split (359 samples), T = 64, networks trained in plain
torch (tests/converters/test_onnx.py): MLP 64-100-10 ANN 96.7 %, SNN 95.0 % (neuron
input) / 97.2 % (graded); CNN (conv-BN-ReLU-avgpool-conv-ReLU-linear) ANN 96.1 %, SNN
89.4 % (neuron) / 94.7 % (graded).

Export (:func:`write`)
----------------------
:func:`to_onnx` writes a network's ANN-equivalent graph -- ``Gemm``/``Conv`` with the IR
weight mantissas and biases, ``Relu`` after every layer with neurons, pools as depthwise
``Conv`` with equal taps, ``Flatten`` -- for inspection tools such as Netron. Each node's
``doc_string`` holds its neuron parameters; a layer's spike rate is about
``relu(W x + b) / v_th_mant`` per step when it neither leaks nor keeps current.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroprune.atomic import atomic_path
from neuroprune.errors import FormatError, ShapeError, UnsupportedLayerError
from neuroprune.ir import (
    LAYER_TYPES,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    Network,
    Neuron,
    PoolLayer,
    conv_output_size,
)
from neuroprune.loihi_arith import DECAY_UNITY, MAX_ACTIVATION, MAX_BIAS_MANT, threshold_for, to_mantissa
from neuroprune.registry import lookup
from neuroprune.validate import check_finite_array, check_int_range, check_shape, naming, onnx_tensor

__all__ = [
    "AnnLayer",
    "Ann",
    "ConversionConfig",
    "Conversion",
    "read_ann",
    "check_against_onnxruntime",
    "to_snn",
    "convert",
    "to_onnx",
    "write",
    "SUPPORTED_OPS",
    "INPUT_SCALE",
]

INPUT_SCALE = 64  # input mantissa per step for an analog input of 1.0 (as SNN.chip_input)
INPUT_ENCODINGS = ("neuron", "graded")
OPSET = 17
ONNX_IR_VERSION = 8  # what onnxruntime releases of the last years all load


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise FormatError("ONNX support needs the 'onnx' package: pip install onnx") from None
    return onnx


# ======================================================================= the float ANN
@dataclass(frozen=True, eq=False)
class AnnLayer:
    """One float layer of an imported ANN.

    ``kind`` is ``dense`` (weight ``(out, in)``), ``conv`` (weight ``(out, in/groups, kH,
    kW)``, torch semantics), ``pool`` (per-channel sum over ``kernel`` times ``tap``, i.e.
    average pooling with ``tap = 1 / (kH kW)``) or ``flatten``. ``relu`` applies a ReLU
    to the output. ``nodes`` names the ONNX nodes merged into the layer.
    """

    kind: str
    name: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    tap: float = 1.0
    relu: bool = False
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Ann:
    """A feed-forward float ANN: ``input_shape`` (no batch axis) and a chain of layers.

    ``output`` is ``"logits"``, ``"softmax"`` or ``"log_softmax"`` (a final softmax of the
    ONNX graph, kept so outputs compare with onnxruntime).
    """

    input_shape: tuple[int, ...]
    layers: tuple[AnnLayer, ...]
    output: str = "logits"
    name: str = "ann"

    def forward(self, x: np.ndarray, all_layers: bool = False) -> Any:
        """Run samples ``x`` (N, *input_shape; other shapes of the same size are reshaped)
        in float32.

        Returns the output ``(N, classes)`` (with the final softmax, if any), or with
        ``all_layers`` the list of every layer's output (before the softmax).
        """
        import torch

        x = _fit_input(np.asarray(x, dtype=np.float32), self.input_shape)
        h = torch.from_numpy(np.ascontiguousarray(x))
        outputs: list[np.ndarray] = []
        with torch.no_grad():
            for layer in self.layers:
                h = lookup(_ANN_FORWARD, layer.kind, "float forward", f"ANN layer {layer.name!r}")(layer, h)
                if layer.relu:
                    h = torch.relu(h)
                outputs.append(h.numpy())
            if all_layers:
                return outputs
            if self.output == "softmax":
                h = torch.softmax(h, dim=1)
            elif self.output == "log_softmax":
                h = torch.log_softmax(h, dim=1)
        return h.numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index (arg-max of the output) per sample."""
        return np.asarray(self.forward(x)).argmax(axis=1)


def _forward_dense(layer: AnnLayer, h: Any) -> Any:
    import torch.nn.functional as F

    return F.linear(h, _tensor(layer.weight), _tensor(layer.bias))


def _forward_conv(layer: AnnLayer, h: Any) -> Any:
    import torch.nn.functional as F

    return F.conv2d(h, _tensor(layer.weight), _tensor(layer.bias), layer.stride, layer.padding, layer.dilation,
                    layer.groups)


def _forward_pool(layer: AnnLayer, h: Any) -> Any:
    import torch
    import torch.nn.functional as F

    channels = h.shape[1]
    taps = torch.full((channels, 1, *layer.kernel), float(layer.tap))
    return F.conv2d(h, taps, None, layer.stride, layer.padding, 1, channels)


def _forward_flatten(layer: AnnLayer, h: Any) -> Any:
    return h.reshape(h.shape[0], -1)


#: the float computation of each ANN layer kind (batch-first torch tensors)
_ANN_FORWARD: dict[str, Callable[[AnnLayer, Any], Any]] = {
    "dense": _forward_dense,
    "conv": _forward_conv,
    "pool": _forward_pool,
    "flatten": _forward_flatten,
}


def _tensor(array: np.ndarray | None) -> Any:
    import torch

    return None if array is None else torch.from_numpy(np.asarray(array, dtype=np.float32))


# ======================================================================= ONNX parsing
@dataclass
class _Builder:
    """Accumulates ANN layers while the ONNX chain is walked; ``shape`` is the current
    per-sample shape (None once an unsupported node made it unknown)."""

    shape: tuple[int, ...] | None
    layers: list[AnnLayer]
    output: str = "logits"

    def last_synaptic(self, allow_flatten: bool) -> int | None:
        for index in range(len(self.layers) - 1, -1, -1):
            kind = self.layers[index].kind
            if LAYER_TYPES[kind].synaptic:
                return index
            if not LAYER_TYPES[kind].passthrough or not allow_flatten:
                return None
        return None

    def add(self, layer: AnnLayer, out_shape: tuple[int, ...] | None) -> None:
        if out_shape is not None:
            check_shape(out_shape, "output shape", f"layer {layer.name!r}",
                        "the layer is far too large for a neuromorphic chip")
        self.layers.append(layer)
        self.shape = out_shape

    def update(self, index: int, node_name: str, **changes: Any) -> None:
        layer = self.layers[index]
        self.layers[index] = dataclasses.replace(layer, nodes=layer.nodes + (node_name,), **changes)


Handler = Callable[[_Builder, Any, dict[str, np.ndarray], dict[str, tuple[int, ...]]], "str | None"]


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _const(node: Any, position: int, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    if len(node.input) <= position or not node.input[position]:
        return None
    return constants.get(node.input[position])


def _gemm(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    attrs = _attrs(node)
    if attrs.get("transA", 0):
        return "transA=1 is not supported"
    weight = _const(node, 1, constants)
    if weight is None:
        return "weight B is not a constant"
    weight = np.asarray(weight, dtype=np.float64)
    weight = (weight if attrs.get("transB", 0) else weight.T) * float(attrs.get("alpha", 1.0))
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = _const(node, 2, constants)
        if c is None:
            return "bias C is not a constant"
        if c.size not in (1, weight.shape[0]):
            return f"bias C of shape {c.shape} is not one value per output"
        bias = np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (weight.shape[0],)) * float(attrs.get("beta", 1.0))
    return _add_dense(b, node, weight, bias)


def _add_dense(b: _Builder, node: Any, weight: np.ndarray, bias: np.ndarray | None) -> str | None:
    if weight.ndim != 2:
        return f"weight of shape {weight.shape} is not a matrix"
    if b.shape is not None:
        if len(b.shape) != 1:
            return f"receives shape {b.shape}; flatten it first"
        if b.shape[0] != weight.shape[1]:
            return f"weight expects {weight.shape[1]} inputs, the previous layer gives {b.shape[0]}"
    b.add(AnnLayer("dense", node.name, weight=weight, bias=bias, nodes=(node.name,)), (int(weight.shape[0]),))
    return None


def _matmul(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    weight = _const(node, 1, constants)
    if weight is None or node.input[0] in constants:
        return "only activation x constant weight (X @ W) is supported"
    return _add_dense(b, node, np.asarray(weight, dtype=np.float64).T, None)


def _bias(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    sign = 1.0
    value = _const(node, 1, constants)
    if value is None:
        value = _const(node, 0, constants)
        if node.op_type == "Sub":
            return "subtracts the activation from a constant"
    else:
        sign = -1.0 if node.op_type == "Sub" else 1.0
    if value is None:
        return "adds two activations (skip connections are not supported)"
    index = b.last_synaptic(allow_flatten=False)
    if index is None or index != len(b.layers) - 1 or b.layers[index].kind == "pool" or b.layers[index].relu:
        return "adds a constant that is not the bias of a Conv/Gemm/MatMul right before it"
    layer = b.layers[index]
    channels = layer.weight.shape[0]
    flat = np.asarray(value, dtype=np.float64)
    if layer.kind == "dense":  # (out,) or (1, out)
        per_channel = flat.size == 1 or (flat.size == channels and flat.shape[-1] == channels)
    else:  # (C, 1, 1) or (1, C, 1, 1)
        per_channel = flat.size == 1 or (flat.size == channels and flat.ndim >= 3 and flat.shape[-3] == channels)
    if not per_channel:
        return f"adds a constant of shape {flat.shape} that is not one value per output channel"
    squeezed = flat.reshape(-1)
    add = sign * np.broadcast_to(squeezed.reshape(-1), (channels,))
    bias = add if layer.bias is None else layer.bias + add
    b.update(index, node.name, bias=bias)
    return None


def _pair(values: Any, default: int) -> tuple[int, int]:
    if values is None:
        return default, default
    values = [int(v) for v in values]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _padding(attrs: dict[str, Any], shape: tuple[int, ...] | None, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int]) -> tuple[int, int] | str:
    auto = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto == "VALID":
        return 0, 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if shape is None:
            return "auto_pad SAME with an unknown input size"
        pads = []
        for size, k, s, d in zip(shape[-2:], kernel, stride, dilation):
            out = -(-size // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            if total % 2:
                return f"auto_pad {auto} needs asymmetric padding here"
            pads.append(total // 2)
        return pads[0], pads[1]
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        return f"asymmetric padding {pads} is not supported"
    return pads[0], pads[1]


def _conv(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    attrs = _attrs(node)
    weight = _const(node, 1, constants)
    if weight is None:
        return "weight W is not a constant"
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        return f"only 2-D convolutions are supported (weight shape {weight.shape})"
    bias = _const(node, 2, constants)
    if len(node.input) > 2 and node.input[2] and bias is None:
        return "bias B is not a constant"
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride, dilation = _pair(attrs.get("strides"), 1), _pair(attrs.get("dilations"), 1)
    padding = _padding(attrs, b.shape, kernel, stride, dilation)
    if isinstance(padding, str):
        return padding
    groups = int(attrs.get("group", 1))
    out_shape = None
    if b.shape is not None:
        if len(b.shape) != 3:
            return f"needs a (C, H, W) input, got {b.shape}"
        if b.shape[0] != weight.shape[1] * groups:
            return f"weight expects {weight.shape[1] * groups} input channels, the previous layer gives {b.shape[0]}"
        hw = [conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip(b.shape[1:], kernel, stride, padding, dilation)]
        out_shape = (int(weight.shape[0]), hw[0], hw[1])
    layer = AnnLayer("conv", node.name, weight=weight, bias=None if bias is None else np.asarray(bias, dtype=np.float64),
                     stride=stride, padding=padding, dilation=dilation, groups=groups, nodes=(node.name,))
    b.add(layer, out_shape)
    return None


def _relu(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    if not b.layers:
        return None  # on the input: identity for the non-negative inputs the chip encodes
    index = b.last_synaptic(allow_flatten=True)
    if index is None:
        return "follows no Conv/Gemm/pooling layer"
    b.update(index, node.name, relu=True)
    return None


def _batchnorm(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    attrs = _attrs(node)
    if attrs.get("training_mode", 0):
        return "training_mode=1"
    params = [_const(node, i, constants) for i in range(1, 5)]
    if any(p is None for p in params):
        return "scale, bias, mean and variance must be constants"
    index = b.last_synaptic(allow_flatten=False)
    if index is None or index != len(b.layers) - 1 or b.layers[index].kind == "pool" or b.layers[index].relu:
        return "does not directly follow a Conv/Gemm, so it cannot be folded into its weights"
    layer = b.layers[index]
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    channels = layer.weight.shape[0]
    if scale.size != channels:
        return f"normalizes {scale.size} channels, the layer before has {channels}"
    weight = layer.weight * scale.reshape((channels,) + (1,) * (layer.weight.ndim - 1))
    bias = ((np.zeros(channels) if layer.bias is None else layer.bias) - mean) * scale + beta
    b.update(index, node.name, weight=weight, bias=bias)
    return None


def _flatten(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    axis = int(_attrs(node).get("axis", 1))
    if axis != 1:
        return f"axis={axis}; only axis=1 (keep the batch axis) is supported"
    return _add_flatten(b, node)


def _add_flatten(b: _Builder, node: Any) -> str | None:
    if b.shape is not None and len(b.shape) == 1:
        return None  # already flat
    b.add(AnnLayer("flatten", node.name, nodes=(node.name,)), None if b.shape is None else (int(np.prod(b.shape)),))
    return None


def _reshape(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    if b.shape is None:
        return None
    size = int(np.prod(b.shape))
    target = _const(node, 1, constants)
    if target is not None:
        dims = [int(d) for d in np.asarray(target).reshape(-1)]
        sample = dims[1:]
        if not dims or dims[0] not in (-1, 0, 1, BATCH_PLACEHOLDER):
            return f"reshape to {dims} changes the batch axis"
        if dims[0] == -1 and any(d <= 0 for d in sample):  # batch inferred: the rest must be explicit
            return f"reshape to {dims} leaves the batch size undetermined"
        sample = [b.shape[i] if d == 0 and i < len(b.shape) else d for i, d in enumerate(sample)]
        if sample.count(-1) == 1:
            known = int(np.prod([d for d in sample if d != -1])) or 1
            sample = [size // known if d == -1 else d for d in sample]
    elif node.output[0] in inferred:
        sample = list(inferred[node.output[0]][1:])
    else:
        return "target shape is computed at run time and could not be inferred"
    if tuple(sample) == b.shape:
        return None
    if sample == [size]:
        return _add_flatten(b, node)
    return f"reshapes {b.shape} to {tuple(sample)}; only flattening is supported"


def _pool_common(b: _Builder, node: Any, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], tap: float) -> str | None:
    out_shape = None
    if b.shape is not None:
        if len(b.shape) != 3:
            return f"needs a (C, H, W) input, got {b.shape}"
        hw = [conv_output_size(s, k, st, p, 1) for s, k, st, p in zip(b.shape[1:], kernel, stride, padding)]
        if min(hw) < 1:
            return f"kernel {kernel} does not fit input {b.shape}"
        out_shape = (b.shape[0], hw[0], hw[1])
    b.add(AnnLayer("pool", node.name, kernel=kernel, stride=stride, padding=padding, tap=tap, nodes=(node.name,)),
          out_shape)
    return None


def _ceil_changes_size(b: _Builder, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    if b.shape is None or len(b.shape) != 3:
        return True
    return any((s + 2 * p - k) % st for s, k, st, p in zip(b.shape[1:], kernel, stride, padding))


def _avgpool(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    attrs = _attrs(node)
    kernel = _pair(attrs.get("kernel_shape"), 1)
    stride = _pair(attrs.get("strides"), 1)
    padding = _padding(attrs, b.shape, kernel, stride, (1, 1))
    if isinstance(padding, str):
        return padding
    if attrs.get("ceil_mode", 0) and _ceil_changes_size(b, kernel, stride, padding):
        return "ceil_mode=1 adds partial windows"
    if any(padding) and not attrs.get("count_include_pad", 0):
        return "count_include_pad=0 with padding divides border windows differently (no fixed weight)"
    if attrs.get("dilations") and any(int(d) != 1 for d in attrs["dilations"]):
        return "dilated pooling is not supported"
    return _pool_common(b, node, kernel, stride, padding, 1.0 / (kernel[0] * kernel[1]))


def _global_avgpool(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    if b.shape is None or len(b.shape) != 3:
        return "needs a known (C, H, W) input"
    kernel = (b.shape[1], b.shape[2])
    return _pool_common(b, node, kernel, kernel, (0, 0), 1.0 / (kernel[0] * kernel[1]))


def _maxpool(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    attrs = _attrs(node)
    kernel = _pair(attrs.get("kernel_shape"), 1)
    if kernel != (1, 1):
        return f"max pooling over {kernel[0]}x{kernel[1]} has no spike-rate equivalent; use AveragePool"
    padding = _padding(attrs, b.shape, kernel, _pair(attrs.get("strides"), 1), (1, 1))
    if isinstance(padding, str) or any(padding):
        return "padded max pooling is not supported"
    return _pool_common(b, node, kernel, _pair(attrs.get("strides"), 1), (0, 0), 1.0)


def _identity(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    return None


def _softmax(b: _Builder, node: Any, constants: dict[str, np.ndarray], inferred: dict[str, tuple[int, ...]]) -> str | None:
    axis = int(_attrs(node).get("axis", -1))
    if b.shape is not None and (len(b.shape) != 1 or axis not in (-1, 1)):
        return f"softmax over axis {axis} of shape {b.shape}; only over the classes of a flat output"
    b.output = "softmax" if node.op_type == "Softmax" else "log_softmax"
    return None


_HANDLERS: dict[str, Handler] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _bias,
    "Sub": _bias,
    "Conv": _conv,
    "Relu": _relu,
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "MaxPool": _maxpool,
    "Identity": _identity,
    "Dropout": _identity,
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
}
SUPPORTED_OPS = tuple(_HANDLERS)
_SHAPE_OPS = ("Shape", "Size")  # read only the shape of an activation
BATCH_PLACEHOLDER = 7919  # stands for the batch size while shape arithmetic is folded


def _constant_value(attrs: dict[str, Any], where: str = "ONNX model") -> np.ndarray | None:
    """The value of a ``Constant`` node (``value`` tensor or ``value_float(s)``/``value_int(s)``)."""
    if "value" in attrs:
        return onnx_tensor(attrs["value"], where)
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if name in attrs:
            return np.asarray(attrs[name], dtype=dtype)
    return None


def _fold(node: Any, constants: dict[str, np.ndarray]) -> None:
    """Evaluate a shape-arithmetic node whose inputs are all known (torch writes
    ``x.view(x.size(0), -1)`` as Shape -> Gather -> Unsqueeze -> Concat -> Reshape)."""
    values = [constants.get(name) if name else None for name in node.input]
    if any(v is None for v, name in zip(values, node.input) if name) or not node.output:
        return
    attrs = _attrs(node)
    op = node.op_type
    try:
        if op == "Gather":
            result = np.take(values[0], values[1], axis=int(attrs.get("axis", 0)))
        elif op in ("Unsqueeze", "Squeeze"):
            axes = attrs.get("axes", values[1] if len(values) > 1 else None)
            if op == "Unsqueeze":
                result = values[0]
                for axis in sorted(int(a) for a in np.asarray(axes).reshape(-1)):
                    result = np.expand_dims(result, axis)
            else:
                result = np.squeeze(values[0], axis=None if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1)))
        elif op == "Concat":
            result = np.concatenate([np.atleast_1d(v) for v in values], axis=int(attrs.get("axis", 0)))
        elif op == "Slice":
            starts, ends = values[1].reshape(-1), values[2].reshape(-1)
            axes = values[3].reshape(-1) if len(values) > 3 and values[3] is not None else range(len(starts))
            steps = values[4].reshape(-1) if len(values) > 4 and values[4] is not None else [1] * len(starts)
            index = [slice(None)] * values[0].ndim
            for axis, start, end, step in zip(axes, starts, ends, steps):
                index[int(axis)] = slice(int(start), int(end), int(step))
            result = values[0][tuple(index)]
        elif op in ("Cast", "Identity"):  # torch.onnx writes equal initializers once, then Identity
            result = values[0]
        elif op == "ConstantOfShape":
            fill = attrs.get("value")
            fill = np.zeros(1, dtype=np.float32) if fill is None else _constant_value({"value": fill}).reshape(-1)
            result = np.full(tuple(int(d) for d in values[0].reshape(-1)), fill[0], dtype=fill.dtype)
        elif op in ("Mul", "Div", "Add", "Sub"):
            function = {"Mul": np.multiply, "Div": np.floor_divide, "Add": np.add, "Sub": np.subtract}[op]
            result = function(values[0], values[1])
        else:
            return
    except (ValueError, IndexError, TypeError):
        return
    constants[node.output[0]] = np.asarray(result)


def _load_model(path: str | os.PathLike[str]) -> Any:
    onnx = _onnx()
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, expected an .onnx model file")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf DecodeError and friends
        raise FormatError(f"{path}: not a readable ONNX model ({type(err).__name__}: {str(err)[:120]})") from None
    if not model.graph.node:
        raise FormatError(f"{path}: the ONNX graph has no nodes; is it an ONNX model?")
    return model


def _shape_of(value_info: Any) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [int(d.dim_value) if d.HasField("dim_value") else None for d in dims]


def read_ann(path: str | os.PathLike[str]) -> Ann:
    """Parse a feed-forward ONNX model into an :class:`Ann` (ops in the module docstring).

    Raises
    ------
    FormatError for a missing or unreadable file; UnsupportedLayerError listing every
    unsupported node (op type, node name and reason) in one message.
    """
    path = Path(path)
    with naming(path):
        return _read_ann(path)


def _read_ann(path: Path) -> Ann:
    onnx = _onnx()
    model = _load_model(path)
    graph = model.graph
    constants = {init.name: onnx_tensor(init, str(path)) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _constant_value(_attrs(node), str(path))
            if value is not None:
                constants[node.output[0]] = value
    inputs = [v for v in graph.input if v.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedLayerError(
            f"{path}: the model has {len(inputs)} input(s) and {len(graph.output)} output(s); one of each is supported"
        )
    dims = _shape_of(inputs[0])
    if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
        raise FormatError(f"{path}: input {inputs[0].name!r} has shape {dims}; need (batch, *fixed sizes)")
    input_shape = check_shape(dims[1:], f"input {inputs[0].name!r} shape", str(path),
                              "the model is damaged, or its input is far too large for a neuromorphic chip")
    inferred: dict[str, tuple[int, ...]] = {}
    try:
        typed = onnx.shape_inference.infer_shapes(model, data_prop=True)
        for info in list(typed.graph.value_info) + list(typed.graph.output):
            shape = _shape_of(info)
            if shape and all(d is not None for d in shape[1:]):
                inferred[info.name] = (shape[0] or 1, *shape[1:])  # type: ignore[arg-type]
    except Exception:  # inference is a help for Reshape only
        pass
    builder = _Builder(shape=input_shape, layers=[])
    problems: list[str] = []
    data = {inputs[0].name}
    current = inputs[0].name
    after_softmax = False
    for position, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        if not any(name in data for name in node.input):
            _fold(node, constants)
            continue
        if node.op_type in _SHAPE_OPS:
            if node.op_type == "Shape" and node.input[0] == current and builder.shape is not None:
                full = np.array([BATCH_PLACEHOLDER, *builder.shape], dtype=np.int64)
                attrs = _attrs(node)
                constants[node.output[0]] = full[int(attrs.get("start", 0)):attrs.get("end", None)]
            continue
        if not node.name:
            node.name = f"{node.op_type}_{position}"
        label = f"{node.op_type} '{node.name}'"
        data_inputs = [name for name in node.input if name in data]
        if len(data_inputs) > 1 or data_inputs[0] != current:
            reason = "branches the graph; only a single chain of layers is supported"
        elif after_softmax:
            reason = "follows the Softmax; a softmax is supported only as the last op"
        elif node.op_type not in _HANDLERS:
            reason = "op type not supported"
        else:
            reason = _HANDLERS[node.op_type](builder, node, constants, inferred)
            after_softmax = builder.output != "logits"
        if reason is not None:
            problems.append(f"{label} ({reason})")
            if node.op_type not in ("Relu", "Identity", "Dropout") or len(data_inputs) > 1:
                builder.shape = None  # unknown from here; later checks skip shape tests
        data.add(node.output[0])
        current = node.output[0]
    if current != graph.output[0].name and not problems:
        problems.append(f"graph output {graph.output[0].name!r} is not the end of the layer chain")
    if problems:
        raise UnsupportedLayerError(
            f"{path}: {len(problems)} unsupported ONNX node(s): {'; '.join(problems)}. "
            f"Supported ops: {', '.join(SUPPORTED_OPS)}"
        )
    synaptic = [layer for layer in builder.layers if layer.kind in ("dense", "conv")]
    if not synaptic:
        raise UnsupportedLayerError(f"{path}: the model has no Gemm/MatMul/Conv layer to convert")
    last = max(i for i, layer in enumerate(builder.layers) if not LAYER_TYPES[layer.kind].passthrough)
    for index, layer in enumerate(builder.layers):
        if layer.kind in ("dense", "conv") and not layer.relu and index != last:
            raise UnsupportedLayerError(
                f"{path}: {layer.kind} layer {layer.name!r} has no Relu after it but feeds another layer; "
                "spiking neurons rectify every layer (only the last layer may be linear)"
            )
    return Ann(input_shape=input_shape, layers=tuple(builder.layers), output=builder.output, name=path.stem)


def check_against_onnxruntime(ann: Ann, path: str | os.PathLike[str], x: np.ndarray, tolerance: float = 1e-4) -> float:
    """Run ``x`` (N, *ann.input_shape) through onnxruntime and through ``ann``.

    Returns the largest absolute difference divided by ``max(1, max |onnxruntime output|)``;
    raises :class:`FormatError` when it exceeds ``tolerance`` (the import misread the model).
    """
    import onnxruntime as ort

    x = np.asarray(x, dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = session.get_inputs()[0].shape
    batch = declared[0] if isinstance(declared[0], int) and declared[0] > 0 else len(x)
    if len(x) % batch:
        x = x[: len(x) - len(x) % batch]
    name = session.get_inputs()[0].name
    reference = np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])
    ours = ann.forward(x)
    if ours.shape != reference.shape:
        raise FormatError(f"{path}: imported ANN gives shape {ours.shape}, onnxruntime {reference.shape}")
    error = float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))
    if error > tolerance:
        raise FormatError(
            f"{path}: the imported ANN differs from onnxruntime by {error:.2e} (relative, tolerance {tolerance:.0e}); "
            "please report the model"
        )
    return error


# ======================================================================= ANN -> SNN
@dataclass(frozen=True)
class ConversionConfig:
    """Settings of the rate conversion.

    percentile : activation percentile (in %) that maps to ``max_rate``.
    max_rate : spikes per step of a neuron at the percentile activation (0 < r <= 1);
        below 1 keeps neurons where reset-to-zero loses little of the residual voltage.
    input_rate : spikes per step of an input neuron driven by an analog 1.0 (0 < r <= 1).
    max_calibration_samples : calibration samples used for the percentiles.
    input_encoding : ``"neuron"`` (an input neuron layer turns the input mantissas into
        spikes; any chip, verifiable in Lava) or ``"graded"`` (the mantissas go straight
        into the first layer as graded spikes, Loihi 2; no input rate quantization).
    """

    percentile: float = 99.9
    input_rate: float = 0.5
    max_calibration_samples: int = 1000
    max_rate: float = 0.5
    input_encoding: str = "neuron"

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ShapeError(f"percentile={self.percentile} must be in (0, 100]")
        if not 0 < self.input_rate <= 1:
            raise ShapeError(f"input_rate={self.input_rate} must be in (0, 1] spikes per step")
        if not 0 < self.max_rate <= 1:
            raise ShapeError(f"max_rate={self.max_rate} must be in (0, 1] spikes per step")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ShapeError(f"input_encoding={self.input_encoding!r}; use one of {', '.join(INPUT_ENCODINGS)}")
        if self.max_calibration_samples < 1:
            raise ShapeError("max_calibration_samples must be >= 1")


@dataclass(frozen=True, eq=False)
class Conversion:
    """An ANN converted to an SNN.

    ``network`` is the chip network; ``scales[i]`` the activation ``lambda`` of ANN layer
    ``i`` that maps to one spike per step (``nan`` for flatten layers).
    """

    network: Network
    ann: Ann
    scales: tuple[float, ...]
    config: ConversionConfig

    def chip_input(self, x: np.ndarray, steps: int) -> np.ndarray:
        """Input mantissas ``(N, *input_shape, steps)``: ``round(64 x)`` every step."""
        if steps < 1:
            raise ShapeError(f"steps={steps} must be >= 1")
        x = _fit_input(np.asarray(x, dtype=np.float64), self.network.input_shape)
        mantissa = np.round(x * INPUT_SCALE).astype(np.int64)
        return np.repeat(mantissa[..., None], steps, axis=-1)

    def spike_counts(self, x: np.ndarray, steps: int, batch_size: int = 256) -> np.ndarray:
        """Output spike counts ``(N, classes)`` of the bit-exact fixed-point run."""
        from neuroprune.snn.fixed import run_fixed

        x = np.asarray(x)
        counts = []
        for start in range(0, len(x), batch_size):
            result = run_fixed(self.network, self.chip_input(x[start:start + batch_size], steps))
            counts.append(result.output().sum(dim=-1).reshape(min(batch_size, len(x) - start), -1).numpy())
        return np.concatenate(counts) if counts else np.zeros((0, int(np.prod(self.network.output_shape))))

    def predict(self, x: np.ndarray, steps: int) -> np.ndarray:
        """Class per sample: the output neuron with the most spikes (first one on ties)."""
        return self.spike_counts(x, steps).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray, steps: int) -> float:
        """Fraction of samples whose spike-count class equals ``y``."""
        return float(np.mean(self.predict(x, steps) == np.asarray(y)))


def _fit_input(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Samples ``(N, ...)`` reshaped to ``(N, *shape)`` when the sizes agree."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape(len(x), *shape)
    raise ShapeError(f"samples of shape {tuple(x.shape[1:])} do not fit the model input {tuple(shape)}")


def _threshold_and_mantissas(weight: np.ndarray, graded_input: int | None = None) -> tuple[int, np.ndarray]:
    """v_th_mant and even 8-bit mantissas keeping ``weight`` (threshold units) as ratios.

    With ``graded_input`` (the largest input mantissa), the threshold is also capped so
    that no neuron's summed input ``sum_i w_i m_i`` (inputs in [0, graded_input]) can
    overflow the 24-bit current (``MAX_ACTIVATION``).
    """
    largest = float(np.max(np.abs(weight))) if weight.size else 0.0
    v_th = threshold_for(largest)
    while True:
        mantissa = to_mantissa(weight, v_th)
        if graded_input is None or v_th == 1:
            return v_th, mantissa
        rows = mantissa.reshape(mantissa.shape[0], -1).astype(np.int64)
        worst = graded_input * max(int(np.clip(rows, 0, None).sum(axis=1).max()),
                                   int(np.clip(-rows, 0, None).sum(axis=1).max()))
        if worst <= MAX_ACTIVATION:
            return v_th, mantissa
        v_th = max(1, min(v_th - 1, int(v_th * MAX_ACTIVATION / worst * 0.99)))


def to_snn(ann: Ann, calibration: np.ndarray, config: ConversionConfig | None = None,
           name: str | None = None) -> Conversion:
    """Convert ``ann`` to a chip network by data-based threshold balancing.

    Parameters
    ----------
    ann : the float ANN (e.g. from :func:`read_ann`).
    calibration : training samples ``(N, *input_shape)`` (analog values in [0, 1]); the
        first ``config.max_calibration_samples`` set the per-layer percentiles.
    config : :class:`ConversionConfig` (percentile, input rate, input encoding).

    Returns
    -------
    Conversion with the IR network: an input layer (with IF neurons for the ``neuron``
    encoding), then one layer per ANN layer with non-leaky IF neurons
    (``i_decay=4096, v_decay=0``).
    """
    config = config or ConversionConfig()
    x = _fit_input(np.asarray(calibration, dtype=np.float32), ann.input_shape)[: config.max_calibration_samples]
    if len(x) == 0:
        raise ShapeError("no calibration samples")
    activations = ann.forward(x, all_layers=True)
    graded = config.input_encoding == "graded"
    if graded:  # the first layer sees mantissas round(64 x): one mantissa unit is 1/64
        layers: list[Layer] = [InputLayer(shape=ann.input_shape)]
        previous_scale = 1.0 / INPUT_SCALE
    else:
        input_threshold = int(round(INPUT_SCALE / config.input_rate)) - 1
        layers = [InputLayer(shape=ann.input_shape, neuron=_if_neuron(input_threshold))]
        previous_scale = 1.0 / config.input_rate
    scales: list[float] = []
    for layer, activation in zip(ann.layers, activations):
        to_layer = lookup(_SNN_LAYERS, layer.kind, "spiking form", f"ANN layer {layer.name!r}")
        if LAYER_TYPES[layer.kind].passthrough:  # flatten: no neurons, no scale
            layers.append(to_layer(layer, 1.0, 1.0, None))
            scales.append(float("nan"))
            continue
        where = f"{ann.name}: layer {layer.name!r}"
        check_finite_array(activation, "the activation on the calibration samples", where)
        positive = np.maximum(activation, 0.0)
        scale = float(np.percentile(positive, config.percentile))
        if scale <= 0:
            scale = float(positive.max()) or 1.0  # a (nearly) silent layer: any scale works
        scale /= config.max_rate  # the activation that would fire every step
        scales.append(scale)
        gain = previous_scale / scale
        # graded input into the first synaptic layer: keep its summed input within 24 bits
        bound = INPUT_SCALE if graded and len(scales) == 1 else None
        layers.append(to_layer(layer, gain, scale, bound))
        previous_scale = scale
    network = Network(layers, name=name or ann.name)
    return Conversion(network=network, ann=ann, scales=tuple(scales), config=config)


def _snn_flatten(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    return FlattenLayer(name=layer.name)


def _snn_pool(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    taps = np.full((1, layer.kernel[0] * layer.kernel[1]), layer.tap * gain)
    v_th, mantissa = _threshold_and_mantissas(taps, bound)
    return PoolLayer(name=layer.name, kernel=layer.kernel, stride=layer.stride, padding=layer.padding,
                     weight=int(mantissa.flat[0]), neuron=_if_neuron(v_th))


def _snn_weights(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> tuple[int, np.ndarray,
                                                                                          np.ndarray | None]:
    """(threshold, weight mantissas, bias) of a dense or conv layer scaled by ``gain``."""
    v_th, mantissa = _threshold_and_mantissas(np.asarray(layer.weight) * gain, bound)
    bias = None if layer.bias is None else check_int_range(
        np.round(np.asarray(layer.bias) / scale * v_th), "bias mantissa", f"layer {layer.name!r}", -MAX_BIAS_MANT - 1,
        MAX_BIAS_MANT, "the bias is too large against the layer's activations; retrain with weight decay",
    ).astype(np.int32)
    return v_th, mantissa, bias


def _snn_dense(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    v_th, mantissa, bias = _snn_weights(layer, gain, scale, bound)
    return DenseLayer(name=layer.name, weight=mantissa, bias=bias, neuron=_if_neuron(v_th))


def _snn_conv(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    v_th, mantissa, bias = _snn_weights(layer, gain, scale, bound)
    return ConvLayer(name=layer.name, weight=mantissa, bias=bias, neuron=_if_neuron(v_th), stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


#: the IR layer (IF neurons) of each ANN layer kind, from (layer, weight gain, activation scale, input bound)
_SNN_LAYERS: dict[str, Callable[[AnnLayer, float, float, int | None], Layer]] = {
    "dense": _snn_dense,
    "conv": _snn_conv,
    "pool": _snn_pool,
    "flatten": _snn_flatten,
}


def _if_neuron(v_th_mant: int) -> Neuron:
    """Non-leaky integrate-and-fire: no current memory, no voltage decay."""
    return Neuron(kind="CUBA", i_decay=DECAY_UNITY, v_decay=0, v_th_mant=int(v_th_mant))


def convert(path: str | os.PathLike[str], calibration: np.ndarray, config: ConversionConfig | None = None,
            check_samples: int = 64) -> tuple[Conversion, float]:
    """:func:`read_ann`, :func:`check_against_onnxruntime` on the first ``check_samples``
    calibration samples, then :func:`to_snn`. Returns (conversion, relative ANN error)."""
    ann = read_ann(path)
    samples = _fit_input(np.asarray(calibration, dtype=np.float32), ann.input_shape)
    error = check_against_onnxruntime(ann, path, samples[:check_samples]) if check_samples else float("nan")
    return to_snn(ann, samples, config), error


# ======================================================================= export
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


def _onnx_conv(g: _OnnxParts, index: int, layer: Layer, current: str, conv: ConvLayer | None = None,
               note: str = "") -> str:
    """A Conv node for ``conv`` (the layer itself, or its depthwise-conv form), its bias, its neurons."""
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
        "Conv", inputs, [out], name=layer.name, doc_string=g.doc(index, layer) + note,
        kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
        pads=[conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]],
        dilations=list(conv.dilation), group=conv.groups,
    ))
    if extra_bias is not None:
        g.nodes.append(g.helper.make_node("Add", [out, g.tensor(extra_bias, f"{layer.name}.bias")],
                                          [f"{layer.name}.biased"], name=f"{layer.name}.bias"))
        out = f"{layer.name}.biased"
    return _onnx_neurons(g, layer, out)


def _onnx_pool(g: _OnnxParts, index: int, layer: PoolLayer, current: str) -> str:
    conv = layer.as_conv(g.network.input_shape_of(index)[0])
    return _onnx_conv(g, index, layer, current, conv, "; sum pooling as a depthwise conv")


#: the ONNX nodes of each layer kind, from (parts, index, layer, current tensor name) to the next name
_ONNX_EXPORTERS: dict[str, Any] = {
    "input": _onnx_input,
    "flatten": _onnx_flatten,
    "dense": _onnx_dense,
    "conv": _onnx_conv,
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
        current = exporter(graph_parts, index, layer, current)
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
