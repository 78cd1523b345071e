"""Greedy placement of a network's neurons onto cores.

Rules (the same as nengo-loihi's block splitting, simplified):

- every layer with compartments (the input layer when it has neurons, every dense,
  conv and pool layer) is split into core blocks of contiguous neurons in on-chip
  order (image layers pixel by pixel, channels of a pixel together, so blocks pack
  across channel boundaries); a layer may span several cores, and **cores are never
  shared between layers** (so a core holds one layer's single compartment, threshold
  and synapse configuration, far below the chip's per-core configuration limits);
- a layer's blocks all have the same size (the last one may be smaller): the fewest
  blocks for which every block meets every per-core limit (neurons, input axons,
  output axons, synapse memory bits with the cheaper encoding per block), then the
  same number of blocks made as equal as possible, as nengo-loihi splits a block;
- output axons of a block = the axon slots its neurons need: a discrete axon per
  (neuron, destination core), a population axon (``population_axon_slots`` slots) per
  (pixel, destination core) into a shared-weight conv; the last layer sends to the host
  and uses none. So layers are mapped from the last to the first;
- a concat layer holds no compartments: the output axons its consumer needs are owed by
  its sources, each for its channels (population axons: each source pixel sends its own);
- if even one neuron per core breaks a limit, the layer is mapped one neuron per core
  and the broken limits are recorded on the layer (the report turns them into
  violations); cores are numbered in layer order, chips = ceil(cores / cores_per_chip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from hw_models.cost import BlockCosts, chip_order, make_coster
from neuroprune.ir import ConcatLayer, Network

if TYPE_CHECKING:  # pragma: no cover
    from hw_models.chip import Chip

__all__ = ["AxonPairs", "CoreBlock", "fewest_blocks", "remap_cores", "LayerAllocation", "Allocation", "map_network", "compartment_layers"]


@dataclass(frozen=True)
class CoreBlock:
    """One core's share of a layer: neurons ``[neuron_start, neuron_stop)`` and usage."""

    core: int
    neuron_start: int
    neuron_stop: int
    in_axons: int
    out_axons: int
    synapses: int
    synapse_bits: int
    encoding: str

    @property
    def neurons(self) -> int:
        return self.neuron_stop - self.neuron_start


@dataclass(frozen=True)
class AxonPairs:
    """The input axons of a layer: ``blocks[i]`` (block index within the layer) receives
    producer unit ``units[i]`` (a neuron, or a pixel of ``unit_size`` channels, in the
    producer's on-chip order), carrying the fraction ``share[i]`` of that unit's spikes."""

    blocks: np.ndarray
    units: np.ndarray
    share: np.ndarray
    unit_size: int


@dataclass(frozen=True)
class LayerAllocation:
    """How one layer sits on cores, with its per-core extremes and broken limits.

    ``over_limits`` holds ``(limit name, worst actual, limit)`` for every per-core
    limit that even one neuron per core cannot meet.
    """

    index: int
    kind: str
    name: str
    neurons: int
    blocks: tuple[CoreBlock, ...]
    weight_bits: int
    required_weight_bits: int
    delay_bits: int
    over_limits: tuple[tuple[str, int, int], ...] = ()
    producer: int | None = None
    inputs: "AxonPairs | None" = field(default=None, repr=False, compare=False)
    fanout_synapses: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: non-zero recurrent synapses out of each of the layer's own neurons (recurrent layers)
    recurrent_fanout: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the recurrent input axons: which own block receives which own neuron (recurrent layers)
    recurrent_inputs: "AxonPairs | None" = field(default=None, repr=False, compare=False)

    @property
    def cores(self) -> int:
        return len(self.blocks)

    @property
    def in_axons(self) -> int:
        return sum(block.in_axons for block in self.blocks)

    @property
    def out_axons(self) -> int:
        return sum(block.out_axons for block in self.blocks)

    @property
    def synapses(self) -> int:
        return sum(block.synapses for block in self.blocks)

    @property
    def synapse_bits(self) -> int:
        return sum(block.synapse_bits for block in self.blocks)

    @property
    def neurons_per_core(self) -> int:
        return max((block.neurons for block in self.blocks), default=0)

    @property
    def encoding(self) -> str:
        kinds = {block.encoding for block in self.blocks if block.synapses}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "-")

    def max_per_core(self, attribute: str) -> int:
        return max((getattr(block, attribute) for block in self.blocks), default=0)


