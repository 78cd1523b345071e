"""NIR import: :func:`from_nir` turns a chain-shaped NIR graph into an IR network (chain
staging, then per-layer reading and quantizing), :func:`read` does so from NIR's HDF5 file.
The node and parameter mapping is described in :mod:`converters.nir`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from converters.nir_common import _META, Shape, _nir
from neuroprune.errors import FormatError, ShapeError, UnsupportedLayerError
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
    RecurrentDenseLayer,
)
from neuroprune.loihi_arith import DECAY_UNITY, MANTISSA_MAX, MANTISSA_MIN, MAX_V_TH_MANT, threshold_for, to_mantissa
from neuroprune.registry import lookup
from neuroprune.validate import (
    check_h5_datasets,
    check_h5_numeric,
    check_input_file,
    check_node_fields,
    check_shape,
    naming,
    open_h5,
)

__all__ = ["from_nir", "read", "SUPPORTED_NODES", "IMPORT_DT"]

IMPORT_DT = 1.0  # read time constants in steps when a graph gives no "dt" metadata
_TOL = 1e-6

#: the IR layer kind each NIR synapse node reads as
SYNAPSE_NODES = {"Affine": "dense", "Linear": "dense", "Conv2d": "conv", "SumPool2d": "pool", "AvgPool2d": "pool"}
NEURON_NODES = ("CubaLIF", "LIF", "IF")
SUPPORTED_NODES = ("Input", "Output", "Flatten", "Delay", "Scale") + tuple(SYNAPSE_NODES) + NEURON_NODES
_INFINITE_OK = ("tau", "tau_mem", "tau_syn", "r", "w_in")  # no decay; r, w_in scale with the taus
_NOT_PARAMS = ("metadata", "input_type", "output_type")
_SIZE_FIX = "the graph is damaged, or far too large for a neuromorphic chip"


@dataclass
class _NeuronParams:
    """A NIR neuron node read into chip terms, per neuron of the population."""

    i_decay: int
    v_decay: int
    gain: np.ndarray  # input (W x) -> voltage per step
    bias_gain: np.ndarray  # Affine bias b -> voltage per step (steady state)
    leak_bias: np.ndarray  # v_leak -> voltage per step
    threshold: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with inf / inf read as 1 (our 'no decay' convention) and x / inf as 0."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.zeros(num.shape)
    both = np.isinf(num) & np.isinf(den)
    out[both] = np.sign(num[both]) * np.sign(den[both])
    finite_den = ~np.isinf(den)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[finite_den] = num[finite_den] / den[finite_den]
    return out


def _decay_from_tau(tau: np.ndarray, dt: float, what: str, where: str) -> int:
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore"):
        decays = np.where(np.isinf(tau), 0.0, DECAY_UNITY * dt / tau)
    values = np.unique(np.round(decays).astype(np.int64)) if decays.size else np.array([0])
    if values.size != 1:
        raise UnsupportedLayerError(
            f"{where}: {what} differs between neurons ({values.min()}..{values.max()} /4096); "
            "the chip has one decay per layer"
        )
    decay = int(values[0])
    if not 0 <= decay <= DECAY_UNITY:
        raise UnsupportedLayerError(
            f"{where}: {what}={decay}/4096 per step is outside [0, 4096] "
            f"(time constant {tau[0]} shorter than dt={dt}, or negative)"
        )
    return decay


def _shaped(value: Any, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape == shape:
        return array
    try:
        if len(shape) > 1 and array.ndim == 1 and array.size == shape[0]:
            array = array.reshape(shape[0], *([1] * (len(shape) - 1)))
        return np.broadcast_to(array, shape).astype(np.float64)
    except ValueError:
        raise ShapeError(f"{where}: {name} has shape {array.shape}, the population has shape {shape}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ours(metadata: Any) -> dict[str, Any]:
    """Our ``neuroprune_*`` metadata keys, unprefixed."""
    if not isinstance(metadata, dict):
        return {}
    prefix = f"{_META}_"
    return {k[len(prefix):]: _plain(v) for k, v in metadata.items() if isinstance(k, str) and k.startswith(prefix)}


def _read_neuron(node: Any, shape: tuple[int, ...], dt: float, where: str) -> _NeuronParams:
    kind = type(node).__name__
    meta = _ours(node.metadata)
    if np.any(_shaped(getattr(node, "v_reset", 0.0), shape, "v_reset", where) != 0):
        raise UnsupportedLayerError(f"{where}: v_reset must be 0 (the chip resets the voltage to 0)")
    threshold = _shaped(node.v_threshold, shape, "v_threshold", where)
    if kind == "CubaLIF":
        tau_syn = _shaped(node.tau_syn, shape, "tau_syn", where)
        tau_mem = _shaped(node.tau_mem, shape, "tau_mem", where)
        w_in = _shaped(node.w_in, shape, "w_in", where)
        r = _shaped(node.r, shape, "r", where)
        i_decay = _decay_from_tau(tau_syn, dt, "i_decay", where)
        v_decay = _decay_from_tau(tau_mem, dt, "v_decay", where)
        syn_gain = _ratio(w_in, tau_syn / dt)
        mem_gain = _ratio(r, tau_mem / dt)
        leak = _ratio(_shaped(node.v_leak, shape, "v_leak", where), tau_mem / dt)
        bias_gain = w_in * mem_gain  # steady-state current w_in * b, exact when i_decay = 4096
    elif kind == "LIF":
        tau = _shaped(node.tau, shape, "tau", where)
        i_decay, v_decay = DECAY_UNITY, _decay_from_tau(tau, dt, "v_decay", where)
        syn_gain = np.ones(shape)
        mem_gain = _ratio(_shaped(node.r, shape, "r", where), tau / dt)
        leak = _ratio(_shaped(node.v_leak, shape, "v_leak", where), tau / dt)
        bias_gain = mem_gain
    else:  # IF: dv/dt = r I
        i_decay, v_decay = DECAY_UNITY, 0
        syn_gain = np.ones(shape)
        mem_gain = _shaped(node.r, shape, "r", where) * dt
        leak = np.zeros(shape)
        bias_gain = mem_gain
    if np.any(~np.isfinite(syn_gain * mem_gain)) or np.any(~np.isfinite(leak)):
        raise UnsupportedLayerError(f"{where}: infinite input gain or leak (check r, w_in, v_leak against the taus)")
    return _NeuronParams(i_decay=i_decay, v_decay=v_decay, gain=syn_gain * mem_gain, bias_gain=bias_gain,
                         leak_bias=leak, threshold=threshold, meta=meta)


def _make_neuron(params: _NeuronParams, v_th_mant: int) -> Neuron:
    meta = params.meta
    return Neuron(
        kind=str(meta.get("kind", "CUBA")), i_decay=params.i_decay, v_decay=params.v_decay,
        v_th_mant=int(v_th_mant), ref_delay=int(meta.get("ref_delay", 1)),
        graded_spike=bool(meta.get("graded_spike", False)),
    )


def _integral(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.isfinite(values)) and np.all(np.abs(values - np.round(values)) <= _TOL * np.maximum(1, np.abs(values))))


def _per_channel(values: np.ndarray, channels: int, name: str, where: str) -> np.ndarray:
    """(C, ...) values that must be equal within each channel -> (C,)."""
    flat = np.asarray(values).reshape(channels, -1)
    if not np.allclose(flat, flat[:, :1], rtol=1e-9, atol=0):
        raise UnsupportedLayerError(
            f"{where}: {name} varies across the positions of a channel; a convolution shares it per channel"
        )
    return flat[:, 0]


def _quantize(weight: np.ndarray, gain: np.ndarray, threshold: np.ndarray, bias: np.ndarray,
              where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Chip integers for ``v += gain * (W x) + bias; spike when v > threshold`` per output row.

    Returns (weight mantissas, bias mantissas, v_th_mant). ``gain``, ``threshold`` and
    ``bias`` are per output row (broadcast against ``weight``'s first axis).
    """
    rows = weight.shape[0]
    expand = (rows,) + (1,) * (weight.ndim - 1)
    scaled = weight * gain.reshape(expand)
    thresholds = np.unique(threshold)
    if thresholds.size == 1 and _integral(thresholds) and 0 <= thresholds[0] <= MAX_V_TH_MANT \
            and _integral(scaled) and _integral(bias):
        return np.round(scaled).astype(np.int32), np.round(bias).astype(np.int64), int(round(float(thresholds[0])))
    if np.any(threshold <= 0):
        raise UnsupportedLayerError(
            f"{where}: v_threshold <= 0 with non-integer weights cannot be quantized (threshold must be > 0)"
        )
    normalized = scaled / threshold.reshape(expand)
    normalized_bias = bias / threshold
    exact = _equal_taps_exactly(normalized, normalized_bias)
    if exact is not None:
        return exact
    largest = float(np.max(np.abs(normalized))) if normalized.size else 0.0
    v_th = threshold_for(largest)
    mantissa = to_mantissa(normalized, v_th)
    return mantissa, np.round(normalized_bias * v_th).astype(np.int64), v_th


