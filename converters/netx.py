"""Read and write lava-dl netx HDF5 network files with h5py only.

Layout (the one ``lava.lib.dl.netx.hdf5.Network`` loads and lava-dl's slayer writes)::

    /layer/{i}/type         b"input" | b"dense" | b"dense_rec" | b"dense_comp" | b"conv" | b"convT"
                            | b"pool" | b"unpool" | b"flatten" | b"concat" | b"average"
    /layer/{i}/shape        output shape in torch order (C, H, W) or (N,)
    /layer/{i}/weight       dense (out, in); conv (out, in/groups, kH, kW); integers
    /layer/{i}/bias         optional neuron bias mantissa
    /layer/{i}/delay        optional synaptic delays (per output, per input or full)
    /layer/{i}/neuron/type  "CUBA" | "LOIHI"   (+ iDecay, vDecay, vThMant, refDelay, gradedSpike)
                            "SDNN"             (+ vThMant, activation, sigma_output: present or not)
                            "RF_PHASE" | "RF_IZHIKEVICH" (+ vThMant, sinDecay, cosDecay, gradedSpike)
                            any type: messageBits (payload bits of graded spikes)
    conv only:              inChannels, outChannels, kernelSize, stride, padding, dilation, groups
    dense only:             inFeatures, outFeatures
    dense_rec:              as dense, plus weight_rec (out, out): the layer's own spikes of the last step
    dense_comp:             as dense, with weight/real and weight/imag (out, in) instead of weight
                            (slayer writes them under type dense; both forms are read)
    pool only:              kernelSize, stride, padding, dilation; weight (1, 1, kH, kW), one value
    average:                shape (num_outputs, 1, 1): the mean of num_outputs groups (host-side)
    convT:                  as conv, weight (in, out/groups, kH, kW) (slayer's ConvT block)
    unpool:                 kernelSize, stride, padding, dilation; weight (1, 1, kH, kW), one value
                            (slayer's Unpool block)
    concat:                 shape; layers: ids of the earlier layers joined (along channels) after
                            the previous layer (netx's skip connections)

Lava reverses the stored shapes (it works in W, H, C). File keys keep the format's
spelling (``vThMant``); the IR uses snake_case names (``v_th_mant``).

lava-dl's slayer writes ``pool`` layers (sum pooling, one weight on every tap) and the
reader reads them as pool layers; but lava-dl 0.6's netx builds no Lava process for
``pool``, so pool layers are written as the equivalent depthwise convolution (which
Lava runs) and a written-and-read pool comes back as a conv layer. ``convT``, ``unpool``
and ``concat`` are written as slayer writes them; lava-dl 0.6's netx builds none of
them, ``converters.lava_build`` does.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroprune.atomic import atomic_path
from neuroprune.errors import FormatError, NeuropruneError, ShapeError, UnsupportedLayerError
from neuroprune.ir import (
    AverageLayer,
    ComplexDenseLayer,
    ConcatLayer,
    ConvLayer,
    ConvTransposeLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    Network,
    Neuron,
    PoolLayer,
    RecurrentDenseLayer,
    UnpoolLayer,
)
from neuroprune.ir import MAX_MESSAGE_BITS
from neuroprune.loihi_arith import DECAY_UNITY, MAX_BIAS_MANT, MAX_V_TH_MANT, MAX_WEIGHT_MANT, STATE_BITS
from neuroprune.validate import (
    MAX_LAYER_NEURONS,
    check_declared_size,
    check_finite_array,
    check_h5_datasets,
    check_input_file,
    check_int_range,
    check_shape,
    naming,
    open_h5,
)
from neuroprune.registry import lookup

__all__ = ["read", "write", "stored_types", "SUPPORTED_TYPES", "LAVA_UNBUILT"]

# IR neuron field -> (netx key, required), per neuron type (lava-dl slayer's ``device_params``)
_LIF_KEYS = {
    "i_decay": ("iDecay", True),
    "v_decay": ("vDecay", True),
    "v_th_mant": ("vThMant", True),
    "ref_delay": ("refDelay", False),
    "graded_spike": ("gradedSpike", False),
}
_RF_KEYS = {
    "v_th_mant": ("vThMant", True),
    "sin_decay": ("sinDecay", True),
    "cos_decay": ("cosDecay", True),
    "graded_spike": ("gradedSpike", False),
}
_NEURON_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    "CUBA": _LIF_KEYS,
    "LOIHI": _LIF_KEYS,
    "SDNN": {"v_th_mant": ("vThMant", True)},  # + 'activation' (text) and 'sigma_output' (its presence)
    "RF_PHASE": _RF_KEYS,
    "RF_IZHIKEVICH": _RF_KEYS,
}
_MESSAGE_BITS = "messageBits"  # any type: payload bits of a graded spike (lava-dl netx)


# ----------------------------------------------------------------------------- writing
def _write_type(group: Any, kind: str) -> None:
    group.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _write_neuron(group: Any, neuron: Neuron | None) -> None:
    if neuron is None:
        return
    group.create_dataset("neuron/type", data=neuron.kind)
    for field_name, (key, _) in _NEURON_KEYS[neuron.kind].items():
        group.create_dataset(f"neuron/{key}", data=getattr(neuron, field_name))
    if neuron.activation is not None:
        group.create_dataset("neuron/activation", data=neuron.activation)
    if neuron.sigma_output:  # lava-dl's netx looks at the key's presence only
        group.create_dataset("neuron/sigma_output", data=True)
    if neuron.message_bits is not None:
        group.create_dataset(f"neuron/{_MESSAGE_BITS}", data=neuron.message_bits)


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


def _write_dense_rec(group: Any, layer: RecurrentDenseLayer, shape: tuple[int, ...],
                     in_shape: tuple[int, ...]) -> None:
    _write_dense(group, layer, shape, in_shape)
    del group["type"]
    _write_type(group, "dense_rec")
    group.create_dataset("weight_rec", data=layer.weight_rec)


def _write_dense_comp(group: Any, layer: ComplexDenseLayer, shape: tuple[int, ...],
                      in_shape: tuple[int, ...]) -> None:
    _write_type(group, "dense_comp")
    group.create_dataset("shape", data=np.array(shape))
    group.create_dataset("inFeatures", data=layer.in_features)
    group.create_dataset("outFeatures", data=layer.out_channels)
    group.create_dataset("weight/real", data=layer.effective_weight)  # slayer's complex synapse keys
    group.create_dataset("weight/imag", data=layer.weight_imag)
    if layer.bias is not None:
        group.create_dataset("bias", data=layer.bias)
    _write_neuron(group, layer.neuron)


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


#: netx types lava-dl 0.6's netx builds no Lava process for (it raises NotImplementedError):
#: :func:`write` emits a form Lava runs instead (pool), ``converters.lava_build`` builds
#: them (convT, unpool, concat, pool), or Lava runs the network without them (host-side
#: readouts such as average, see ``Network.chip_part``)
LAVA_UNBUILT = ("pool", "convT", "unpool", "concat", "average")


def _write_pool(group: Any, layer: PoolLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    # lava-dl 0.6's netx builds no Lava process for a 'pool' layer (NotImplementedError):
    # write the depthwise conv that computes the same sums, which every netx reader runs
    _write_conv(group, layer.as_conv(in_shape[0]), shape, in_shape)


def _write_conv_transpose(group: Any, layer: ConvTransposeLayer, shape: tuple[int, ...],
                          in_shape: tuple[int, ...]) -> None:
    _write_conv(group, layer, shape, in_shape)  # slayer's ConvT block writes a conv's keys
    del group["type"]
    _write_type(group, "convT")


def _write_unpool(group: Any, layer: UnpoolLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "unpool")
    group.create_dataset("shape", data=np.array(shape))
    group.create_dataset("kernelSize", data=np.array(layer.kernel))
    group.create_dataset("stride", data=np.array(layer.stride))
    group.create_dataset("padding", data=np.array(layer.padding))
    group.create_dataset("dilation", data=np.array([1, 1]))
    group.create_dataset("weight", data=np.full((1, 1, *layer.kernel), layer.weight))  # slayer's (1, 1, kH, kW)
    _write_neuron(group, layer.neuron)


def _write_concat(group: Any, layer: ConcatLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "concat")
    group.create_dataset("shape", data=np.array(shape))
    group.create_dataset("layers", data=np.array(layer.layers, dtype=np.int64))


def _write_flatten(group: Any, layer: FlattenLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "flatten")
    group.create_dataset("shape", data=np.array([shape[0], 1, 1]))  # lava-dl's convention


def _write_average(group: Any, layer: AverageLayer, shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    _write_type(group, "average")
    group.create_dataset("shape", data=np.array([layer.num_outputs, 1, 1]))  # slayer's Average.shape


_WRITERS: dict[str, Callable[..., None]] = {
    "input": _write_input,
    "dense": _write_dense,
    "dense_rec": _write_dense_rec,
    "dense_comp": _write_dense_comp,
    "conv": _write_conv,
    "convT": _write_conv_transpose,
    "pool": _write_pool,
    "unpool": _write_unpool,
    "flatten": _write_flatten,
    "concat": _write_concat,
    "average": _write_average,
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
_INT32 = np.iinfo(np.int32)
# netx key -> (smallest, largest) value the chip's compartment holds (neuroprune.ir widths)
_NEURON_RANGES = {
    "iDecay": (0, DECAY_UNITY),
    "vDecay": (0, DECAY_UNITY),
    "vThMant": (0, MAX_V_TH_MANT),
    "refDelay": (0, int(_INT32.max)),
    "gradedSpike": (0, 1),
    "sinDecay": (-DECAY_UNITY, DECAY_UNITY),
    "cosDecay": (-DECAY_UNITY, DECAY_UNITY),
    _MESSAGE_BITS: (0, MAX_MESSAGE_BITS),
}
_SIZE_FIX = "the file is damaged, or the network is far too large for a neuromorphic chip"


def _decode(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _dataset(group: Any, key: str, where: str) -> Any:
    import h5py

    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise FormatError(f"{where}: {key!r} is a group, expected a dataset")
    return item[()]  # its size was checked with every other dataset (check_h5_datasets)


def _scalar(group: Any, key: str, where: str, default: Any = None) -> Any:
    if key not in group:
        return default
    value = _dataset(group, key, where)
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value
    return value.item() if isinstance(value, np.generic) else value


def _number(group: Any, key: str, where: str, low: float, high: float) -> float | None:
    """One finite real number in ``[low, high]`` (None when the key is absent)."""
    value = _scalar(group, key, where)
    if value is None:
        return None
    array = np.asarray(value)
    if array.size != 1:
        raise FormatError(f"{where}: {key!r} has shape {array.shape}; expected one value")
    return float(check_int_range(array.reshape(-1), key, where, low, high,
                                 f"store a value in [{low}, {high}]")[0])


def _array(group: Any, key: str, where: str) -> np.ndarray | None:
    if key not in group:
        return None
    return check_finite_array(np.asarray(_dataset(group, key, where)), key, where)


def _integer_array(values: np.ndarray, what: str, where: str, limit: int = int(_INT32.max)) -> np.ndarray:
    """Integers as Lava sees them (netx casts with ``astype(int)``), after checking that
    every value is finite and within ``[-limit - 1, limit]``."""
    fix = ("values must fit a 32-bit integer" if limit == _INT32.max
           else f"values must fit the chip's {STATE_BITS}-bit state; quantize the network")
    values = check_int_range(values, what, where, -limit - 1, limit, fix)
    return np.asarray(values).astype(np.int64).astype(np.int32)


def _shape(values: np.ndarray, where: str) -> tuple[int, ...]:
    return check_shape(values, "shape", where, _SIZE_FIX)


def _neuron_value(config: Any, key: str, where: str, index: int) -> int | None:
    """One integer neuron parameter in its chip range (None when absent)."""
    raw = _scalar(config, key, where)
    if raw is None:
        return None
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        raise UnsupportedLayerError(
            f"layer {index}: per-neuron {key} values are not supported (one value per layer)"
        )
    low, high = _NEURON_RANGES[key]
    return int(check_int_range(np.asarray(raw).reshape(-1), key, where, low, high,
                               f"the chip holds {key} in [{low}, {high}]")[0])


def _read_neuron(group: Any, index: int) -> Neuron | None:
    if "neuron" not in group:
        return None
    config = group["neuron"]
    where = f"layer {index} neuron"
    if "type" not in config:
        raise FormatError(f"{where} has no 'type'")
    kind = _decode(_dataset(config, "type", where))
    if kind not in _NEURON_KEYS and "RF" in kind:  # lava-dl's netx: any "RF" type, RF_PHASE when it says PHASE
        kind = "RF_PHASE" if "PHASE" in kind else "RF_IZHIKEVICH"
    if kind not in _NEURON_KEYS:
        raise UnsupportedLayerError(
            f"layer {index}: neuron type {kind!r} is not supported (supported: {', '.join(_NEURON_KEYS)})"
        )
    values: dict[str, Any] = {}
    for field_name, (key, required) in _NEURON_KEYS[kind].items():
        value = _neuron_value(config, key, where, index)
        if value is None:
            if required:
                raise FormatError(f"layer {index}: {kind} neuron has no {key!r} entry")
            continue
        values[field_name] = bool(value) if field_name == "graded_spike" else value
    values["message_bits"] = _neuron_value(config, _MESSAGE_BITS, where, index)
    if kind == "SDNN":
        if "activation" in config:
            values["activation"] = _decode(_dataset(config, "activation", where))
        values["sigma_output"] = "sigma_output" in config
    try:
        return Neuron(kind=kind, **values)
    except NeuropruneError as err:
        raise type(err)(f"layer {index}: {err}") from None


def _pair_from(group: Any, key: str, default: int, where: str) -> tuple[int, int]:
    value = _array(group, key, where)
    if value is None:
        return default, default
    flat = check_int_range(value.reshape(-1), key, where, 0, MAX_LAYER_NEURONS, _SIZE_FIX)
    if flat.size not in (1, 2):
        raise FormatError(f"{where}: {key!r} holds {flat.size} values; expected one or two")
    flat = flat.astype(np.int64)
    return (int(flat[0]), int(flat[0])) if flat.size == 1 else (int(flat[0]), int(flat[1]))


def _optional_float(group: Any, key: str, where: str) -> float | None:
    value = _array(group, key, where)
    if value is None:
        return None
    if value.size != 1:
        raise FormatError(f"{where}: {key!r} has shape {value.shape}; an input layer has one value")
    return float(check_int_range(value.reshape(-1), key, where, -MAX_WEIGHT_MANT - 1, MAX_WEIGHT_MANT,
                                 f"values must fit the chip's {STATE_BITS}-bit state")[0])


def _read_input(group: Any, index: int) -> InputLayer:
    where = f"layer {index} (input)"
    shape = _array(group, "shape", where)
    if shape is None:
        raise FormatError(f"layer {index}: input layer has no 'shape'")
    return InputLayer(
        shape=_shape(shape, where),
        neuron=_read_neuron(group, index),
        weight=_optional_float(group, "weight", where),
        bias=_optional_float(group, "bias", where),
    )


def _weight(group: Any, index: int, kind: str) -> np.ndarray:
    where = f"layer {index} ({kind})"
    if "weight" not in group:
        raise FormatError(f"layer {index} has no weight: a {kind} layer needs a 'weight' dataset")
    weight = _array(group, "weight", where)
    assert weight is not None
    return _integer_array(weight, "weight", where, MAX_WEIGHT_MANT)


def _extras(group: Any, index: int, kind: str) -> dict[str, Any]:
    where = f"layer {index} ({kind})"
    delay, bias = _array(group, "delay", where), _array(group, "bias", where)
    return {
        "neuron": _read_neuron(group, index),
        "bias": None if bias is None else _integer_array(bias, "bias", where, MAX_BIAS_MANT),
        "delay": None if delay is None else _integer_array(delay, "delay", where),
    }


def _dense_weight(group: Any, index: int, kind: str, key: str = "weight") -> np.ndarray:
    """A dense weight ``(out, in)``; a 1-D one is split by the layer's stored ``shape``."""
    where = f"layer {index} ({kind})"
    if key == "weight":
        weight = _weight(group, index, kind)
    else:
        if key not in group:
            raise FormatError(f"{where}: no {key!r}; a {kind} layer needs it")
        weight = _integer_array(_array(group, key, where), key, where, MAX_WEIGHT_MANT)  # type: ignore[arg-type]
    if weight.ndim == 1:
        shape = _array(group, "shape", where)
        if shape is None:
            raise FormatError(f"{where}: a 1-D {key} needs the layer's 'shape' to know its outputs")
        out = math.prod(_shape(shape, where))
        if weight.size % out:
            raise FormatError(
                f"{where}: 1-D {key} of {weight.size} values does not split into {out} outputs (from 'shape'); "
                f"store the {key} as (out, in)"
            )
        weight = weight.reshape(out, -1)
    return weight


