"""Read and write lava-dl netx HDF5 network files with h5py only.

Layout (the one ``lava.lib.dl.netx.hdf5.Network`` loads and lava-dl's slayer writes)::

    /layer/{i}/type         b"input" | b"dense" | b"conv" | b"pool" | b"flatten"
    /layer/{i}/shape        output shape in torch order (C, H, W) or (N,)
    /layer/{i}/weight       dense (out, in); conv (out, in/groups, kH, kW); integers
    /layer/{i}/bias         optional neuron bias mantissa
    /layer/{i}/delay        optional synaptic delays (per output, per input or full)
    /layer/{i}/neuron/type  "CUBA" | "LOIHI"   (+ iDecay, vDecay, vThMant, refDelay, gradedSpike)
    conv only:              inChannels, outChannels, kernelSize, stride, padding, dilation, groups
    dense only:             inFeatures, outFeatures
    pool only:              kernelSize, stride, padding, dilation; weight (1, 1, kH, kW), one value

Lava reverses the stored shapes (it works in W, H, C). File keys keep the format's
spelling (``vThMant``); the IR uses snake_case names (``v_th_mant``).

lava-dl's slayer writes ``pool`` layers (sum pooling, one weight on every tap) and the
reader reads them as pool layers; but lava-dl 0.6's netx builds no Lava process for
``pool``, so pool layers are written as the equivalent depthwise convolution (which
Lava runs) and a written-and-read pool comes back as a conv layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroprune.atomic import atomic_path
from neuroprune.errors import FormatError, ShapeError, UnsupportedLayerError
from neuroprune.ir import (
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

__all__ = ["read", "write", "stored_types", "SUPPORTED_TYPES", "LAVA_UNBUILT"]

# IR neuron field -> netx key
_NEURON_KEYS = {
    "i_decay": "iDecay",
    "v_decay": "vDecay",
    "v_th_mant": "vThMant",
    "ref_delay": "refDelay",
    "graded_spike": "gradedSpike",
}


# ----------------------------------------------------------------------------- writing
def _write_type(group: Any, kind: str) -> None:
    group.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _write_neuron(group: Any, neuron: Neuron | None) -> None:
    if neuron is None:
        return
    group.create_dataset("neuron/type", data=neuron.kind)
    for field_name, key in _NEURON_KEYS.items():
        group.create_dataset(f"neuron/{key}", data=getattr(neuron, field_name))


def _write_synapse_extras(group: Any, layer: DenseLayer | ConvLayer) -> None:
    group.create_dataset("weight", data=layer.effective_weight)
    if layer.bias is not None:
        group.create_dataset("bias", data=layer.bias)
    if layer.delay is not None:
        group.create_dataset("delay", data=layer.delay)
    _write_neuron(group, layer.neuron)


def _write_input(group: Any, layer: InputLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "input")
    group.create_dataset("shape", data=np.array(shape))
    if layer.weight is not None:
        group.create_dataset("weight", data=layer.weight)
    if layer.bias is not None:
        group.create_dataset("bias", data=layer.bias)
    _write_neuron(group, layer.neuron)


def _write_dense(group: Any, layer: DenseLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "dense")
    group.create_dataset("shape", data=np.array(shape))
    group.create_dataset("inFeatures", data=layer.in_features)
    group.create_dataset("outFeatures", data=layer.out_channels)
    _write_synapse_extras(group, layer)


def _write_conv(group: Any, layer: ConvLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "conv")
    group.create_dataset("shape", data=np.array(shape))
    group.create_dataset("inChannels", data=layer.in_channels)
    group.create_dataset("outChannels", data=layer.out_channels)
    group.create_dataset("kernelSize", data=np.array(layer.kernel_size))
    group.create_dataset("stride", data=np.array(layer.stride))
    group.create_dataset("padding", data=np.array(layer.padding))
    group.create_dataset("dilation", data=np.array(layer.dilation))
    group.create_dataset("groups", data=layer.groups)
    _write_synapse_extras(group, layer)


#: netx types lava-dl 0.6's netx builds no Lava process for (it raises NotImplementedError);
#: :func:`write` emits a form Lava runs instead
LAVA_UNBUILT = ("pool",)


def _write_pool(group: Any, layer: PoolLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    # lava-dl 0.6's netx builds no Lava process for a 'pool' layer (NotImplementedError):
    # write the depthwise conv that computes the same sums, which every netx reader runs
    _write_conv(group, layer.as_conv(in_shape[0]), shape, in_shape)


def _write_flatten(group: Any, layer: FlattenLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "flatten")
    group.create_dataset("shape", data=np.array([shape[0], 1, 1]))  # lava-dl's convention


_WRITERS: dict[str, Callable[..., None]] = {
    "input": _write_input,
    "dense": _write_dense,
    "conv": _write_conv,
    "pool": _write_pool,
    "flatten": _write_flatten,
}


def write(network: Network, path: str | os.PathLike[str]) -> Path:
    """Write ``network`` to a netx HDF5 file at ``path``.

    The file is written to a temporary name in the same folder and renamed into
    place, so an interrupted write never leaves a half-written file.
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp_name, h5py.File(tmp_name, "w") as handle:
        layer_group = handle.create_group("layer")
        for index, layer in enumerate(network.layers):
            writer = lookup(_WRITERS, layer.kind, "netx writer", f"layer {index}")
            writer(layer_group.create_group(str(index)), layer, network.shapes[index],
                   network.input_shape_of(index))
    return path