def _equal_taps_exactly(normalized: np.ndarray,
                        normalized_bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Exact chip integers when every non-zero weight (in units of the threshold) is one value
    ``r`` (an average pool's ``1 / (k^2 threshold)``): the fraction ``p / q = r`` scaled by the
    largest ``m`` with ``m p`` a mantissa and ``m q`` a threshold mantissa, so that ``w / v_th = r``
    holds exactly; ``None`` when there is no such fraction or the bias does not fit it."""
    from fractions import Fraction

    values = np.unique(normalized[normalized != 0])
    if values.size != 1 or not np.isfinite(values[0]):
        return None
    ratio = float(values[0])
    fraction = Fraction(ratio).limit_denominator(MAX_V_TH_MANT)
    p, q = fraction.numerator, fraction.denominator
    if not p or abs(p / q - ratio) > _TOL * 1e-3 * abs(ratio) or not MANTISSA_MIN <= p <= MANTISSA_MAX:
        return None
    m = min(MANTISSA_MAX // abs(p) if p > 0 else -MANTISSA_MIN // abs(p), MAX_V_TH_MANT // q)
    v_th = m * q
    bias = normalized_bias * v_th
    if not _integral(bias):
        return None
    mantissa = np.where(normalized != 0, m * p, 0).astype(np.int32)
    return mantissa, np.round(bias).astype(np.int64), int(v_th)


@dataclass
class _Stage:
    """One IR layer being assembled from consecutive NIR nodes."""

    kind: str  # input | dense | conv | pool | flatten
    name: str
    synapse: Any = None
    neuron: Any = None
    pre_delay: Any = None
    post_delay: Any = None
    scale: Any = None
    recurrent: Any = None  # the Affine/Linear node of a cycle neuron -> synapse -> neuron
    recurrent_mantissa: Any = None  # its weights once quantized
    dt: float = 1.0  # the graph's time step (Delay nodes hold times)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_name(self) -> str:
        """The IR layer name: stored in metadata when the node key had to differ."""
        return str(self.meta.get("layer_name", self.name))


def _recurrences(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> dict[str, str]:
    """Neuron key -> key of the ``Affine``/``Linear`` node of a cycle ``neuron -> w -> neuron``
    whose ``w`` touches nothing else (a recurrent layer, as snntorch's RLeaky/RSynaptic and
    our ``dense_rec`` export write it)."""
    found: dict[str, str] = {}
    edge_set = set(edges)
    touching: dict[str, set[tuple[str, str]]] = {}
    for edge in edges:
        for end in edge:
            touching.setdefault(end, set()).add(edge)
    for a, b in edges:
        if (b, a) not in edge_set or type(nodes.get(a)).__name__ not in NEURON_NODES \
                or type(nodes.get(b)).__name__ not in ("Affine", "Linear"):
            continue
        if touching[b] == {(a, b), (b, a)}:
            if a in found:
                raise UnsupportedLayerError(f"NIR neuron node {a!r} has two recurrent synapses ({found[a]!r}, {b!r}); "
                                            "a recurrent layer has one")
            found[a] = b
    return found


def _chain(graph: Any) -> tuple[list[str], dict[str, str]]:
    """Node keys in data-flow order and the recurrent cycles taken out of it (see
    :func:`_recurrences`); refuses graphs that are not one chain."""
    nir = _nir()
    nodes, edges = graph.nodes, [(str(a), str(b)) for a, b in graph.edges]
    if len(set(edges)) != len(edges):
        edges = list(dict.fromkeys(edges))
    recurrent = _recurrences(nodes, edges)
    looped = set(recurrent.values())
    edges = [(a, b) for a, b in edges if a not in looped and b not in looped]
    nodes = {k: v for k, v in nodes.items() if k not in looped}
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise FormatError(f"NIR edge ({a!r}, {b!r}) names a node that does not exist")
        succ[a].append(b)
        pred[b].append(a)
    branching = sorted(k for k in nodes if len(succ[k]) > 1 or len(pred[k]) > 1)
    if branching:
        raise UnsupportedLayerError(
            f"NIR graph is not a chain: node(s) {', '.join(branching)} have several inputs or outputs "
            "(branches and skip connections are not supported; a recurrent layer is a cycle neuron -> Affine/Linear -> "
            "neuron whose synapse has no other edge)"
        )
    starts = [k for k in nodes if isinstance(nodes[k], nir.Input)]
    if len(starts) != 1:
        raise UnsupportedLayerError(f"NIR graph must have exactly one Input node, found {len(starts)}")
    order = [starts[0]]
    while succ[order[-1]]:
        nxt = succ[order[-1]][0]
        if nxt in order:
            raise UnsupportedLayerError(f"NIR graph has a cycle through {nxt!r}; the only cycle read is a recurrent "
                                        "layer's neuron -> Affine/Linear -> neuron")
        order.append(nxt)
    missing = sorted(set(nodes) - set(order))
    if missing:
        raise UnsupportedLayerError(f"NIR nodes {', '.join(missing)} are not on the path from the Input node")
    return order, recurrent


def _stages(graph: Any, order: list[str], recurrent: dict[str, str], dt: float) -> list[_Stage]:
    """Group chain nodes into IR layers (synapse [+ delay] [+ neuron [+ recurrent synapse]])."""
    stages: list[_Stage] = []
    for key in order:
        node = graph.nodes[key]
        kind = type(node).__name__
        last = stages[-1] if stages else None
        if kind == "Input":
            stages.append(_Stage("input", key, meta=_ours(node.metadata)))
        elif kind == "Output":
            continue
        elif kind == "Flatten":
            stages.append(_Stage("flatten", key, meta=_ours(node.metadata)))
        elif kind in SYNAPSE_NODES:
            stage = _Stage(SYNAPSE_NODES[kind], key, synapse=node, meta=_ours(node.metadata))
            if last is not None and last.kind == "delay":
                stages.pop()
                stage.pre_delay = last.synapse
            stages.append(stage)
        elif kind == "Scale":
            if last is None or last.synapse is None or last.kind == "delay" or last.neuron is not None \
                    or last.scale is not None:
                raise UnsupportedLayerError(f"NIR Scale {key!r} is supported only right after a synapse node")
            last.scale = node
        elif kind == "Delay":
            if last is not None and last.kind == "dense" and last.neuron is None and last.post_delay is None:
                last.post_delay = node
            else:
                stages.append(_Stage("delay", key, synapse=node))
        elif kind in NEURON_NODES:
            if last is None or last.kind == "flatten" or last.neuron is not None or last.kind == "delay":
                raise UnsupportedLayerError(
                    f"NIR node {key!r} ({kind}) does not follow a synapse (Affine, Linear, Conv2d, pooling) or the Input"
                )
            last.neuron = (key, node)
            if key in recurrent:
                if last.kind != "dense":
                    raise UnsupportedLayerError(
                        f"NIR node {key!r} ({kind}): a recurrent synapse {recurrent[key]!r} is supported on neurons "
                        "behind an Affine/Linear synapse only (the chip's recurrent layer is dense)"
                    )
                last.kind, last.recurrent = "dense_rec", graph.nodes[recurrent[key]]
        else:  # pragma: no cover - filtered before
            raise UnsupportedLayerError(f"NIR node {key!r} has unsupported type {kind}")
    for stage in stages:
        stage.dt = dt
        if stage.kind == "delay":
            raise UnsupportedLayerError(f"NIR Delay {stage.name!r} is not next to an Affine/Linear synapse")
    return stages


def _conv_geometry(node: Any, in_shape: tuple[int, ...], where: str) -> dict[str, Any]:
    def pair(value: Any) -> tuple[int, int]:
        flat = np.asarray(value).reshape(-1).astype(np.int64)
        return (int(flat[0]), int(flat[0])) if flat.size == 1 else (int(flat[0]), int(flat[1]))

    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise UnsupportedLayerError(f"{where}: Conv2d weight must be 4-D (out, in/groups, kH, kW), got {weight.shape}")
    stride, dilation = pair(node.stride), pair(node.dilation)
    padding = _plain(node.padding) if not isinstance(node.padding, (tuple, list)) else node.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1) and all(k % 2 for k in weight.shape[2:]):
            padding = tuple(dilation[i] * (weight.shape[2 + i] - 1) // 2 for i in range(2))
        else:
            raise UnsupportedLayerError(f"{where}: padding {padding!r} with stride {stride} and kernel "
                                        f"{weight.shape[2:]} has no symmetric integer form")
    return {"stride": stride, "padding": pair(padding), "dilation": dilation, "groups": int(np.asarray(node.groups))}


def from_nir(graph: Any, dt: float | None = None) -> Network:
    """Import a chain-shaped ``nir.NIRGraph`` into an IR network.

    Parameters
    ----------
    graph : a NIR graph ``Input -> [neuron] -> (synapse [Delay] [neuron] | Flatten)* -> Output``
        of the node types in :data:`SUPPORTED_NODES`.
    dt : length of one chip time step in the graph's time unit (decays = ``4096 dt / tau``);
        default: the graph's ``dt`` metadata (our exports write it), else :data:`IMPORT_DT`.

    Raises
    ------
    UnsupportedLayerError listing every node of an unsupported type (one error), or naming
    the parameter the chip cannot represent.
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    graph = _inline_subgraphs(graph)
    if dt is None:
        meta_dt = graph.metadata.get("dt") if isinstance(graph.metadata, dict) else None
        dt = float(_plain(meta_dt)) if meta_dt is not None else IMPORT_DT
    if not dt > 0:
        raise ShapeError(f"dt={dt} must be > 0 (length of one time step)")
    unsupported = [f"{key} ({type(node).__name__})" for key, node in graph.nodes.items()
                   if type(node).__name__ not in SUPPORTED_NODES]
    if unsupported:
        raise UnsupportedLayerError(
            f"NIR graph has {len(unsupported)} unsupported node(s): {', '.join(unsupported)}; "
            f"supported: {', '.join(SUPPORTED_NODES)}"
        )
    for key, node in graph.nodes.items():
        check_node_fields(node, f"NIR node {key!r}", infinite_ok=_INFINITE_OK, text_ok=("padding",), skip=_NOT_PARAMS)
    from converters.nir_merge import merge_into_next

    _check_time_step(graph, dt)
    stages = _stages(graph, *_chain(graph), dt)
    layers: list[Layer] = []
    shape: tuple[int, ...] = ()
    index = -1
    while index + 1 < len(stages):
        index += 1
        stage = stages[index]
        where = f"NIR node {stage.name!r}"
        average = _average_readout(stages, index, shape)
        if average is not None:
            layers.append(average)
            shape = average.output_shape(shape)
            continue
        if stage.kind == "flatten" and stage.meta.get("average_input") \
                and _average_readout(stages, index + 1, (int(np.prod(shape)),)) is not None:
            shape = (int(np.prod(shape)),)  # the Flatten our export writes before an average of a map
            continue
        while stage.kind not in ("input", "flatten") and stage.neuron is None:  # several in a row merge in turn
            stages = merge_into_next(stages, index, shape)
            stage = stages[index]
        if stage.kind == "input":
            node = graph.nodes[stage.name]
            shape = _without_batch(check_shape(np.asarray(node.input_type["input"]), "input shape", where, _SIZE_FIX),
                                   stages, where)
            neuron = None
            if stage.neuron is not None:
                neuron = _input_neuron(stage, shape, dt)
            layers.append(InputLayer(name=stage.layer_name, shape=shape, neuron=neuron,
                                     weight=stage.meta.get("input_weight"), bias=stage.meta.get("input_bias")))
            continue
        if stage.kind == "flatten":
            layers.append(FlattenLayer(name=stage.layer_name))
            shape = (int(np.prod(shape)),)
            continue
        layer = _synaptic_layer(stage, shape, dt)
        layers.append(layer)
        try:
            shape = layer.output_shape(shape)
        except ShapeError as err:
            raise ShapeError(f"{where}: {err}") from None
    name = _plain(graph.metadata.get(f"{_META}_name", "nir")) if isinstance(graph.metadata, dict) else "nir"
    try:
        return Network(layers, name=str(name))
    except ShapeError as err:
        raise FormatError(f"NIR graph has inconsistent shapes: {err}") from None


def _time_constants(node: Any) -> list[tuple[str, np.ndarray]]:
    kind = type(node).__name__
    names = {"CubaLIF": ("tau_mem", "tau_syn"), "LIF": ("tau",)}.get(kind, ())
    return [(name, np.asarray(getattr(node, name), dtype=np.float64).reshape(-1)) for name in names]


def _check_time_step(graph: Any, dt: float) -> None:
    """Refuse a ``dt`` longer than a time constant, naming ``--dt`` and a value to try.

    The suggestion is the graph's own ``dt`` metadata when present, else ``tau_mem / r``
    when every neuron agrees on it and ``r != 1`` (exporters that keep the voltage gain at 1,
    as snntorch and neuroprune do, write ``r = tau / dt``), else the shortest time constant.
    """
    shortest: tuple[float, str, str] | None = None
    per_r: list[float] = []
    for key, node in graph.nodes.items():
        for name, tau in _time_constants(node):
            finite = tau[np.isfinite(tau) & (tau > 0)]
            if finite.size and (shortest is None or finite.min() < shortest[0]):
                shortest = (float(finite.min()), str(key), name)
        if type(node).__name__ in ("CubaLIF", "LIF"):
            tau = _time_constants(node)[0][1]
            r = np.asarray(node.r, dtype=np.float64).reshape(-1)
            tau, r = np.broadcast_arrays(tau, r)
            ok = np.isfinite(tau) & np.isfinite(r) & (r > 0) & (r != 1)
            per_r.extend(tau[ok] / r[ok])
    if shortest is None or shortest[0] * (1 + _TOL) >= dt:
        return
    tau, key, name = shortest
    meta_dt = graph.metadata.get("dt") if isinstance(graph.metadata, dict) else None
    if meta_dt is not None and 0 < float(_plain(meta_dt)) <= tau:
        hint = f"--dt {float(_plain(meta_dt)):g} (the graph's dt metadata)"
    elif per_r and np.allclose(per_r, per_r[0], rtol=1e-3) and 0 < per_r[0] <= tau * (1 + _TOL):
        hint = f"--dt {float(np.median(per_r)):.6g} (tau / r: the graph writes r = tau / dt, as snntorch does)"
    else:
        hint = f"a value at most {tau:g}, the step the graph's writer simulated with"
    raise UnsupportedLayerError(
        f"NIR node {key!r}: time constant {name}={tau:g} is shorter than the time step dt={dt:g} "
        f"(decay {DECAY_UNITY * dt / tau:.0f}/4096 per step > 4096); pass the graph's time step with "
        f"--dt (dt= in Python), e.g. {hint}"
    )


def _without_batch(shape: tuple[int, ...], stages: list[_Stage], where: str) -> tuple[int, ...]:
    """The Input shape without a leading batch dimension of 1 (as norse and nirtorch write it).

    Dropped when the shape has 4 dimensions (1, C, H, W), or is (1, N) and feeds a dense
    synapse of N inputs; a warning notes it.
    """
    if len(shape) < 2 or shape[0] != 1:
        return shape
    following = stages[1] if len(stages) > 1 else None  # the stage the Input feeds (stages[0] is the Input)
    feeds_dense = following is not None and following.kind == "dense" \
        and tuple(np.shape(following.synapse.weight)[-1:]) == shape[1:]
    if len(shape) == 4 or (len(shape) == 2 and feeds_dense):
        warnings.warn(f"{where}: input shape {shape} read as a batch of 1 of {shape[1:]} "
                      "(NIR shapes carry no batch axis)", stacklevel=4)
        return shape[1:]
    return shape


def _input_neuron(stage: _Stage, shape: tuple[int, ...], dt: float) -> Neuron:
    key, node = stage.neuron
    where = f"NIR node {key!r}"
    params = _read_neuron(node, shape, dt, where)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = params.threshold / params.gain
    values = np.unique(ratio)
    if values.size != 1 or not _integral(values) or not 0 <= values[0] <= MAX_V_TH_MANT:
        raise UnsupportedLayerError(
            f"{where}: an input neuron needs one integer v_threshold / input gain (got {values[:3]}); "
            "the chip feeds input mantissas to it with gain 1"
        )
    if np.any(params.leak_bias):
        raise UnsupportedLayerError(f"{where}: an input neuron cannot have a leak bias (v_leak)")
    return _make_neuron(params, int(round(float(values[0]))))


def _average_readout(stages: list[_Stage], index: int, in_shape: Shape) -> AverageLayer | None:
    """The host-side average readout when stage ``index`` is the graph's last synapse, has no
    neuron, and is a ``Linear`` whose rows average equal contiguous groups of a 1-D input
    (what :func:`converters.nir_write._export_average` writes); else ``None``."""
    if index >= len(stages) or index != len(stages) - 1:
        return None
    stage = stages[index]
    node = stage.synapse
    if stage.kind != "dense" or stage.neuron is not None or stage.scale is not None or stage.pre_delay is not None \
            or stage.post_delay is not None or type(node).__name__ != "Linear" or len(in_shape) != 1:
        return None
    weight = np.asarray(node.weight, dtype=np.float64)
    rows = weight.shape[0] if weight.ndim == 2 else 0
    if not rows or weight.shape[1] != in_shape[0] or in_shape[0] % rows:
        return None
    from converters.nir_write import average_matrix

    if not np.allclose(weight, average_matrix(rows, in_shape[0]), rtol=1e-6, atol=0):
        return None
    return AverageLayer(name=stage.layer_name, num_outputs=rows)


def _raw_synapse(stage: _Stage, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None,
                                                                    dict[str, Any], tuple[int, ...]]:
    """(float weight, bias or None, conv geometry, output shape) of a synapse stage's node."""
    node = stage.synapse
    kind = type(node).__name__
    where = f"NIR node {stage.name!r} ({kind})"
    weight, bias_vec, geometry, out_shape = lookup(_RAW_SYNAPSES, SYNAPSE_NODES[kind], "NIR synapse reader",
                                                   where)(node, in_shape, where)
    check_shape(out_shape, "output shape", where, _SIZE_FIX)
    return weight, bias_vec, geometry, out_shape


def _raw_dense(node: Any, in_shape: Shape, where: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], Shape]:
    bias_vec: np.ndarray | None = None
    if len(in_shape) != 1:
        raise ShapeError(f"{where} receives shape {in_shape}; a Flatten node must come first")
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise UnsupportedLayerError(f"{where}: weight must be 2-D (out, in), got {weight.shape}")
    out_shape: tuple[int, ...] = (weight.shape[0],)
    if type(node).__name__ == "Affine":
        bias_vec = np.asarray(node.bias, dtype=np.float64).reshape(-1)
    return weight, bias_vec, {}, out_shape


def _raw_conv(node: Any, in_shape: Shape, where: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], Shape]:
    if len(in_shape) != 3:
        raise ShapeError(f"{where} needs a (C, H, W) input, got {in_shape}")
    weight = np.asarray(node.weight, dtype=np.float64)
    geometry = _conv_geometry(node, in_shape, where)
    probe = ConvLayer(weight=np.zeros(weight.shape, dtype=np.int32), **geometry)
    out_shape = probe.output_shape(in_shape)
    bias_vec = np.asarray(node.bias, dtype=np.float64).reshape(-1)
    return weight, bias_vec, geometry, out_shape