@dataclass(frozen=True)
class Allocation:
    """Placement of a whole network: layers in order, cores and chips used."""

    chip: str
    layers: tuple[LayerAllocation, ...]
    cores_per_chip: int
    fanouts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.cores_per_chip) if self.cores else 0

    def layer(self, index: int) -> LayerAllocation:
        """The allocation of network layer ``index`` (KeyError if it has no cores)."""
        for layer in self.layers:
            if layer.index == index:
                return layer
        raise KeyError(f"layer {index} holds no compartments")


def compartment_layers(network: Network) -> list[int]:
    """Indices of layers that hold compartments on the chip."""
    return network.compartment_indices()


def _usage(costs: BlockCosts, out_axons: np.ndarray, chip: "Chip") -> list[tuple[str, int, int]]:
    """Per-core limits of a split: (name, worst block's actual, limit)."""
    checks = (
        ("max_neurons_per_core", costs.neurons, chip.max_neurons_per_core),
        ("max_in_axons_per_core", costs.in_axons, chip.max_in_axons_per_core),
        ("max_out_axons_per_core", out_axons, chip.max_out_axons_per_core),
        ("max_synapse_bits_per_core", costs.memory_bits, chip.max_synapse_bits_per_core),
    )
    return [(name, int(values.max()) if len(values) else 0, limit) for name, values, limit in checks]


#: Block counts tried one by one above the fewest when that count is small.
_SCAN = 8
#: Bisection stops within 1/_TOLERANCE of the fewest blocks (exact below 2 x _TOLERANCE blocks).
_TOLERANCE = 128


