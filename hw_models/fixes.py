"""Concrete fixes for the violations of a fit report (:mod:`hw_models.report`).

Each fix names a change and its computed size: prune a layer to N channels, quantize to
N-bit weights, use the other chip, raise a budget (cores, chips, SynOps), or a closed-form
share of synapses to keep.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from hw_models.chip import Chip, load_chip
from hw_models.cost import synapse_memory_bits
from hw_models.mapper import Allocation, LayerAllocation, map_network, remap_cores
from neuroprune.errors import PruneError
from neuroprune.ir import Network
from neuroprune.prune.graph import cut_plan
from neuroprune.prune.structured import cut_network

__all__ = ["keep_channels", "core_fix", "cores_fix", "chips_fix", "synops_fix"]

# Every fix is computed by bisection over trials that re-cost only the layers the fix
# changes (``remap_cores``), never by re-mapping the whole network per trial.


def _consumer(network: Network, index: int) -> int | None:
    """The next layer with synapses after ``index`` that mixes channels (pools, flatten
    and depthwise convs skipped), if any."""
    for later in range(index + 1, len(network.layers)):
        layer = network.layers[later]
        if layer.synaptic and not layer.channel_wise:
            return later
    return None


def _first(network: Network, index: int, keep: int) -> np.ndarray:
    """The first ``keep`` output channels of layer ``index``; of a grouped layer, the first
    ``keep // groups`` of each group (so at most ``keep`` in all, and the groups stay equal)."""
    layer = network.layers[index]
    groups = getattr(layer, "groups", 1)
    if groups > 1 and not layer.channel_wise:
        per_group, each = network.shapes[index][0] // groups, keep // groups
        if each < 1:
            raise PruneError(f"layer {index} ({layer.kind}, groups={groups}): keep at least one channel per group "
                             f"({groups} in all)")
        return (np.arange(groups)[:, None] * per_group + np.arange(each)[None, :]).reshape(-1)
    return np.arange(keep)


def keep_channels(network: Network, index: int, keep: int) -> Network:
    """``network`` with layer ``index`` cut to its first ``keep`` output channels (neurons)
    and every tensor coupled to them cut alike (:func:`neuroprune.prune.graph.cut_plan`):
    channel-wise layers after it (pool, unpool, depthwise conv or transposed conv), and the
    inputs of each layer that reads them, directly, through a flatten or through a concat
    (at the channels' offset in the join). Raises :class:`PruneError` when they cannot be
    cut (a grouped layer or a host-side readout reads them)."""
    return cut_network(network, {index: _first(network, index, keep)})


def _cuttable(network: Network, index: int) -> bool:
    """Layer ``index``'s output channels can be cut (:func:`keep_channels` works on it)."""
    try:
        cut_plan(network, {index: np.arange(network.shapes[index][0])})
    except PruneError:
        return False
    return True


def _changed_layers(network: Network, index: int) -> list[int]:
    """Layers with compartments whose costs change when layer ``index`` loses channels."""
    return sorted({coupling.layer for coupling in cut_plan(network, {index: np.arange(network.shapes[index][0])})})


def _largest_keep(network: Network, chip: Chip, allocation: Allocation, index: int,
                  accept: Callable[[int, dict], bool]) -> int | None:
    """Largest channel count of layer ``index`` whose trial ``accept(cores, changed)`` takes
    (bisection; ``None`` when even one channel is not accepted)."""
    now = network.shapes[index][0]
    if not _cuttable(network, index):
        return None
    changed = _changed_layers(network, index)

    def ok(keep: int) -> bool:
        try:
            trial = keep_channels(network, index, keep)
        except PruneError:  # fewer channels than a grouped layer's groups
            return False
        return accept(*remap_cores(trial, chip, allocation, changed))

    if now <= 1 or not ok(1):
        return None
    low, high = 1, now  # ok(low), and keeping all channels is the failing state
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if ok(middle) else (low, middle)
    return low


def _unit(network: Network, index: int) -> str:
    return "output neurons" if len(network.shapes[index]) == 1 else "output channels"


def _fits_all(changed: dict) -> bool:
    return not any(broken for _, broken in changed.values())


def _prune_fix(network: Network, chip: Chip, allocation: Allocation, target_cores: int) -> str | None:
    layers = [layer for layer in allocation.layers
              if network.layers[layer.index].synaptic and not network.layers[layer.index].channel_wise]
    if not layers:
        return None
    biggest = max(layers, key=lambda layer: layer.cores)
    keep = _largest_keep(network, chip, allocation, biggest.index,
                         lambda cores, changed: cores <= target_cores and _fits_all(changed))
    if keep is None:
        return None
    return (f"prune layer {biggest.index} to <= {keep} {_unit(network, biggest.index)} "
            f"(now {network.shapes[biggest.index][0]})")


def _widest_passing(widths: list[int], ok: Callable[[int], bool]) -> int | None:
    """Widest of ascending ``widths`` that passes ``ok`` (monotone: narrower passes more)."""
    if not widths or not ok(widths[0]):
        return None
    low, high = 0, len(widths)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if ok(widths[middle]) else (low, middle)
    return widths[low]