def _raw_pool(node: Any, in_shape: Shape, where: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], Shape]:
    """SumPool2d / AvgPool2d as a depthwise weight of equal taps."""
    if len(in_shape) != 3:
        raise ShapeError(f"{where} needs a (C, H, W) input, got {in_shape}")
    kernel = tuple(int(k) for k in np.asarray(node.kernel_size).reshape(-1))
    kernel = kernel * 2 if len(kernel) == 1 else kernel
    stride = tuple(int(k) for k in np.asarray(node.stride).reshape(-1))
    padding = tuple(int(k) for k in np.asarray(node.padding).reshape(-1))
    probe_pool = PoolLayer(kernel=kernel, stride=stride if len(stride) == 2 else stride * 2,
                           padding=padding if len(padding) == 2 else padding * 2)
    out_shape = probe_pool.output_shape(in_shape)
    tap = 1.0 / (kernel[0] * kernel[1]) if type(node).__name__ == "AvgPool2d" else 1.0
    weight = np.full((in_shape[0], 1, *kernel), tap)
    geometry = {"stride": probe_pool.stride, "padding": probe_pool.padding, "groups": in_shape[0]}
    return weight, None, geometry, out_shape


def _refuse_complex(*args: Any) -> Any:
    raise UnsupportedLayerError("NIR has no complex synapse: NIR import builds no 'dense_comp' layer")


