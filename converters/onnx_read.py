"""ONNX import: the float ANN of an ONNX model.

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
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.ann import Ann, AnnLayer
from neuroprune.errors import FormatError, UnsupportedLayerError
from neuroprune.ir import LAYER_TYPES, conv_output_size
from neuroprune.validate import check_input_file, check_shape, naming, onnx_tensor

__all__ = ["read_ann", "check_against_onnxruntime", "SUPPORTED_OPS"]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise FormatError("ONNX support needs the 'onnx' package: pip install onnx") from None
    return onnx


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
    path = check_input_file(path, "an .onnx model file")
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
