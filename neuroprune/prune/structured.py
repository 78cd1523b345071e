"""Structured removal: channels really leave the tensors, the model gets smaller.

Two targets share the dependency graph (:mod:`neuroprune.prune.graph`):

- :func:`prune_network` shrinks an IR :class:`~neuroprune.ir.Network` (numpy);
- :func:`prune_model` shrinks a trainable :class:`~neuroprune.snn.model.SNN` (torch),
  keeping the float shadow weights the optimiser works on.

Both take ``keep``: a mapping from IR layer index to the output channels that stay.
:func:`cut_network` applies the same cut without the graph's protections (the fit
report's fixes, :mod:`hw_models.fixes`, use it); ``SLICERS`` says how each synaptic kind
loses the channels :func:`~neuroprune.prune.graph.cut_plan` couples.
:func:`keep_by_ratio` turns per-layer keep ratios and channel importances into such a
mapping.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from neuroprune.errors import PruneError
from neuroprune.ir import Layer, Network
from neuroprune.registry import lookup
from neuroprune.prune.graph import Coupling, DependencyGraph, PruneGroup, cut_plan

if TYPE_CHECKING:  # pragma: no cover
    from neuroprune.snn.model import SNN

__all__ = ["groups_for", "prune_network", "cut_network", "prune_model", "keep_by_ratio", "keep_count"]


def keep_count(channels: int, ratio: float) -> int:
    """Channels kept at keep ratio ``ratio`` (rounded, at least 1)."""
    if not 0.0 < ratio <= 1.0 or math.isnan(ratio):
        raise PruneError(f"keep ratio {ratio} must be in (0, 1]")
    return max(1, min(channels, int(round(channels * ratio))))


def groups_for(graph: DependencyGraph, keep: Mapping[int, np.ndarray | list[int]]) -> list[PruneGroup]:
    """Validated pruning groups, one per entry of ``keep``."""
    groups = [graph.group(int(index), indices) for index, indices in keep.items()]
    touched: dict[tuple[int, str], int] = {}
    for group in groups:
        for coupling in group.couplings:
            key = (coupling.layer, coupling.role)
            if key in touched:
                raise PruneError(
                    f"layer {coupling.layer} would be pruned twice (from layers {touched[key]} and {group.root})"
                )
            touched[key] = group.root
    return groups


def _take(array: np.ndarray | None, axis: int, indices: np.ndarray) -> np.ndarray | None:
    if array is None:
        return None
    if array.ndim <= axis:  # scalar-like entries (shared delay) stay
        return array
    return np.take(array, indices, axis=axis)


def _group_local(layer: Layer, idx: np.ndarray, per_group: int, what: str) -> np.ndarray:
    """For a grouped layer keeping outputs ``idx`` (``per_group`` per group): the kept
    local index of each group, ``(groups, kept per group)``; every group must keep as many."""
    groups = layer.groups  # type: ignore[attr-defined]
    owner = idx // per_group
    counts = np.bincount(owner, minlength=groups)
    if counts.min() != counts.max():
        raise PruneError(f"{layer.kind} layer {layer.name!r} (groups={groups}): keep the same number of {what} in "
                         f"each group (kept {counts.tolist()})")
    return (idx % per_group).reshape(groups, -1)


def _weight_changes(layer: Layer, coupling: Coupling) -> dict:
    """Dense and conv: the weight (and mask, bias, delays) cut along the coupled axis
    (rows ``(out, ...)`` for ``"out"``, the input axis for ``"in"``)."""
    idx = coupling.indices
    if coupling.role == "out":
        if getattr(layer, "groups", 1) > 1 and not layer.channel_wise:
            _group_local(layer, idx, layer.out_channels // layer.groups, "output channels")  # type: ignore
        changes = {
            "weight": _take(layer.weight, 0, idx),
            "mask": _take(layer.mask, 0, idx),
            "bias": None if layer.bias is None or layer.bias.ndim == 0 else _take(layer.bias, 0, idx),
            "delay": _take(layer.delay, 0, idx),
        }
        if layer.channel_wise:
            changes["groups"] = len(idx)
    else:
        changes = {"weight": _take(layer.weight, 1, idx), "mask": _take(layer.mask, 1, idx)}
        if layer.delay is not None and layer.delay.ndim == 2:
            changes["delay"] = _take(layer.delay, 1, idx)
    return changes


def _slice_weights(layer: Layer, coupling: Coupling) -> Layer:
    return dataclasses.replace(layer, **_weight_changes(layer, coupling))


def _slice_paired_dense(layer: Layer, coupling: Coupling) -> Layer:
    """Recurrent and complex dense: the dense cut, and the second matrix with it (a
    recurrent ``(out, out)`` matrix loses the cut neurons as rows and as columns, a
    complex one is cut like the real part)."""
    name = layer.second  # type: ignore[attr-defined]
    second, idx = getattr(layer, name), coupling.indices
    if coupling.role == "out":
        second = np.take(second, idx, axis=0)
        if layer.kind == "dense_rec":
            second = np.take(second, idx, axis=1)
    elif layer.kind == "dense_comp":
        second = np.take(second, idx, axis=1)
    return dataclasses.replace(layer, **_weight_changes(layer, coupling), **{name: second})


def _slice_conv_transpose(layer: Layer, coupling: Coupling) -> Layer:
    """Transposed conv ``(in, out // groups, kH, kW)``: output channels are axis 1 within
    each group (each group keeps as many), input channels axis 0; a depthwise one
    (``(C, 1, kH, kW)``, groups = C) keeps channels along axis 0."""
    idx = coupling.indices
    weight, mask = layer.weight, layer.mask  # type: ignore[attr-defined]
    changes: dict = {}
    if coupling.role == "in" or layer.channel_wise:
        changes["weight"], changes["mask"] = _take(weight, 0, idx), _take(mask, 0, idx)
        if layer.channel_wise:
            changes["groups"] = len(idx)
    else:
        groups = layer.groups  # type: ignore[attr-defined]
        local = _group_local(layer, idx, weight.shape[1], "output channels")
        owner = np.arange(weight.shape[0]) // (weight.shape[0] // groups)  # group of each input channel

        def cut(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else np.take_along_axis(
                values, local[owner].reshape(weight.shape[0], -1, 1, 1), axis=1)

        changes["weight"], changes["mask"] = cut(weight), cut(mask)
    if coupling.role == "out":
        bias, delay = layer.bias, layer.delay  # type: ignore[attr-defined]
        changes["bias"] = None if bias is None or bias.ndim == 0 else _take(bias, 0, idx)
        changes["delay"] = None if delay is None else (
            _take(delay, 0, idx) if delay.ndim == 1 and delay.size == layer.out_channels else delay)  # type: ignore
    return dataclasses.replace(layer, **changes)


def _slice_pool(layer: Layer, coupling: Coupling) -> Layer:
    return layer  # channel-wise with one shared weight: its shape follows its producer


#: how a layer of each synaptic kind loses channels (input, flatten and concat have none to
#: lose: their shapes follow their sources)
SLICERS: dict[str, Callable[[Layer, Coupling], Layer]] = {
    "dense": _slice_weights,
    "dense_rec": _slice_paired_dense,
    "dense_comp": _slice_paired_dense,
    "conv": _slice_weights,
    "convT": _slice_conv_transpose,
    "pool": _slice_pool,
    "unpool": _slice_pool,
}


def _slice_layer(layer: Layer, coupling: Coupling) -> Layer:
    return lookup(SLICERS, layer.kind, "channels to prune", f"layer {coupling.layer}")(layer, coupling)


def prune_network(network: Network, keep: Mapping[int, np.ndarray | list[int]],
                  graph: DependencyGraph | None = None) -> Network:
    """A smaller IR network keeping, for each layer index in ``keep``, those channels."""
    graph = graph or DependencyGraph(network)
    roots = {group.root: group.keep for group in (graph.group(int(i), indices) for i, indices in keep.items())}
    return cut_network(network, roots)


def cut_network(network: Network, keep: Mapping[int, np.ndarray]) -> Network:
    """``network`` with each layer ``i`` of ``keep`` cut to its output channels ``keep[i]``
    (sorted, unique) and every coupled tensor with it (:func:`~neuroprune.prune.graph.cut_plan`),
    without :class:`DependencyGraph`'s protections (the fit report's fixes cut the output too)."""
    layers = list(network.layers)
    for coupling in cut_plan(network, keep):
        layers[coupling.layer] = _slice_layer(layers[coupling.layer], coupling)
    return network.with_layers(layers)


def prune_model(model: "SNN", keep: Mapping[int, np.ndarray | list[int]], graph: DependencyGraph | None = None) -> "SNN":
    """A new, smaller :class:`SNN` keeping, for each IR layer index in ``keep``, those
    output channels; float weights (and per-channel neuron parameters) are sliced."""
    import torch

    from neuroprune.snn import model as snn_model

    network = snn_model.to_ir(model)
    graph = graph or DependencyGraph(network)
    groups = groups_for(graph, keep)
    offset = model.ir_offset
    specs = model.specs()
    for group in groups:
        for coupling in group.couplings:
            if coupling.role == "out":
                block = coupling.layer - offset
                spec = specs[block]
                groups_count = len(coupling.indices) if spec.groups > 1 else spec.groups
                specs[block] = dataclasses.replace(spec, out=len(coupling.indices), groups=groups_count)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    for group in groups:
        for coupling in group.couplings:
            prefix = f"blocks.{coupling.layer - offset}."
            index = torch.as_tensor(coupling.indices, dtype=torch.long)
            for key in [k for k in state if k.startswith(prefix)]:
                value = state[key]
                if key.endswith("synapse.weight"):
                    state[key] = value.index_select(0 if coupling.role == "out" else 1, index)
                elif coupling.role == "out" and value.ndim >= 1 and value.shape[0] == graph.channels(coupling.layer) \
                        and value.shape[0] > 1:
                    state[key] = value.index_select(0, index)  # per-channel neuron parameters
    smaller = snn_model.build(specs, model.input_shape, neuron=model.neuron_config, input_neuron=False,
                              name=model.name)
    smaller.load_state_dict(state)
    return smaller


def keep_by_ratio(graph: DependencyGraph, ratios: Mapping[int, float],
                  importance: Mapping[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Channels to keep per layer: the ``round(ratio * channels)`` most important ones.

    ``importance[layer]`` holds one score per output channel (higher = keep); without
    it the first channels are kept. Ties keep the lower index (stable order).
    """
    keep: dict[int, np.ndarray] = {}
    for index, ratio in ratios.items():
        channels = graph.channels(index)
        count = keep_count(channels, float(ratio))
        graph.check(index, count)
        if count == channels:
            continue
        scores = None if importance is None else importance.get(index)
        if scores is None:
            chosen = np.arange(count)
        else:
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != (channels,):
                raise PruneError(f"layer {index}: {scores.shape[0] if scores.ndim else 0} importance scores for {channels} channels")
            chosen = np.sort(np.argsort(-scores, kind="stable")[:count])
        keep[index] = chosen
    return keep