#: (float weight, bias, conv geometry, output shape) of a synapse node, per IR kind it reads as
_RAW_SYNAPSES: dict[str, Any] = {"dense": _raw_dense, "dense_rec": _raw_dense, "dense_comp": _refuse_complex,
                                 "conv": _raw_conv, "pool": _raw_pool}


def _synaptic_layer(stage: _Stage, in_shape: tuple[int, ...], dt: float) -> Layer:
    node = stage.synapse
    kind = type(node).__name__
    where = f"NIR node {stage.name!r} ({kind})"
    weight, bias_vec, geometry, out_shape = _raw_synapse(stage, in_shape)
    inputs = weight.shape[1] if weight.ndim == 2 else 0
    if stage.recurrent is not None:  # quantized with the feed-forward weights: one neuron scale for both
        weight, bias_vec = _with_recurrence(stage, weight, bias_vec, where)
    neuron_node = stage.neuron[1] if stage.neuron is not None else None
    rows = weight.shape[0]
    scale = np.ones(out_shape) if stage.scale is None else _shaped(stage.scale.scale, out_shape, "Scale", where)
    if neuron_node is None:  # pragma: no cover - from_nir merges or refuses neuron-less synapses first
        raise UnsupportedLayerError(f"{where}: a synapse without a neuron node has no chip form")
    else:
        params = _read_neuron(neuron_node, out_shape, dt, f"NIR node {stage.neuron[0]!r}")
        gain, threshold = params.gain * scale, params.threshold
        bias_drive = params.leak_bias.copy()
        if bias_vec is not None and np.any(bias_vec):
            if params.i_decay == 0 or not np.all(np.isfinite(params.bias_gain)):
                raise UnsupportedLayerError(
                    f"{where}: a synapse bias feeding a current that never decays (tau_syn = inf) has no chip form"
                )
            if params.i_decay != DECAY_UNITY:
                warnings.warn(
                    f"{where}: the bias sits behind a synaptic time constant (i_decay={params.i_decay}); it is "
                    "mapped to its steady-state voltage drive (exact once the current has settled)", stacklevel=4)
            bias_drive = bias_drive + _shaped(bias_vec, out_shape, "bias", where) * params.bias_gain * scale
        if len(out_shape) > 1:
            gain = _per_channel(gain, rows, "the input gain (w_in, r, taus)", where)
            threshold = _per_channel(threshold, rows, "v_threshold", where)
            bias_drive = _per_channel(bias_drive, rows, "the bias (b, v_leak)", where)
        else:
            gain, threshold, bias_drive = gain.reshape(-1), threshold.reshape(-1), bias_drive.reshape(-1)
        mantissa, bias_int, v_th = _quantize(weight, gain, threshold, bias_drive, where)
        neuron = _make_neuron(params, v_th)
        if kind == "AvgPool2d":
            _note_inexact_pool(weight, gain, threshold, mantissa, v_th, where)
    has_bias = stage.meta.get("has_bias")
    if has_bias is None:  # a graph from another tool: a bias exists when it is non-zero
        has_bias = bias_int is not None and bool(np.any(bias_int))
    bias = bias_int.astype(np.int32) if has_bias and bias_int is not None else None
    if stage.recurrent is not None:
        mantissa, stage.recurrent_mantissa = mantissa[:, :inputs], mantissa[:, inputs:]
    mask = stage.meta.get("mask")
    mask = None if mask is None else np.asarray(mask).astype(bool)
    hidden = stage.meta.get("masked_weight")
    if mask is not None and hidden is not None and np.shape(hidden) == mantissa.shape:
        mantissa = np.where(mask, mantissa, np.asarray(hidden)).astype(np.int32)
    weight_bits = stage.meta.get("weight_bits")
    weight_bits = None if weight_bits is None else int(weight_bits)
    build = lookup(_LAYER_BUILDERS, stage.kind, "NIR layer builder", where)
    return build(stage, mantissa, neuron, bias, mask, weight_bits, geometry, in_shape, where)