def fewest_blocks(neurons: int, top: int, overshoot: Callable[[int], float], hint: int | None = None) -> int:
    """Chunk (neurons per block) of the fewest equal blocks that fit; 1 when none does.

    A split into ``k`` blocks uses chunks of ``ceil(neurons / k)`` (equal blocks, as
    nengo-loihi splits). ``overshoot(chunk)`` is the worst actual/limit ratio of the
    split (<= 1 fits). Starts at the fewest blocks the neuron limit allows; small
    counts are tried one by one (a block's cuts make fitting not quite monotone);
    beyond, ``k`` jumps by the overshoot (per-block usage shrinks about in proportion
    to the block) or to the ``hint`` chunk known to fit, then closes in on the fewest
    count by the same ratio from either side (bisecting when a guess falls outside)
    to within ``k / 128`` (exact below 256 blocks): O(log k) evaluations.
    """
    if neurons <= 0:
        return 1
    chunk = lambda k: -(-neurons // k)  # noqa: E731
    low = -(-neurons // max(min(top, neurons), 1))  # fewest blocks: the neuron limit
    if low <= _SCAN:
        for k in range(low, min(2 * _SCAN, neurons) + 1):
            if overshoot(chunk(k)) <= 1:
                return chunk(k)
        low = min(2 * _SCAN, neurons)
    elif overshoot(chunk(low)) <= 1:
        return chunk(low)
    high = None
    if hint is not None and 0 < hint < chunk(low) and overshoot(hint) <= 1:
        high = -(-neurons // hint)
    k = low
    while high is None:  # chunk(low) breaks a limit
        k = min(max(k + 1, math.ceil(k * overshoot(chunk(k)))), neurons)
        if overshoot(chunk(k)) <= 1:
            high = k
        elif k >= neurons:
            return 1
        else:
            low = k
    last = high
    while high - low > max(1, high // _TOLERANCE):  # chunk(low) breaks a limit, chunk(high) fits
        guess = math.ceil(last * overshoot(chunk(last)))  # where the last split says the limit is
        if not low < guess < high:
            guess = (low + high) // 2
        if overshoot(chunk(guess)) <= 1:
            high = guess
        else:
            low = guess
        last = guess if last != guess else (low + high) // 2
    return chunk(high)


def _unit_positions(network: Network, producer: int, costs: BlockCosts) -> np.ndarray:
    """Units of ``costs``' input pairs in the producer's on-chip order."""
    if costs.population or costs.unit_size > 1:
        return costs.pair_units  # pixels: already in H, W order
    order = chip_order(network.shapes[producer])
    if order is None:
        return costs.pair_units
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return position[costs.pair_units]


def _producer_fanout(network: Network, producer: int, costs: BlockCosts) -> tuple[np.ndarray, int, bool]:
    """(output-axon slots per unit or per compartment, unit size, per-unit?) a producer owes."""
    size = int(np.prod(network.shapes[producer]))
    units = _unit_positions(network, producer, costs)
    counts = np.bincount(units, weights=costs.pair_axons, minlength=size // costs.unit_size)
    if costs.population:
        return counts, costs.unit_size, True
    if costs.unit_size > 1:  # discrete axons counted per pixel: spread over its channels
        counts = np.repeat(counts / costs.unit_size, costs.unit_size)
    return counts, 1, False


Fan = tuple[np.ndarray, int, bool]


def _record_fan(network: Network, fanouts: dict[int, dict[int, Fan]], producer: int, consumer: int,
                fan: Fan) -> None:
    """Store what ``consumer`` costs ``producer`` in output axons (``fanouts[producer][consumer]``);
    a concat producer passes each of its sources its share (its channels, in its own on-chip order)."""
    layer = network.layers[producer]
    if not isinstance(layer, ConcatLayer):
        fanouts.setdefault(producer, {})[consumer] = fan
        return
    counts, unit, per_unit = fan
    shape, start = network.shapes[producer], 0
    for source in network.sources_of(producer):
        # a flatten source: its producer's spikes
        spiking = network.producer_of(source) if network.layers[source].passthrough else source
        width = network.shapes[source][0]
        if per_unit:  # one population axon per pixel and consumer core: each source's pixel sends its own
            part: Fan = (counts, width, True)
        elif len(shape) == 3:  # per compartment, H, W, C order: the source's channels of every pixel
            part = (counts.reshape(-1, shape[0])[:, start:start + width].ravel(), 1, False)
        else:  # vectors: the source's slice, in the spiking layer's on-chip order
            piece = counts[start:start + width]
            order = chip_order(network.shapes[spiking])  # type: ignore[index]
            part = (piece if order is None else piece[order], 1, False)
        _record_fan(network, fanouts, spiking, consumer, part)  # type: ignore[arg-type]
        start += width


def _out_axons(starts: np.ndarray, stops: np.ndarray, fans: dict[int, Fan] | None) -> np.ndarray:
    """Output-axon slots per block from its consumers' per-unit counts (prefix sums)."""
    total = np.zeros_like(starts)
    for fan in (fans or {}).values():
        total = total + _out_axons_of(starts, stops, fan)
    return total


def _out_axons_of(starts: np.ndarray, stops: np.ndarray, fan: Fan) -> np.ndarray:
    counts, unit, per_unit = fan
    prefix = np.concatenate(([0.0], np.cumsum(counts)))
    if per_unit:  # a block touching any channel of a pixel sends that pixel's population axons
        return np.rint(prefix[(stops - 1) // unit + 1] - prefix[starts // unit]).astype(np.int64)
    return np.ceil(prefix[stops] - prefix[starts] - 1e-9).astype(np.int64)


def _place(network: Network, chip: "Chip", index: int, weight_bits: int | None,
           fan: dict[int, Fan] | None) -> tuple:
    """Split layer ``index`` into the fewest fitting blocks, given its consumer's fan-out."""
    layer = network.layers[index]
    coster, required, delay = make_coster(
        layer, network.input_shape_of(index), network.shapes[index], chip, weight_bits)
    cache: dict[int, tuple[BlockCosts, np.ndarray, list, float]] = {}
    producer = network.producer_of(index) if layer.synaptic else None
    # population axons come from each source of a concat: one per source pixel, not per joined pixel
    joined = len(network.sources_of(producer)) if producer is not None and \
        isinstance(network.layers[producer], ConcatLayer) else 1

    def evaluate(chunk: int) -> tuple[BlockCosts, np.ndarray, list, float]:
        if chunk not in cache:
            costs = coster.evaluate(chunk)
            if joined > 1 and costs.population:
                costs = replace(costs, in_axons=costs.in_axons * joined)
            out = _out_axons(costs.starts, costs.stops, fan)
            if costs.own_out_axons is not None:  # a recurrent layer's axons back into its own blocks
                out = out + costs.own_out_axons
            usage = _usage(costs, out, chip)
            broken = [(name, actual, limit) for name, actual, limit in usage if actual > limit]
            cache[chunk] = (costs, out, broken, max(actual / limit for _, actual, limit in usage))
        return cache[chunk]

    chosen = fewest_blocks(coster.neurons, chip.max_neurons_per_core, lambda c: evaluate(c)[3],
                           coster.ideal_chunk())
    costs, out, broken, _ = evaluate(chosen)
    costs = coster.with_pairs(costs)
    units = producer_fan = None
    if costs.pair_blocks is not None and producer is not None:
        producer_fan = _producer_fanout(network, producer, costs)
        units = _unit_positions(network, producer, costs)
    return (costs, out, tuple(broken), required, delay, coster.fmt.weight_bits, producer, units), producer_fan


def map_network(network: Network, chip: "Chip", weight_bits: Mapping[int, int] | None = None) -> Allocation:
    """Place ``network`` on cores of ``chip`` (greedy, see the module docstring).

    ``weight_bits`` maps layer index to a weight width that overrides the layer's own
    (for "what if layer i were quantized to b bits"). Time and memory grow linearly
    with the layers, neurons and input axons.
    """
    overrides = dict(weight_bits or {})
    hosts = compartment_layers(network)
    fanouts: dict[int, dict[int, Fan]] = {}
    placed: dict[int, tuple] = {}
    for index in reversed(hosts):
        placed[index], producer_fan = _place(network, chip, index, overrides.get(index), fanouts.get(index))
        if producer_fan is not None:
            _record_fan(network, fanouts, placed[index][6], index, producer_fan)

    layers = []
    core = 0
    for index in hosts:
        costs, out, broken, required, delay, stored_bits, producer, units = placed[index]
        encodings = costs.encodings
        memory = costs.memory_bits
        blocks = []
        for b in range(len(costs.starts)):
            blocks.append(CoreBlock(
                core=core, neuron_start=int(costs.starts[b]), neuron_stop=int(costs.stops[b]),
                in_axons=int(costs.in_axons[b]), out_axons=int(out[b]), synapses=int(costs.synapses[b]),
                synapse_bits=int(memory[b]) if costs.in_axons[b] else 0, encoding=encodings[b],
            ))
            core += 1
        layer = network.layers[index]
        inputs = None
        if units is not None:
            inputs = AxonPairs(costs.pair_blocks, units, costs.pair_share, costs.unit_size)
        recurrent_inputs = None
        if costs.recurrent_blocks is not None:  # own neurons of a 1-D layer: on-chip order = index order
            recurrent_inputs = AxonPairs(costs.recurrent_blocks, costs.recurrent_units,
                                         np.ones(len(costs.recurrent_blocks)), 1)
        layers.append(LayerAllocation(
            index=index, kind=layer.kind, name=layer.name, neurons=int(np.prod(network.shapes[index])),
            blocks=tuple(blocks), weight_bits=stored_bits if layer.synaptic else 0,
            required_weight_bits=required, delay_bits=delay, over_limits=broken, producer=producer,
            inputs=inputs, fanout_synapses=costs.fanout_synapses, recurrent_fanout=costs.recurrent_fanout,
            recurrent_inputs=recurrent_inputs,
        ))
    return Allocation(chip=chip.name, layers=tuple(layers), cores_per_chip=chip.cores_per_chip, fanouts=fanouts)


def remap_cores(network: Network, chip: "Chip", base: Allocation, indices: list[int],
                weight_bits: Mapping[int, int] | None = None) -> tuple[int, dict[int, tuple[int, tuple]]]:
    """Total cores, and (cores, broken limits) per changed layer, when only ``indices`` change.

    The other layers keep their placement in ``base`` (an allocation of a network
    with the same layer count); the changed layers are re-split with their consumers'
    fan-out (from ``base`` unless the consumer is re-split too). Used by the fit
    report's fixes: a trial costs the changed layers, not the whole network.
    """
    overrides = dict(weight_bits or {})
    fanouts = {producer: dict(fans) for producer, fans in base.fanouts.items()}
    cores = base.cores
    changed: dict[int, tuple[int, tuple]] = {}
    for index in sorted(indices, reverse=True):
        placed, producer_fan = _place(network, chip, index, overrides.get(index), fanouts.get(index))
        if producer_fan is not None:
            _record_fan(network, fanouts, placed[6], index, producer_fan)
        changed[index] = (len(placed[0].starts), placed[2])
        cores += changed[index][0] - base.layer(index).cores
    return cores, changed