def _read_dense(group: Any, index: int) -> DenseLayer:
    import h5py

    if isinstance(group.get("weight"), h5py.Group):  # slayer writes a complex synapse as dense + weight/{real,imag}
        return _read_dense_comp(group, index)
    return DenseLayer(weight=_dense_weight(group, index, "dense"), **_extras(group, index, "dense"))


def _read_dense_comp(group: Any, index: int) -> ComplexDenseLayer:
    """A complex synapse: ``weight/real`` and ``weight/imag`` (slayer's keys)."""
    return ComplexDenseLayer(weight=_dense_weight(group, index, "dense_comp", "weight/real"),
                             weight_imag=_dense_weight(group, index, "dense_comp", "weight/imag"),
                             **_extras(group, index, "dense_comp"))


def _read_dense_rec(group: Any, index: int) -> RecurrentDenseLayer:
    """lava-dl netx's ``dense_rec``: ``weight`` and ``weight_rec`` (Lava's RecurrentDense block)."""
    return RecurrentDenseLayer(weight=_dense_weight(group, index, "dense_rec"),
                               weight_rec=_dense_weight(group, index, "dense_rec", "weight_rec"),
                               **_extras(group, index, "dense_rec"))


def _read_convolution(group: Any, index: int, kind: str, cls: Any) -> Any:
    """A ``conv`` or ``convT`` entry: weight (4-D, or 5-D with a unit time axis from a 3-D
    convolution over time), stride, padding, dilation, groups."""
    where = f"layer {index} ({kind})"
    weight = _weight(group, index, kind)
    if weight.ndim == 5:
        if weight.shape[4] != 1:
            raise UnsupportedLayerError(f"{where}: weight of shape {weight.shape} convolves over time; not supported")
        weight = weight.reshape(weight.shape[:4])
    groups = _number(group, "groups", where, 1, MAX_LAYER_NEURONS)
    return cls(
        weight=weight,
        stride=_pair_from(group, "stride", 1, where),
        padding=_pair_from(group, "padding", 0, where),
        dilation=_pair_from(group, "dilation", 1, where),
        groups=1 if groups is None else int(groups),
        **_extras(group, index, kind),
    )