# ----------------------------------------------------------------------------- reading
def _decode(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _scalar(group: Any, key: str, default: Any = None) -> Any:
    if key not in group:
        return default
    value = group[key][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value
    return value.item() if isinstance(value, np.generic) else value


def _array(group: Any, key: str) -> np.ndarray | None:
    if key not in group:
        return None
    return np.asarray(group[key][()])


def _integer_array(values: np.ndarray) -> np.ndarray:
    """Integers as Lava sees them (netx casts with ``astype(int)``)."""
    return np.asarray(values).astype(np.int64).astype(np.int32)


def _read_neuron(group: Any, index: int) -> Neuron | None:
    if "neuron" not in group:
        return None
    config = group["neuron"]
    kind = _decode(config["type"][()])
    if kind not in ("CUBA", "LOIHI"):
        raise UnsupportedLayerError(
            f"layer {index}: neuron type {kind!r} is not supported (supported: CUBA, LOIHI)"
        )
    values = {}
    for field_name, key in _NEURON_KEYS.items():
        value = _scalar(config, key)
        if value is None:
            if field_name in ("ref_delay", "graded_spike"):
                continue
            raise FormatError(f"layer {index}: neuron has no {key!r} entry")
        if isinstance(value, np.ndarray):
            raise UnsupportedLayerError(
                f"layer {index}: per-neuron {key} values are not supported (one value per layer)"
            )
        values[field_name] = bool(value) if field_name == "graded_spike" else int(value)
    return Neuron(kind=kind, **values)


def _pair_from(group: Any, key: str, default: int) -> tuple[int, int]:
    value = _array(group, key)
    if value is None:
        return default, default
    flat = value.reshape(-1).astype(int)
    return (int(flat[0]), int(flat[0])) if flat.size == 1 else (int(flat[0]), int(flat[1]))


def _read_input(group: Any, index: int) -> InputLayer:
    shape = _array(group, "shape")
    if shape is None:
        raise FormatError(f"layer {index}: input layer has no 'shape'")
    weight, bias = _scalar(group, "weight"), _scalar(group, "bias")
    return InputLayer(
        shape=tuple(int(s) for s in shape.reshape(-1)),
        neuron=_read_neuron(group, index),
        weight=None if weight is None else float(weight),
        bias=None if bias is None else float(bias),
    )


def _read_dense(group: Any, index: int) -> DenseLayer:
    if "weight" not in group or not hasattr(group["weight"], "shape"):
        raise UnsupportedLayerError(f"layer {index}: dense layer without a real 'weight' dataset (complex weights are not supported)")
    weight = _integer_array(group["weight"][()])
    if weight.ndim == 1:
        out = int(np.prod(_array(group, "shape")))
        weight = weight.reshape(out, -1)
    delay = _array(group, "delay")
    bias = _array(group, "bias")
    return DenseLayer(
        weight=weight,
        neuron=_read_neuron(group, index),
        bias=None if bias is None else _integer_array(bias),
        delay=None if delay is None else _integer_array(delay),
    )


def _read_conv(group: Any, index: int) -> ConvLayer:
    weight = _array(group, "weight")
    if weight is None:
        raise FormatError(f"layer {index}: conv layer has no 'weight'")
    weight = _integer_array(weight)
    if weight.ndim == 5:  # (out, in, kH, kW, 1) from a 3-D convolution over time
        weight = weight.reshape(weight.shape[:4])
    delay = _array(group, "delay")
    bias = _array(group, "bias")
    groups = _scalar(group, "groups", 1)
    return ConvLayer(
        weight=weight,
        neuron=_read_neuron(group, index),
        bias=None if bias is None else _integer_array(bias),
        delay=None if delay is None else _integer_array(delay),
        stride=_pair_from(group, "stride", 1),
        padding=_pair_from(group, "padding", 0),
        dilation=_pair_from(group, "dilation", 1),
        groups=int(np.asarray(groups).reshape(-1)[0]),
    )


def _read_pool(group: Any, index: int) -> PoolLayer:
    """lava-dl's ``pool`` layer (slayer ``Pool`` block): one weight mantissa on every tap."""
    weight = _array(group, "weight")
    if weight is None:
        raise FormatError(f"layer {index}: pool layer has no 'weight'")
    taps = np.unique(_integer_array(weight))
    if taps.size != 1:
        raise UnsupportedLayerError(
            f"layer {index}: pool layer with {taps.size} different tap weights; a pool layer shares one weight "
            "(write it as a depthwise conv layer)"
        )
    dilation = _pair_from(group, "dilation", 1)
    if dilation != (1, 1):
        raise UnsupportedLayerError(f"layer {index}: pool layer with dilation {dilation}; pooling needs dilation 1")
    delay = _array(group, "delay")
    if delay is not None and np.any(delay):
        raise UnsupportedLayerError(f"layer {index}: pool layer with synaptic delays; pooling has no delays")
    kernel = _pair_from(group, "kernelSize", 0) if "kernelSize" in group else tuple(int(k) for k in weight.shape[-2:])
    return PoolLayer(
        kernel=kernel,  # type: ignore[arg-type]
        stride=_pair_from(group, "stride", kernel[0]) if "stride" in group else kernel,  # type: ignore[arg-type]
        padding=_pair_from(group, "padding", 0),
        weight=int(taps[0]),
        neuron=_read_neuron(group, index),
    )


def _read_flatten(group: Any, index: int) -> FlattenLayer:
    return FlattenLayer()


_READERS: dict[str, Callable[[Any, int], Layer]] = {
    "input": _read_input,
    "dense": _read_dense,
    "conv": _read_conv,
    "pool": _read_pool,
    "flatten": _read_flatten,
}
SUPPORTED_TYPES = tuple(_READERS)


def stored_types(path: str | os.PathLike[str]) -> list[str]:
    """The layer types stored in a netx file, in layer order (no checks; see :func:`read`)."""
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle["layer"]
        return [_decode(group[key]["type"][()]) for key in sorted(group.keys(), key=int)]


def _implicit_input(first: Any, index: int, input_shape: tuple[int, ...] | None) -> InputLayer:
    """Input layer for files whose first layer is synaptic (no /layer/0 input)."""
    if input_shape is not None:
        return InputLayer(shape=tuple(input_shape))
    kind = _decode(first["type"][()])
    if kind == "dense":
        weight = np.asarray(first["weight"][()])
        features = _scalar(first, "inFeatures")
        if features is None:
            features = weight.shape[1] if weight.ndim == 2 else weight.size // int(np.prod(first["shape"][()]))
        return InputLayer(shape=(int(features),))
    raise FormatError(
        f"layer {index}: the file has no input layer and the input shape of a {kind} layer "
        "cannot be inferred; pass input_shape=(C, H, W)"
    )


def read(path: str | os.PathLike[str], input_shape: tuple[int, ...] | None = None) -> Network:
    """Read a netx HDF5 file into a :class:`~neuroprune.ir.Network`.

    Reads files written by neuroprune and by lava-dl (dense, conv, pool, flatten and
    input layers; CUBA and LOIHI neurons; synaptic delays). Weights come back as int32, as
    Lava casts them. Any other layer type raises :class:`UnsupportedLayerError` naming
    the layer index and type.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, expected a netx .net (HDF5) file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({str(err).split('(')[0].strip().rstrip(':,')}); "
            "is it corrupt, truncated or of another format?"
        ) from None
    try:
        with handle:
            if "layer" not in handle:
                raise FormatError(f"{path}: no /layer group; not a netx network file")
            group = handle["layer"]
            try:
                keys = sorted(group.keys(), key=int)
            except ValueError:
                raise FormatError(f"{path}: /layer holds non-numeric entries {list(group.keys())}") from None
            if not keys:
                raise FormatError(f"{path}: /layer is empty")
            layers: list[Layer] = []
            stored_shapes: list[np.ndarray | None] = []
            for key in keys:
                index = int(key)
                config = group[key]
                if "type" not in config:
                    raise FormatError(f"{path}: layer {index} has no 'type'")
                kind = _decode(config["type"][()])
                reader = lookup(_READERS, kind, "netx reader", f"{path}: layer {index}")
                if not layers and kind != "input":
                    layers.append(_implicit_input(config, index, input_shape))
                    stored_shapes.append(None)
                layers.append(reader(config, index))
                stored_shapes.append(_array(config, "shape"))
    except (KeyError, OSError, TypeError) as err:
        raise FormatError(f"{path}: damaged netx file ({err})") from None
    try:
        network = Network(layers, name=path.stem)
    except ShapeError as err:
        raise FormatError(f"{path}: inconsistent shapes: {err}") from None
    for index, (stored, shape) in enumerate(zip(stored_shapes, network.shapes)):
        if stored is None or network[index].passthrough:
            continue
        if int(np.prod(stored)) != int(np.prod(shape)) or (
            stored.size == len(shape) and tuple(int(s) for s in stored) != shape
        ):
            raise FormatError(
                f"{path}: layer {index} stores shape {tuple(int(s) for s in stored)} "
                f"but its weights give {shape}"
            )
    return network