def _note_inexact_pool(weight: np.ndarray, gain: np.ndarray, threshold: np.ndarray, mantissa: np.ndarray, v_th: int,
                       where: str) -> None:
    """Warn when an average pool's taps (in units of the threshold) have no exact chip
    fraction and were rounded (see :func:`_equal_taps_exactly`)."""
    expand = (weight.shape[0],) + (1,) * (weight.ndim - 1)
    wanted = weight * gain.reshape(expand) / threshold.reshape(expand)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = float(np.max(np.abs(mantissa / v_th - wanted) / np.abs(wanted)))
    if error > _TOL:
        warnings.warn(f"{where}: the average pool's 1/(k^2 threshold) has no exact fraction of chip integers; "
                      f"stored as {int(mantissa.flat[0])}/{v_th} (relative error {error:.1e})", stacklevel=4)


def _build_dense(stage: _Stage, mantissa: np.ndarray, neuron: Neuron, bias: np.ndarray | None,
                 mask: np.ndarray | None, weight_bits: int | None, geometry: dict[str, Any], in_shape: Shape,
                 where: str) -> Layer:
    delay = _delays(stage, mantissa.shape, where)
    if delay is None and stage.meta.get("delay") is not None:  # all-zero delays written without Delay nodes
        delay = np.asarray(stage.meta["delay"])
    return DenseLayer(name=stage.layer_name, weight=mantissa, neuron=neuron, bias=bias, delay=delay, mask=mask,
                      weight_bits=weight_bits)