def _read_conv(group: Any, index: int) -> ConvLayer:
    """lava-dl's ``conv``: weight ``(out, in/groups, kH, kW)``."""
    return _read_convolution(group, index, "conv", ConvLayer)


def _read_conv_transpose(group: Any, index: int) -> ConvTransposeLayer:
    """slayer's ``ConvT`` block: a conv's keys, weight ``(in, out/groups, kH, kW)``."""
    return _read_convolution(group, index, "convT", ConvTransposeLayer)


def _read_window(group: Any, index: int, kind: str, cls: Any, depthwise: str) -> Any:
    """A ``pool`` or ``unpool`` entry: one weight mantissa on every tap of ``kernelSize``,
    no dilation, no delays (``depthwise``: the layer to write otherwise)."""
    where = f"layer {index} ({kind})"
    weight = _weight(group, index, kind)
    taps = np.unique(weight)
    if taps.size != 1:
        raise UnsupportedLayerError(f"layer {index}: {kind} layer with {taps.size} different tap weights; "
                                    f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} layer shares one weight (write it as a depthwise {depthwise} layer)")
    dilation = _pair_from(group, "dilation", 1, where)
    if dilation != (1, 1):
        raise UnsupportedLayerError(f"layer {index}: {kind} layer with dilation {dilation}; it needs dilation 1")
    delay = _array(group, "delay", where)
    if delay is not None and np.any(delay):
        raise UnsupportedLayerError(f"layer {index}: {kind} layer with synaptic delays; it has no delays")
    kernel = _pair_from(group, "kernelSize", 0, where) if "kernelSize" in group \
        else tuple(int(k) for k in weight.shape[-2:])
    return cls(
        kernel=kernel,
        stride=_pair_from(group, "stride", kernel[0], where) if "stride" in group else kernel,
        padding=_pair_from(group, "padding", 0, where),
        weight=int(taps[0]),
        neuron=_read_neuron(group, index),
    )


