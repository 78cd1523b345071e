"""NIR export: :func:`to_nir` turns an IR network into a ``nir.NIRGraph``, :func:`write`
stores it as NIR's HDF5 file. The node and parameter mapping is described in :mod:`converters.nir`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from converters.nir_common import _META, Shape, _nir
from neuroprune.atomic import atomic_path
from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import (
    AverageLayer,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Network,
    Neuron,
    PoolLayer,
    RecurrentDenseLayer,
)
from neuroprune.loihi_arith import DECAY_UNITY
from neuroprune.registry import lookup

__all__ = ["to_nir", "write", "EXPORT_DT"]

# Length of one chip time step in the NIR graphs we write, in seconds: 0.1 ms, the step
# snntorch's import_from_nir assumes (it requires r = tau_mem / 1e-4 and alpha = 1 - 1e-4 / tau_syn).
EXPORT_DT = 1e-4


def _tau(decay: int, dt: float) -> float:
    return dt * DECAY_UNITY / decay if decay else float("inf")


def _neuron_node(neuron: Neuron, shape: tuple[int, ...], dt: float, bias: np.ndarray | None,
                 bias_in_v: bool, where: str, gain: float = 1.0) -> Any:
    """CubaLIF node of a neuron population of ``shape`` (see the module's mapping table);
    ``gain`` multiplies ``w_in`` (a pool layer's weight)."""
    nir = _nir()
    if not neuron.is_lif:
        raise UnsupportedLayerError(
            f"{where}: neuron type {neuron.kind} has no NIR node (NIR's spiking neurons are LIF, CubaLIF and IF; "
            "it has no sigma-delta or resonate-and-fire neuron); write .net (lava-dl netx) instead"
        )
    tau_syn, tau_mem = _tau(neuron.i_decay, dt), _tau(neuron.v_decay, dt)
    v_leak = np.zeros(shape)
    if bias_in_v and bias is not None:
        if neuron.v_decay == 0 and np.any(bias):
            raise UnsupportedLayerError(
                f"{where}: a bias with i_decay={neuron.i_decay} < 4096 and v_decay=0 has no NIR CubaLIF form "
                "(v_leak would be infinite); use i_decay=4096 or a non-zero v_decay"
            )
        if np.any(bias):
            v_leak = np.broadcast_to(_channel_shape(np.asarray(bias, dtype=np.float64), shape), shape) * (tau_mem / dt)
    metadata = {
        f"{_META}_kind": neuron.kind,
        f"{_META}_ref_delay": int(neuron.ref_delay),
        f"{_META}_graded_spike": bool(neuron.graded_spike),
        f"{_META}_i_decay": int(neuron.i_decay),
        f"{_META}_v_decay": int(neuron.v_decay),
        f"{_META}_v_th_mant": int(neuron.v_th_mant),
        f"{_META}_dt": float(dt),
    }
    return nir.CubaLIF(
        tau_syn=np.full(shape, tau_syn), tau_mem=np.full(shape, tau_mem),
        r=np.full(shape, tau_mem / dt), v_leak=np.array(v_leak, dtype=np.float64),
        v_threshold=np.full(shape, float(neuron.v_th_mant)), v_reset=np.zeros(shape),
        w_in=np.full(shape, gain * tau_syn / dt), metadata=metadata,
    )


def _channel_shape(bias: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel bias ``(C,)`` shaped to broadcast over ``(C, H, W)``."""
    if len(shape) > 1 and bias.size == shape[0]:
        return bias.reshape(shape[0], *([1] * (len(shape) - 1)))
    return bias.reshape(shape) if bias.size == int(np.prod(shape)) else bias


def _synapse_meta(layer: DenseLayer | ConvLayer) -> dict[str, Any]:
    meta: dict[str, Any] = {f"{_META}_has_bias": layer.bias is not None}
    if layer.mask is not None:  # the graph holds the effective weights; keep what the mask hides
        meta[f"{_META}_mask"] = layer.mask.astype(np.uint8)
        meta[f"{_META}_masked_weight"] = np.where(layer.mask, 0, layer.weight).astype(np.int32)
    if layer.weight_bits is not None:
        meta[f"{_META}_weight_bits"] = int(layer.weight_bits)
    return meta


# -- export, one function per layer kind: (nir, add, layer, key, shape, in_shape, dt, where) -------------
def _bias_on_synapse(layer: Any) -> bool:
    """The bias goes on the synapse node when no neuron current decay would hold it."""
    bias = getattr(layer, "bias", None)
    return bias is not None and (layer.neuron is None or layer.neuron.i_decay == DECAY_UNITY)


def _export_neurons(add: Any, layer: Any, key: str, shape: Shape, dt: float, where: str,
                    gain: float = 1.0) -> None:
    """The ``CubaLIF`` after a synapse node (or the bias check when the layer has no neuron)."""
    bias, on_synapse = getattr(layer, "bias", None), _bias_on_synapse(layer)
    if layer.neuron is not None:
        add(f"{key}.lif", _neuron_node(layer.neuron, shape, dt, bias, not on_synapse, where, gain))
    elif bias is not None and not on_synapse:  # pragma: no cover - bias_on_synapse covers neuron None
        raise UnsupportedLayerError(f"{where}: bias without neuron")


def _export_input(nir: Any, add: Any, layer: InputLayer, key: str, shape: Shape, in_shape: Shape, dt: float,
                  where: str) -> None:
    meta: dict[str, Any] = {}
    if layer.weight is not None:
        meta[f"{_META}_input_weight"] = float(layer.weight)
    if layer.bias is not None:
        meta[f"{_META}_input_bias"] = float(layer.bias)
    add(key, nir.Input(input_type=np.array(shape), metadata=meta))
    if layer.neuron is not None:
        add(f"{key}.lif", _neuron_node(layer.neuron, shape, dt, None, False, where))


def _export_flatten(nir: Any, add: Any, layer: FlattenLayer, key: str, shape: Shape, in_shape: Shape,
                    dt: float, where: str) -> None:
    add(key, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1))


def _export_dense(nir: Any, add: Any, layer: DenseLayer, key: str, shape: Shape, in_shape: Shape, dt: float,
                  where: str) -> None:
    post_delay, pre_delay = _split_delay(layer, where)
    meta = _synapse_meta(layer)
    if layer.delay is not None and not np.any(layer.delay):  # no Delay node: not every reader has one
        meta[f"{_META}_delay"] = np.asarray(layer.delay)
        post_delay = pre_delay = None
    if pre_delay is not None:  # NIR delays are times: steps * dt
        add(f"{key}.delay_in", nir.Delay(delay=pre_delay.astype(np.float64) * dt))
    weight = layer.effective_weight.astype(np.float32)
    if _bias_on_synapse(layer):
        add(key, nir.Affine(weight=weight, bias=np.asarray(layer.bias, dtype=np.float32).reshape(-1),
                            metadata=meta))
    else:
        add(key, nir.Linear(weight=weight, metadata=meta))
    if post_delay is not None:
        add(f"{key}.delay", nir.Delay(delay=post_delay.astype(np.float64) * dt))
    if isinstance(layer, RecurrentDenseLayer):
        _export_recurrence(nir, add, layer, key, shape, dt, where)
    else:
        _export_neurons(add, layer, key, shape, dt, where)


def _export_recurrence(nir: Any, add: Any, layer: RecurrentDenseLayer, key: str, shape: Shape, dt: float,
                       where: str) -> None:
    """The neurons of a recurrent layer and the ``Linear`` cycle through them: ``lif -> w_rec -> lif``.

    Node keys ``<name>_rec.lif`` and ``<name>_rec.w_rec``: snntorch's importer wraps such a
    cycle into a subgraph named by the part before the first dot, which must not be the
    synapse's own key."""
    if layer.neuron is None:
        raise UnsupportedLayerError(f"{where}: a recurrent layer without neurons has no NIR form")
    lif = f"{key}_rec.lif"
    add(lif, _neuron_node(layer.neuron, shape, dt, layer.bias, not _bias_on_synapse(layer), where))
    add(f"{key}_rec.w_rec", nir.Linear(weight=np.asarray(layer.weight_rec, dtype=np.float32)), loop_with=lif)


def _export_conv(nir: Any, add: Any, layer: ConvLayer, key: str, shape: Shape, in_shape: Shape, dt: float,
                 where: str) -> None:
    if layer.delay is not None and np.any(layer.delay):
        raise UnsupportedLayerError(f"{where}: synaptic delays on conv layers cannot be exported to NIR")
    conv_bias = np.zeros(layer.out_channels, dtype=np.float32)
    if _bias_on_synapse(layer):
        flat = np.asarray(layer.bias, dtype=np.float32).reshape(-1)
        if flat.size not in (1, layer.out_channels):
            raise UnsupportedLayerError(
                f"{where}: conv bias of shape {np.shape(layer.bias)} is not per channel ({layer.out_channels},)"
            )
        conv_bias = np.broadcast_to(flat, conv_bias.shape).copy()
    meta = _synapse_meta(layer)
    if layer.delay is not None:
        meta[f"{_META}_delay"] = np.asarray(layer.delay)
    add(key, nir.Conv2d(
        input_shape=tuple(int(s) for s in in_shape[1:]), weight=layer.effective_weight.astype(np.float32),
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
        bias=conv_bias, metadata=meta,
    ))
    _export_neurons(add, layer, key, shape, dt, where)


def _export_pool(nir: Any, add: Any, layer: PoolLayer, key: str, shape: Shape, in_shape: Shape, dt: float,
                 where: str) -> None:
    add(key, nir.SumPool2d(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride),
                           padding=np.array(layer.padding)))
    if layer.neuron is None:  # with a neuron the weight goes into its w_in: norse reads no Scale
        add(f"{key}.scale", nir.Scale(scale=np.full(shape, float(layer.weight))))
    _export_neurons(add, layer, key, shape, dt, where, gain=float(layer.weight))


def _export_average(nir: Any, add: Any, layer: AverageLayer, key: str, shape: Shape, in_shape: Shape, dt: float,
                    where: str) -> None:
    """The host's mean over ``num_outputs`` contiguous groups, per time step: a ``Linear`` of
    ``1 / group`` blocks with no neuron after it (a ``Flatten`` first for a map)."""
    size = int(np.prod(in_shape))
    if len(in_shape) > 1:
        add(f"{key}.flatten", nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1,
                                          metadata={f"{_META}_average_input": True}))
    add(key, nir.Linear(weight=average_matrix(layer.num_outputs, size),
                        metadata={f"{_META}_average": int(layer.num_outputs)}))


def average_matrix(num_outputs: int, size: int) -> np.ndarray:
    """``(num_outputs, size)`` float32: row ``i`` averages the ``i``-th of equal contiguous groups."""
    group = size // num_outputs
    return np.kron(np.eye(num_outputs), np.full((1, group), 1.0 / group)).astype(np.float32)


def _refuse_complex(nir: Any, add: Any, layer: Any, key: str, shape: Shape, in_shape: Shape, dt: float,
                    where: str) -> None:
    raise UnsupportedLayerError(
        f"{where}: layer type 'dense_comp' has no NIR form (NIR has no complex synapse or resonate-and-fire "
        "neuron); write .net (lava-dl netx) instead"
    )


#: NIR nodes of each layer kind (see the table in the module docstring)
_EXPORTERS: dict[str, Any] = {
    "input": _export_input,
    "flatten": _export_flatten,
    "dense": _export_dense,
    "dense_rec": _export_dense,  # + the recurrent cycle
    "dense_comp": _refuse_complex,
    "conv": _export_conv,
    "pool": _export_pool,
    "average": _export_average,
}


def to_nir(network: Network, dt: float | None = None) -> Any:
    """Export ``network`` to a ``nir.NIRGraph`` (mapping in the module docstring).

    Parameters
    ----------
    network : the IR network.
    dt : length of one chip time step in the NIR graph's time unit (default
        :data:`EXPORT_DT` = 1e-4, read as seconds: the step snntorch's importer assumes).

    Returns
    -------
    nir.NIRGraph with nodes named after the IR layers (``<name>``, ``<name>.lif``,
    ``<name>.delay``), an ``output`` node and metadata ``{"neuroprune_name": ..., "dt": dt}``.
    """
    nir = _nir()
    dt = EXPORT_DT if dt is None else dt
    if not dt > 0:
        raise ShapeError(f"dt={dt} must be > 0 (length of one time step)")
    nodes: dict[str, Any] = {}
    chain: list[str] = []
    loops: list[tuple[str, str]] = []

    def add(key: str, node: Any, loop_with: str | None = None) -> None:
        """Add ``node`` to the chain, or with ``loop_with`` as a cycle ``loop_with -> key -> loop_with``."""
        if type(node).__name__ == "Conv2d":  # nir takes in-channels = weight.shape[1], wrong for groups > 1
            node.input_type = {"input": np.array(network.input_shape_of(index))}
        layer_name = network.layers[index].name
        if key == _node_key(layer_name) and key != layer_name:  # the layer's main node keeps the IR name
            node.metadata[f"{_META}_layer_name"] = layer_name
        if key in nodes:
            raise ShapeError(f"two NIR nodes would be named {key!r}; give the IR layers unique names")
        nodes[key] = node
        if loop_with is None:
            chain.append(key)
        else:
            loops.extend([(loop_with, key), (key, loop_with)])

    for index, layer in enumerate(network.layers):
        where = f"layer {index} ({layer.kind} {layer.name!r})"
        exporter = lookup(_EXPORTERS, layer.kind, "NIR export", where)
        exporter(nir, add, layer, _node_key(layer.name), network.shapes[index], network.input_shape_of(index),
                 dt, where)
    add("output", nir.Output(output_type=np.array(network.output_shape)))
    edges = list(zip(chain[:-1], chain[1:])) + loops
    return nir.NIRGraph(nodes=nodes, edges=edges,
                        metadata={f"{_META}_name": network.name, "dt": float(dt), "source": "neuroprune"})


def _node_key(name: str) -> str:
    """A NIR node key for an IR layer name ('/' would nest HDF5 groups)."""
    return name.replace("/", "_") or "layer"


def _split_delay(layer: DenseLayer, where: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(per-output delay, per-input delay) of a dense layer; other layouts are refused."""
    if layer.delay is None:
        return None, None
    delay = np.asarray(layer.delay)
    out, inp = layer.weight.shape
    if delay.ndim == 1 and delay.size == out:
        return delay, None
    if delay.ndim == 1 and delay.size == inp:
        return None, delay
    raise UnsupportedLayerError(
        f"{where}: delay of shape {delay.shape} has no NIR form (NIR Delay nodes hold one delay per "
        f"input ({inp},) or per output ({out},))"
    )


def write(network: Network, path: str | os.PathLike[str], dt: float | None = None) -> Path:
    """Write ``network`` as a NIR HDF5 file (``nir.write``) atomically (temp + rename)."""
    nir = _nir()
    path = Path(path)
    graph = to_nir(network, dt=dt)
    with atomic_path(path) as tmp_name:
        nir.write(str(tmp_name), graph)
    return path