def _quantize_fix(network: Network, chip: Chip, allocation: Allocation, target_cores: int) -> str | None:
    synaptic = [layer for layer in allocation.layers if layer.synapses]
    if not synaptic:
        return None
    biggest = max(synaptic, key=lambda layer: layer.cores)
    for layers, label in (([biggest], f"layer {biggest.index}"), (synaptic, "every layer")):
        current = max(layer.weight_bits for layer in layers)
        indices = [layer.index for layer in layers]
        floor = allocation.cores - sum(layer.cores - math.ceil(layer.neurons / chip.max_neurons_per_core)
                                       for layer in layers)
        if floor > target_cores:  # even at one bit these layers keep their neuron-bound cores
            continue

        def ok(bits: int) -> bool:
            cores, changed = remap_cores(network, chip, allocation, indices, {i: bits for i in indices})
            others_fit = not any(layer.over_limits for layer in allocation.layers if layer.index not in indices)
            return cores <= target_cores and _fits_all(changed) and others_fit

        bits = _widest_passing([b for b in chip.weight_bits if b < current], ok)
        if bits is not None:
            return f"quantize {label} to <= {bits}-bit weights (now {current})"
    return None


def _other_chip_fix(network: Network, chip: Chip, target_chips: int) -> str | None:
    if chip.successor is None:
        return None
    other = load_chip(chip.successor).with_budget(max_chips=chip.max_chips)
    trial = map_network(network, other)  # one trial: the other chip
    if math.ceil(trial.cores / other.cores_per_chip) <= target_chips and not any(
            layer.over_limits for layer in trial.layers):
        return f"use {other.name} (needs {trial.cores} cores on {trial.chips} chip{'s' if trial.chips > 1 else ''})"
    return None


def _percent(fraction: float) -> str:
    """A fraction as a percentage rounded down to 0.1 (float noise ignored)."""
    return f"{math.floor(fraction * 1000 + 1e-9) / 10:g}"


def _join(fixes: list[str | None]) -> str:
    return " or ".join(fix for fix in fixes if fix) or "reduce the network (no single change found)"


def core_fix(network: Network, chip: Chip, allocation: Allocation, layer: LayerAllocation,
              limit: str, actual: int, budget: int) -> str:
    """Fix for a per-core limit that one neuron per core already breaks."""
    producer = layer.producer
    if limit == "max_in_axons_per_core":
        if producer is not None and producer > 0 and _cuttable(network, producer):
            shape = network.shapes[producer]
            keep = max(int(shape[0] * budget // actual), 1)
            return (f"prune layer {producer} to <= {keep} {_unit(network, producer)} (now {shape[0]}) or prune "
                    f"layer {layer.index} to <= {budget} non-zero inputs per neuron")
        return f"prune layer {layer.index} to <= {budget} non-zero inputs per neuron (now {actual})"
    if limit == "max_synapse_bits_per_core":
        def ok(bits: int) -> bool:
            _, changed = remap_cores(network, chip, allocation, [layer.index], {layer.index: bits})
            return not any(name == limit for name, _, _ in changed[layer.index][1])

        bits = _widest_passing([b for b in chip.weight_bits if b < layer.weight_bits], ok)
        if bits is not None:
            return f"quantize layer {layer.index} to <= {bits}-bit weights (now {layer.weight_bits})"
        per_axon = int(synapse_memory_bits(1, layer.weight_bits + layer.delay_bits + chip.tag_bits, chip))
        return (f"prune layer {layer.index} to <= {budget // per_axon} non-zero inputs per neuron "
                f"(now {layer.max_per_core('in_axons')})")
    if limit == "max_out_axons_per_core":
        consumer = _consumer(network, layer.index)
        text = (f"one neuron of layer {layer.index} alone needs {actual} output-axon slots: one per core "
                f"of layer {consumer} its spikes reach")
        if consumer is None:
            return text
        slots = chip.population_axon_slots if network.layers[consumer].shared_weights else 1
        most = budget // slots
        keep = _largest_keep(network, chip, allocation, consumer,
                             lambda cores, changed: changed[consumer][0] <= most and _fits_all(changed))
        fix = (f"; fit layer {consumer} in <= {most} cores: prune it to <= {keep} "
               f"{_unit(network, consumer)} (now {network.shapes[consumer][0]})") if keep else ""
        return text + fix
    return f"make layer {layer.index}'s output rows <= {budget} neurons wide (now {actual})"


def cores_fix(network: Network, chip: Chip, allocation: Allocation) -> str:
    """Fix for more cores than ``chip.max_cores``: a higher budget, pruning or quantizing."""
    return _join([f"raise --max-cores to {allocation.cores}", _prune_fix(network, chip, allocation, chip.max_cores),
                  _quantize_fix(network, chip, allocation, chip.max_cores)])


def chips_fix(network: Network, chip: Chip, allocation: Allocation) -> str:
    """Fix for more chips than ``chip.max_chips``: more chips, the other chip, pruning or quantizing."""
    chips = allocation.chips
    target = chip.max_chips * chip.cores_per_chip
    board = (f" ({chips} chips fit one board of {chip.chips_per_board})"
             if chips <= chip.chips_per_board else "")
    return _join([f"raise --max-chips to {chips}{board}", _other_chip_fix(network, chip, chip.max_chips),
                  _prune_fix(network, chip, allocation, target),
                  _quantize_fix(network, chip, allocation, target)])


def synops_fix(chip: Chip, synops: dict[int, float]) -> str:
    """Fix for more SynOps per step than ``chip.max_synops_per_step`` (closed form: the
    share of synapses to keep in the busiest layer, or in every layer)."""
    total = sum(synops.values())
    biggest = max(synops, key=synops.__getitem__)
    excess = total - chip.max_synops_per_step
    if synops[biggest] > excess:
        keep = (synops[biggest] - excess) / synops[biggest]
        fix = (f"prune layer {biggest} to <= {_percent(keep)}% of its synapses "
               f"(cuts {excess:.4g} SynOps/step) or lower its input spike rate by the same factor")
    else:
        keep = chip.max_synops_per_step / total
        fix = f"prune every layer to <= {_percent(keep)}% of its synapses"
    return fix + f" or raise --max-synops to {math.ceil(total)}"