def _read_pool(group: Any, index: int) -> PoolLayer:
    """lava-dl's ``pool`` layer (slayer ``Pool`` block): one weight mantissa on every tap."""
    return _read_window(group, index, "pool", PoolLayer, "conv")


def _read_unpool(group: Any, index: int) -> UnpoolLayer:
    """slayer's ``Unpool`` block: one weight mantissa on every tap of ``kernelSize``."""
    return _read_window(group, index, "unpool", UnpoolLayer, "convT")


def _read_concat(group: Any, index: int) -> ConcatLayer:
    """netx's ``concat``: joins the previous layer with the layers listed in ``layers``
    (file ids; lava-dl's format description spells it ``layers``, ``layer`` is read too)."""
    where = f"layer {index} (concat)"
    key = "layers" if "layers" in group else "layer" if "layer" in group else None
    if key is None:
        raise FormatError(f"{where}: no 'layers' entry naming the earlier layers it joins")
    ids = check_int_range(_array(group, key, where).reshape(-1), key, where, 0, index - 2,  # type: ignore[union-attr]
                          f"name earlier layers 0..{index - 2} (the previous layer {index - 1} is joined first)")
    if not np.array_equal(ids, np.round(ids)):
        raise FormatError(f"{where}: {key!r} holds {ids[ids != np.round(ids)][0]:g}; name earlier layers by their "
                          "integer ids")
    return ConcatLayer(layers=tuple(int(i) for i in ids))