def _with_recurrence(stage: _Stage, weight: np.ndarray, bias: np.ndarray | None,
                     where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``[W | W_rec]`` and the bias with the recurrent ``Affine``'s bias added: both synapses feed
    the same neuron input, so a constant recurrent bias is a bias of the layer."""
    node = stage.recurrent
    rec = np.asarray(node.weight, dtype=np.float64)
    rows = weight.shape[0]
    if rec.shape != (rows, rows):
        raise ShapeError(f"{where}: recurrent weight has shape {rec.shape}; it connects the layer's {rows} "
                         f"neurons to themselves: ({rows}, {rows})")
    if type(node).__name__ == "Affine" and np.any(np.asarray(node.bias)):
        rec_bias = np.asarray(node.bias, dtype=np.float64).reshape(-1)
        bias = rec_bias if bias is None else bias + rec_bias
    return np.hstack((weight, rec)), bias


def _build_dense_rec(stage: _Stage, mantissa: np.ndarray, neuron: Neuron, bias: np.ndarray | None,
                     mask: np.ndarray | None, weight_bits: int | None, geometry: dict[str, Any], in_shape: Shape,
                     where: str) -> Layer:
    dense = _build_dense(stage, mantissa, neuron, bias, mask, weight_bits, geometry, in_shape, where)
    return RecurrentDenseLayer(name=dense.name, weight=dense.weight, weight_rec=stage.recurrent_mantissa,
                               neuron=neuron, bias=dense.bias, delay=dense.delay, mask=mask, weight_bits=weight_bits)


def _build_conv(stage: _Stage, mantissa: np.ndarray, neuron: Neuron, bias: np.ndarray | None,
                mask: np.ndarray | None, weight_bits: int | None, geometry: dict[str, Any], in_shape: Shape,
                where: str) -> Layer:
    if stage.pre_delay is not None or stage.post_delay is not None:
        raise UnsupportedLayerError(f"{where}: Delay nodes are supported around Affine/Linear synapses only")
    delay_meta = stage.meta.get("delay")
    return ConvLayer(name=stage.layer_name, weight=mantissa, neuron=neuron, bias=bias, mask=mask, weight_bits=weight_bits,
                     delay=None if delay_meta is None else np.asarray(delay_meta), **geometry)


def _build_pool(stage: _Stage, mantissa: np.ndarray, neuron: Neuron, bias: np.ndarray | None,
                mask: np.ndarray | None, weight_bits: int | None, geometry: dict[str, Any], in_shape: Shape,
                where: str) -> Layer:
    """A pool layer when every tap quantized to one mantissa, else the depthwise conv."""
    if stage.pre_delay is not None or stage.post_delay is not None:
        raise UnsupportedLayerError(f"{where}: Delay nodes are supported around Affine/Linear synapses only")
    taps = np.unique(mantissa)
    groups_ok = mantissa.shape[1] == 1 and int(geometry["groups"]) == mantissa.shape[0] == in_shape[0]
    if taps.size == 1 and groups_ok and bias is None and geometry.get("dilation", (1, 1)) == (1, 1):
        return PoolLayer(name=stage.layer_name, kernel=tuple(mantissa.shape[2:]), stride=geometry["stride"],
                         padding=geometry["padding"], weight=int(taps[0]), neuron=neuron)
    if type(stage.synapse).__name__ in ("SumPool2d", "AvgPool2d"):  # pragma: no cover - uniform by construction
        raise UnsupportedLayerError(f"{where}: pooling with per-channel gains cannot be one pool layer")
    return _build_conv(stage, mantissa, neuron, bias, mask, weight_bits, geometry, in_shape, where)


#: the IR layer a synapse stage (with its neuron) becomes, per the kind it reads as
_LAYER_BUILDERS: dict[str, Any] = {"dense": _build_dense, "dense_rec": _build_dense_rec,
                                   "dense_comp": _refuse_complex, "conv": _build_conv, "pool": _build_pool}


def _delays(stage: _Stage, weight_shape: tuple[int, ...], where: str) -> np.ndarray | None:
    if stage.pre_delay is None and stage.post_delay is None:
        return None
    if stage.pre_delay is not None and stage.post_delay is not None:
        raise UnsupportedLayerError(f"{where}: Delay nodes on both sides of one synapse are not supported")
    out, inp = weight_shape
    node = stage.post_delay if stage.post_delay is not None else stage.pre_delay
    delay = np.asarray(node.delay, dtype=np.float64).reshape(-1) / stage.dt  # NIR delays are times
    if not _integral(delay) or np.any(delay < 0):
        raise UnsupportedLayerError(f"{where}: delays must be non-negative whole time steps of dt={stage.dt:g}, "
                                    f"got {delay[:4]} steps; pass the graph's time step with --dt")
    delay = np.round(delay).astype(np.int32)
    if stage.post_delay is not None:
        if delay.size != out:
            raise ShapeError(f"{where}: Delay after the synapse has {delay.size} values for {out} outputs")
        return delay
    if delay.size != inp:
        raise ShapeError(f"{where}: Delay before the synapse has {delay.size} values for {inp} inputs")
    if inp == out:  # a 1-D delay of size out would be read per output: store it in full
        return np.repeat(delay.reshape(1, -1), out, axis=0)
    return delay


_MAX_NESTING = 16  # nested graphs deeper than this are refused (an HDF5 link cycle would never end)


def _file_nodes(nodes: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any, str]]:
    """(key, HDF5 group, type) of every node of a NIR file's ``nodes`` group, the nodes of
    nested graphs (type ``NIRGraph``) in their place under ``<graph key>.<key>``."""
    if depth > _MAX_NESTING:
        raise FormatError(f"NIR graph nests subgraphs more than {_MAX_NESTING} deep at {prefix!r}; the file is damaged")
    for key, group in nodes.items():
        kind = _plain(group["type"][()]) if hasattr(group, "keys") and "type" in group else "?"
        if kind == "NIRGraph" and hasattr(group, "keys") and hasattr(group.get("nodes"), "items"):
            yield from _file_nodes(group["nodes"], f"{prefix}{key}.", depth + 1)
        else:
            yield f"{prefix}{key}", group, kind


def _inline_subgraphs(graph: Any) -> Any:
    """``graph`` with every nested ``NIRGraph`` node replaced by its nodes (keys
    ``<graph key>.<key>``): the edges into it go to what its ``Input`` feeds, the edges out
    of it leave from what feeds its ``Output``."""
    nir = _nir()
    if not any(isinstance(node, nir.NIRGraph) for node in graph.nodes.values()):
        return graph
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for key, node in graph.nodes.items():
        key = str(key)
        if not isinstance(node, nir.NIRGraph):
            nodes[key] = node
            continue
        inner = _inline_subgraphs(node)
        ins = [k for k, n in inner.nodes.items() if isinstance(n, nir.Input)]
        outs = [k for k, n in inner.nodes.items() if isinstance(n, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise UnsupportedLayerError(f"NIR subgraph {key!r} has {len(ins)} Input and {len(outs)} Output nodes; "
                                        "a nested graph is read when it has one of each")
        inner_edges = [(str(a), str(b)) for a, b in inner.edges]
        entries[key] = [f"{key}.{b}" for a, b in inner_edges if a == ins[0]]
        exits[key] = [f"{key}.{a}" for a, b in inner_edges if b == outs[0]]
        for inner_key, inner_node in inner.nodes.items():
            if inner_key not in (ins[0], outs[0]):
                if f"{key}.{inner_key}" in graph.nodes:
                    raise UnsupportedLayerError(f"NIR subgraph {key!r}: node {inner_key!r} would be named "
                                                f"{key}.{inner_key!r} like a node of the outer graph")
                nodes[f"{key}.{inner_key}"] = inner_node
        edges += [(f"{key}.{a}", f"{key}.{b}") for a, b in inner_edges if a != ins[0] and b != outs[0]]
    for a, b in graph.edges:
        edges += [(s, t) for s in exits.get(str(a), [str(a)]) for t in entries.get(str(b), [str(b)])]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)


def _check_node_types(path: Path) -> None:
    """List every unsupported node type in a NIR file before ``nir.read`` (which stops at
    the first type it does not know)."""
    handle = open_h5(path, "is it a NIR graph file?")
    with handle:
        check_h5_datasets(handle, str(path))
        nodes = handle.get("node/nodes")
        if nodes is None or not hasattr(nodes, "items"):
            raise FormatError(f"{path}: no /node/nodes group; not a NIR graph file")
        unsupported = []
        for key, group, kind in _file_nodes(nodes):
            if hasattr(group, "keys"):
                check_h5_numeric(group, f"NIR node {key!r}", text_ok=("type", "padding"))
            if kind not in SUPPORTED_NODES:
                unsupported.append(f"{key} ({kind})")
    if unsupported:
        raise UnsupportedLayerError(
            f"{path}: NIR graph has {len(unsupported)} unsupported node(s): {', '.join(sorted(unsupported))}; "
            f"supported: {', '.join(SUPPORTED_NODES)}"
        )


def read(path: str | os.PathLike[str], dt: float | None = None) -> Network:
    """Read a NIR HDF5 file (``nir.read``) into an IR network (see :func:`from_nir`)."""
    nir = _nir()
    path = check_input_file(path, "a NIR HDF5 file")
    with naming(path):
        _check_node_types(path)
        try:
            graph = nir.read(path, type_check=False)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, AssertionError) as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise FormatError(f"{path}: damaged NIR graph file ({text[:160]})") from None
        return from_nir(graph, dt=dt)