def _read_flatten(group: Any, index: int) -> FlattenLayer:
    return FlattenLayer()


def _read_average(group: Any, index: int) -> AverageLayer:
    """slayer's ``Average`` block: its group count is ``shape[0]`` (as slayer's auto loader reads it)."""
    where = f"layer {index} (average)"
    shape = _array(group, "shape", where)
    if shape is None:
        raise FormatError(f"{where}: no 'shape'; an average layer stores (num_outputs, 1, 1)")
    return AverageLayer(num_outputs=_shape(shape, where)[0])


_READERS: dict[str, Callable[[Any, int], Layer]] = {
    "input": _read_input,
    "dense": _read_dense,
    "dense_rec": _read_dense_rec,
    "dense_comp": _read_dense_comp,
    "conv": _read_conv,
    "convT": _read_conv_transpose,
    "pool": _read_pool,
    "unpool": _read_unpool,
    "flatten": _read_flatten,
    "concat": _read_concat,
    "average": _read_average,
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
    kind = _decode(_dataset(first, "type", f"layer {index}"))
    if kind == "dense":
        where = f"layer {index} (dense)"
        features = _number(first, "inFeatures", where, 1, MAX_LAYER_NEURONS)
        if features is None:
            weight = _weight(first, index, "dense")
            shape = _array(first, "shape", where)
            out = math.prod(_shape(shape, where)) if shape is not None else 0
            features = weight.shape[1] if weight.ndim == 2 else weight.size // max(out, 1)
        return InputLayer(shape=(int(features),))
    raise FormatError(
        f"layer {index}: the file has no input layer and the input shape of a {kind} layer "
        "cannot be inferred; pass input_shape=(C, H, W)"
    )


def _layer_keys(group: Any) -> list[str]:
    """The layer keys ``0 .. n-1`` in order (lava-dl loads exactly these)."""
    names = list(group.keys())
    try:
        indices = sorted(int(name) for name in names)
    except ValueError:
        raise FormatError(f"/layer holds non-numeric entries {names[:8]}") from None
    if not indices:
        raise FormatError("/layer is empty")
    expected = [str(i) for i in range(len(names))]
    if sorted(names, key=int) != expected:
        raise FormatError(
            f"/layer has entries {sorted(names, key=int)[:8]}; layers must be numbered 0..{len(names) - 1} "
            "without gaps (lava-dl netx loads layer/0, layer/1, ... in order) — renumber them"
        )
    return expected


def _check_sizes(network: Network) -> None:
    """Every layer's neuron count within the sanity limit (shapes grow through convs)."""
    for index, shape in enumerate(network.shapes):
        check_declared_size(math.prod(shape), f"layer {index} ({network[index].kind}) of shape {shape}",
                            f"layer {index}", MAX_LAYER_NEURONS, _SIZE_FIX)


def read(path: str | os.PathLike[str], input_shape: tuple[int, ...] | None = None) -> Network:
    """Read a netx HDF5 file into a :class:`~neuroprune.ir.Network`.

    Reads files written by neuroprune and by lava-dl (the layer types in
    :data:`SUPPORTED_TYPES`, the neuron types :class:`~neuroprune.ir.Neuron` knows,
    synaptic delays). Weights come back as int32, as Lava casts them. Any other layer
    type raises :class:`UnsupportedLayerError` naming the layer index and type.

    Every dataset is checked before it is read: its declared size against the bytes the
    file holds and against :data:`neuroprune.validate.MAX_TENSOR_ELEMENTS`; weights,
    biases, delays and neuron parameters must be finite real numbers in the ranges the
    chip's fixed-point state holds (:mod:`neuroprune.loihi_arith`). A failure raises a
    :class:`FormatError` naming the file and layer.
    """
    import h5py

    path = check_input_file(path, "a netx .net (HDF5) file")
    handle = open_h5(path, "is it corrupt, truncated or of another format?")
    with naming(path):
        with handle:
            if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
                raise FormatError(f"{path}: no /layer group; not a netx network file")
            check_h5_datasets(handle, str(path))
            group = handle["layer"]
            layers: list[Layer] = []
            stored_shapes: list[np.ndarray | None] = []
            for key in _layer_keys(group):
                index = int(key)
                config = group[key]
                if not isinstance(config, h5py.Group) or "type" not in config:
                    raise FormatError(f"{path}: layer {index} has no 'type'")
                kind = _decode(_dataset(config, "type", f"layer {index}"))
                reader = lookup(_READERS, kind, "netx reader", f"{path}: layer {index}")
                if not layers and kind != "input":
                    layers.append(_implicit_input(config, index, input_shape))
                    stored_shapes.append(None)
                try:
                    layers.append(reader(config, index))
                except NeuropruneError as err:
                    if f"layer {index}" in str(err):
                        raise
                    raise type(err)(f"layer {index}: {err}") from None
                stored_shapes.append(_array(config, "shape", f"layer {index}"))
        if stored_shapes[0] is None:  # an implicit input layer shifts the file's layer ids by one
            layers = [dataclasses.replace(layer, layers=tuple(i + 1 for i in layer.layers))
                      if isinstance(layer, ConcatLayer) else layer for layer in layers]
        try:
            network = Network(layers, name=path.stem)
        except ShapeError as err:
            raise FormatError(f"{path}: inconsistent shapes: {err}") from None
        _check_sizes(network)
        for index, (stored, shape) in enumerate(zip(stored_shapes, network.shapes)):
            if stored is None or network[index].passthrough:
                continue
            stored_shape = tuple(int(s) for s in check_int_range(
                stored.reshape(-1), "shape", f"layer {index}", 0, MAX_LAYER_NEURONS, _SIZE_FIX))
            if math.prod(stored_shape) != math.prod(shape) or (
                len(stored_shape) == len(shape) and stored_shape != shape
            ):
                raise FormatError(f"{path}: layer {index} stores shape {stored_shape} but its weights give {shape}")
    return network
