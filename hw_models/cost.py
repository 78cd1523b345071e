"""Per-layer hardware costs: neurons, input axons, synapse memory, fan-out, SynOps.

A *coster* describes one layer that holds compartments on the chip (the input layer
when it has neurons, and every dense, conv or pool layer) and evaluates a split of the
layer's neurons into core blocks of contiguous neurons in on-chip order (image layers
``H, W, C``: a pixel's channels together, see :func:`chip_order`). For each block it
returns

- ``in_axons``: input axons into the block: one per presynaptic neuron with a non-zero
  synapse into it (dense, grouped conv, pool), one per input pixel with a target in it
  (shared-weight conv: population axons, the channel carried in the spike);
- ``synapses``: real (non-zero) synapses into the block;
- synapse memory in bits, with nengo-loihi's ``SynapseConfig.bits_per_axon``: entries
  are packed in groups of ``synapses_per_group``, each group costing
  ``n * bits_per_synapse + group_header_bits`` rounded up to whole words:

  .. math:: bits(n) = \\sum_{groups} \\lceil (n_g b + h) / w \\rceil \\, w

  with :math:`b` = weight + delay + tag bits (+ index bits where stored). Dense layers:
  *dense* encoding (each axon one entry per compartment of the block) or *sparse*
  (each axon its non-zero weights, nengo-loihi's sparse-matrix format), the cheaper.
  Shared-weight convs: one weight list (``C_in x targets`` entries with index bits)
  per distinct pattern in the block, as nengo-loihi's ``conv2d_loihi_weights`` and
  ``set_new_synapse_weights`` build them (checked against nengo-loihi's own builder in
  ``tests/hw_models/test_nengo_reference.py``).

The input axons are also listed as (block, presynaptic unit) pairs, from which the
mapper counts the producer's output axons and the report the spike messages and mesh
hops. Every count is vectorised and linear in the number of input axons.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from neuroprune.registry import lookup
from neuroprune.ir import (ComplexDenseLayer, ConvLayer, ConvTransposeLayer, DenseLayer, InputLayer, Layer,
                           PoolLayer, RecurrentDenseLayer, UnpoolLayer)

if TYPE_CHECKING:  # pragma: no cover
    from hw_models.chip import Chip
    from neuroprune.ir import Network

__all__ = [
    "BlockCosts",
    "SynapseFormat",
    "required_weight_bits",
    "required_delay_bits",
    "snap_bits",
    "synapse_memory_bits",
    "make_coster",
    "COSTERS",
    "chip_order",
    "neuron_violations",
]

Shape = tuple[int, ...]


# ----------------------------------------------------------------------------- bits
def required_weight_bits(weight: np.ndarray) -> int:
    """Bits that hold the integer weights exactly on Loihi.

    Common trailing zero bits go into the shared weight exponent; the rest need
    ``bit_length(max |w| >> shift)`` magnitude bits when all weights share a sign, and
    two's-complement bits (magnitude + sign) when signs are mixed, as Lava's
    ``optimize_weight_bits`` and nengo-loihi's ``is_mixed`` count them.
    0 when every weight is zero.
    """
    values = np.asarray(weight)
    if values.size == 0:
        return 0
    if values.dtype.kind not in "iu":
        values = values.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if low == 0 and high == 0:
        return 0
    ored = int(np.bitwise_or.reduce(np.abs(values), axis=None))
    shift = (ored & -ored).bit_length() - 1  # common trailing zero bits
    if low < 0 < high:  # mixed signs: two's complement, b bits hold [-2**(b-1), 2**(b-1) - 1]
        return max((high >> shift).bit_length(), ((-low >> shift) - 1).bit_length()) + 1
    return (max(-low, high) >> shift).bit_length()


def required_delay_bits(delay: np.ndarray | None) -> int:
    """Bits that hold the largest synaptic delay (0 without delays)."""
    if delay is None or np.asarray(delay).size == 0:
        return 0
    return int(int(np.asarray(delay).max()).bit_length())


def snap_bits(bits: int, allowed: tuple[int, ...]) -> int | None:
    """Smallest allowed width >= ``bits``; ``None`` when ``bits`` exceeds them all."""
    for width in allowed:
        if width >= bits:
            return width
    return None


def synapse_memory_bits(n_synapses: np.ndarray | int, bits_per_synapse: int, chip: "Chip") -> np.ndarray:
    """Synapse memory (bits) of axons holding ``n_synapses`` entries each (vectorised).

    nengo-loihi's ``SynapseConfig.bits_per_axon``; an axon with 0 entries costs 0.
    """
    n = np.asarray(n_synapses, dtype=np.int64)
    group, word, header = chip.synapses_per_group, chip.synapse_word_bits, chip.synapse_group_header_bits
    full, rest = np.divmod(n, group)
    full_bits = -(-(group * bits_per_synapse + header) // word) * word
    rest_bits = np.where(rest > 0, -(-(rest * bits_per_synapse + header) // word) * word, 0)
    return full * full_bits + rest_bits


@dataclass(frozen=True)
class SynapseFormat:
    """Bits per stored synapse of one layer (weights snapped to the chip's widths)."""

    weight_bits: int
    delay_bits: int
    tag_bits: int

    @property
    def dense_bits(self) -> int:
        """Bits per synapse, dense encoding (no index)."""
        return self.weight_bits + self.delay_bits + self.tag_bits

    def sparse_bits(self, block_neurons: int, chip: "Chip") -> int | None:
        """Bits per synapse, sparse encoding: index bits address a block compartment when
        the chip stores them (``sparse_index_bits``), none in nengo-loihi's format."""
        if not chip.sparse_index_bits:
            return self.dense_bits
        needed = int(np.ceil(np.log2(block_neurons))) if block_neurons > 1 else 0
        index = snap_bits(needed, chip.index_bits)
        return None if index is None else self.dense_bits + index


# ----------------------------------------------------------------------------- costs
@dataclass
class BlockCosts:
    """Costs of one split of a layer into core blocks (arrays have one entry per block).

    Input axons are listed as pairs: ``pair_blocks[i]`` is the block an axon enters and
    ``pair_units[i]`` the presynaptic *unit* it carries: a producer neuron (discrete
    axons, ``unit_size`` 1) or a producer pixel of ``unit_size`` channels (population
    axons of a shared-weight conv: one axon per pixel, the channel carried in the
    spike). Units are numbered in the producer's on-chip order (see
    :func:`chip_order`). ``pair_axons[i]`` is the number of output-axon slots that input
    costs the producer, ``pair_share[i]`` the fraction of the unit's spikes it carries.
    ``fanout_synapses[j]`` counts producer neuron ``j``'s (torch order) non-zero
    outgoing synapses in this layer; ``recurrent_fanout[j]`` the layer's own neuron ``j``'s
    recurrent synapses (recurrent layers), and ``own_out_axons[b]`` the output axons block
    ``b`` sends to the layer's own blocks (one per own neuron and block it reaches).
    The recurrent input axons are listed apart: ``recurrent_blocks[i]`` receives the
    layer's own neuron ``recurrent_units[i]`` (each carries all that neuron's spikes).
    Pair arrays are ``None`` for layers without synapses (recurrent ones for layers
    without recurrent synapses).
    """

    starts: np.ndarray
    stops: np.ndarray
    in_axons: np.ndarray
    synapses: np.ndarray
    dense_bits: np.ndarray
    sparse_bits: np.ndarray
    pair_blocks: np.ndarray | None = None
    pair_units: np.ndarray | None = None
    pair_axons: np.ndarray | None = None
    pair_share: np.ndarray | None = None
    fanout_synapses: np.ndarray | None = None
    unit_size: int = 1
    population: bool = False
    recurrent_fanout: np.ndarray | None = None
    own_out_axons: np.ndarray | None = None
    recurrent_blocks: np.ndarray | None = None
    recurrent_units: np.ndarray | None = None

    @property
    def neurons(self) -> np.ndarray:
        return self.stops - self.starts

    @property
    def memory_bits(self) -> np.ndarray:
        """Synapse memory per block with the cheaper encoding, bits."""
        return np.minimum(self.dense_bits, self.sparse_bits)

    @property
    def encodings(self) -> list[str]:
        if self.population:
            return ["population"] * len(self.starts)
        return ["sparse" if s < d else "dense" for s, d in zip(self.sparse_bits, self.dense_bits)]


_INFEASIBLE = np.iinfo(np.int64).max // 4
_FAR = 1 << 40  # a compartment index beyond any layer: marks a tap that lands nowhere
_BATCH = 1 << 18  # conv (block, pixel) candidates handled at once


def chip_order(shape: Shape) -> np.ndarray | None:
    """On-chip order of a layer's neurons: ``chip[k] = torch[order[k]]``.

    Image layers ``(C, H, W)`` sit pixel by pixel with the channels of a pixel
    contiguous (``H, W, C``), so a core block packs whole pixels across channel
    boundaries and a conv's population axon (one per input pixel) reaches contiguous
    compartments; ``None`` for 1-D layers (the order is the index order).
    """
    if len(shape) != 3:
        return None
    channels, height, width = shape
    return np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).ravel()


def _snap_index_bits(needed: np.ndarray, chip: "Chip") -> np.ndarray:
    """Index widths of the chip holding ``needed`` bits (-1 where none does)."""
    allowed = np.asarray(chip.index_bits)
    position = np.searchsorted(allowed, needed)
    return np.where(position < len(allowed), allowed[np.minimum(position, len(allowed) - 1)], -1)


class Coster:
    """Base: a layer with ``neurons`` compartments split into blocks by a chunk size."""

    def __init__(self, neurons: int, fmt: SynapseFormat, chip: "Chip") -> None:
        self.neurons = neurons
        self.fmt = fmt
        self.chip = chip

    def ranges(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        starts = np.arange(0, self.neurons, chunk, dtype=np.int64)
        return starts, np.minimum(starts + chunk, self.neurons)

    def evaluate(self, chunk: int) -> BlockCosts:  # pragma: no cover - abstract
        raise NotImplementedError

    def ideal_chunk(self) -> int | None:
        """A chunk known to fit the memory and axon limits (fast path), if cheap to tell."""
        return None

    def with_pairs(self, costs: BlockCosts) -> BlockCosts:
        """``costs`` with its input-axon pairs filled in (when listed lazily)."""
        return costs


class InputCoster(Coster):
    """Input layer with neurons: compartments only (its input comes from the host)."""

    def evaluate(self, chunk: int) -> BlockCosts:
        starts, stops = self.ranges(chunk)
        zeros = np.zeros(len(starts), dtype=np.int64)
        return BlockCosts(starts, stops, zeros, zeros, zeros, zeros)


_DERIVED: "weakref.WeakKeyDictionary[Layer, dict]" = weakref.WeakKeyDictionary()


def _cached(layer: Layer, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per layer object (layers are immutable; fixes re-cost them often)."""
    store = _DERIVED.setdefault(layer, {})
    if key not in store:
        store[key] = compute()
    return store[key]


def _minority(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(rows, columns, are-zeros) of the rarer kind of entry: zeros of a mostly dense
    matrix, non-zeros of a sparse one (so a block's counts cost O(rarer entries))."""
    nonzero = weight != 0
    count_zeros = 2 * int(np.count_nonzero(nonzero)) >= nonzero.size
    rows, cols = np.nonzero(~nonzero if count_zeros else nonzero)
    return rows.astype(np.int64), cols.astype(np.int64), count_zeros


class DenseCoster(Coster):
    """Dense layer ``(out, in)``: discrete axons, a block is a range of output neurons.

    Dense encoding: each used axon stores one entry per compartment of the block;
    sparse: each axon stores its non-zero synapses (nengo-loihi's format for sparse
    matrices: no index bits unless the chip file says ``sparse_index_bits = true``).
    """

    def __init__(self, layer: DenseLayer, fmt: SynapseFormat, chip: "Chip",
                 weight: np.ndarray | None = None, copies: int = 1) -> None:
        super().__init__(layer.out_channels, fmt, chip)
        weight = layer.effective_weight if weight is None else weight
        rows, cols, self.count_zeros = _cached(layer, "minority", lambda: _minority(weight))
        self.rows, self.cols, self.inputs = rows, cols, weight.shape[1]
        # ``copies`` weight matrices side by side share each input axon (complex dense: real, imag)
        self.copies, self.axons = copies, self.inputs // copies
        per_column = np.bincount(cols, minlength=self.inputs)
        fanout = (self.neurons - per_column if self.count_zeros else per_column).astype(np.int64)
        self.fanout = fanout.reshape(copies, self.axons).sum(axis=0)
        self.used_inputs = int(np.count_nonzero(self.fanout))
        self._counts: tuple[int, np.ndarray | None] = (0, None)

    def evaluate(self, chunk: int) -> BlockCosts:
        starts, stops = self.ranges(chunk)
        hits = np.bincount((self.rows // chunk) * self.inputs + self.cols,
                           minlength=len(starts) * self.inputs).reshape(len(starts), self.inputs)
        counts = (stops - starts)[:, None] - hits if self.count_zeros else hits  # (blocks, in) synapses
        if self.copies > 1:  # an axon's synapses in every matrix
            counts = counts.reshape(len(starts), self.copies, self.axons).sum(axis=1)
        in_axons = np.count_nonzero(counts, axis=1)
        neurons = stops - starts
        dense = in_axons * synapse_memory_bits(self.copies * neurons, self.fmt.dense_bits, self.chip)
        per_synapse = self.fmt.sparse_bits(int(neurons.max()), self.chip)
        if per_synapse is None:
            sparse = np.full(len(starts), _INFEASIBLE, dtype=np.int64)
        elif self.count_zeros and not len(self.rows):  # no zeros: sparse costs what dense does
            sparse = dense
        else:
            table = synapse_memory_bits(np.arange(int(counts.max(initial=0)) + 1), per_synapse, self.chip)
            sparse = table[counts].sum(axis=1)
        costs = BlockCosts(starts, stops, in_axons.astype(np.int64), counts.sum(axis=1).astype(np.int64),
                           dense.astype(np.int64), sparse.astype(np.int64), fanout_synapses=self.fanout)
        self._counts = (chunk, counts)
        return costs

    def with_pairs(self, costs: BlockCosts) -> BlockCosts:
        """``costs`` with its input-axon pairs (listed only for the chosen split)."""
        chunk = int(costs.stops[0] - costs.starts[0])
        if self._counts[0] != chunk:
            self.evaluate(chunk)
        counts = self._counts[1]
        pair_blocks, pair_units = np.nonzero(counts)
        ones = np.ones(len(pair_blocks), dtype=np.int64)
        return replace(costs, pair_blocks=pair_blocks, pair_units=pair_units.astype(np.int64), pair_axons=ones,
                       pair_share=ones.astype(np.float64))

    def ideal_chunk(self) -> int | None:
        """Largest chunk whose dense encoding fits even if every block used every input."""
        chip = self.chip
        if self.used_inputs > chip.max_in_axons_per_core:
            return None
        chunks = np.arange(1, min(self.neurons, chip.max_neurons_per_core) + 1)
        bits = self.used_inputs * synapse_memory_bits(self.copies * chunks, self.fmt.dense_bits, chip)
        fitting = chunks[bits <= chip.max_synapse_bits_per_core]
        return int(fitting.max()) if fitting.size else None


class ComplexDenseCoster(DenseCoster):
    """Complex dense layer: each input axon carries its spike to a real and an imaginary
    synapse of every target (two weight matrices in the block's synapse memory, one set
    of input axons)."""

    def __init__(self, layer: ComplexDenseLayer, fmt: SynapseFormat, chip: "Chip") -> None:
        super().__init__(layer, fmt, chip, _cached(layer, "all_weights", lambda: layer.all_weights), copies=2)


class RecurrentDenseCoster(DenseCoster):
    """Recurrent dense layer: a dense layer over ``(out, in + out)`` inputs, so the layer's
    own neurons count as input axons of every block they reach (recurrent fan-in) and its
    recurrent synapses share the blocks' synapse memory. The input-axon pairs and fan-out
    handed to the mapper are the feed-forward ones (the producer's); the recurrent axons
    are the layer's own, listed apart (``recurrent_blocks``, ``recurrent_units``)."""

    def __init__(self, layer: RecurrentDenseLayer, fmt: SynapseFormat, chip: "Chip") -> None:
        self.feed_forward = layer.in_features
        super().__init__(layer, fmt, chip, _cached(layer, "all_weights", lambda: layer.all_weights))

    def evaluate(self, chunk: int) -> BlockCosts:
        costs = super().evaluate(chunk)
        reach = np.count_nonzero(self._counts[1][:, self.feed_forward:], axis=0)  # own blocks per own neuron
        prefix = np.concatenate(([0], np.cumsum(reach)))
        return replace(costs, fanout_synapses=self.fanout[:self.feed_forward],
                       recurrent_fanout=self.fanout[self.feed_forward:],
                       own_out_axons=(prefix[costs.stops] - prefix[costs.starts]).astype(np.int64))

    def with_pairs(self, costs: BlockCosts) -> BlockCosts:
        costs = super().with_pairs(costs)
        keep = costs.pair_units < self.feed_forward
        own = ~keep  # own neuron -> own block: the recurrent input axons
        return replace(costs, pair_blocks=costs.pair_blocks[keep], pair_units=costs.pair_units[keep],
                       pair_axons=costs.pair_axons[keep], pair_share=costs.pair_share[keep],
                       recurrent_blocks=costs.pair_blocks[own],
                       recurrent_units=costs.pair_units[own] - self.feed_forward)


def _taps_out(size: int, kernel: int, stride: int, padding: int, dilation: int, out_size: int) -> np.ndarray:
    """``(size, kernel)``: output position input position ``y`` meets through tap ``t`` (-1: none)."""
    positions = np.arange(size)[:, None] + padding - dilation * np.arange(kernel)[None, :]
    out = positions // stride
    return np.where((positions % stride == 0) & (out >= 0) & (out < out_size), out, -1)


def _taps_transposed(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     out_size: int) -> np.ndarray:
    """``(size, kernel)``: output position input position ``y`` reaches through tap ``t`` of a
    transposed convolution, ``y * stride - padding + t * dilation`` (-1: none)."""
    out = np.arange(size)[:, None] * stride - padding + dilation * np.arange(kernel)[None, :]
    return np.where((out >= 0) & (out < out_size), out, -1)


def _classes(taps: np.ndarray) -> np.ndarray:
    """Class id per input position (the bit mask of its valid taps): positions with the
    same valid taps share an id."""
    return ((taps >= 0) << np.arange(taps.shape[1], dtype=np.int64)).sum(axis=1)


class ConvCoster(Coster):
    """Conv layer (torch semantics) with shared weights, as nengo-loihi builds it.

    Compartments sit in ``H, W, C`` order (:func:`chip_order`); a block is any
    contiguous range of them. Every input pixel that reaches a block has one
    *population* axon into it (the input channel travels in the spike as the atom);
    the weights are stored once per pattern: input pixels whose targets in the block
    have the same kernel taps, the same cut at the block's edges and the same
    256-compartment page (the compartment base of an axon is below
    ``compartment_base_limit``) share one list of ``C_in x targets`` weights with
    index bits (nengo-loihi ``conv2d_loihi_weights`` and ``set_new_synapse_weights``).
    Each population axon takes ``population_axon_slots`` output-axon slots at the
    producer. Grouped convs and pools (``groups > 1``) cannot share a weight list
    across channels: they use discrete axons (one per input neuron, its taps stored
    sparse), counted per pixel (estimate where a block cuts a pixel's channels).
    """

    def __init__(self, layer: ConvLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> None:
        super().__init__(int(np.prod(out_shape)), fmt, chip)
        self.out_channels, self.out_rows, self.out_cols = out_shape
        self.in_channels, self.in_rows, self.in_cols = in_shape
        self.groups = layer.groups
        (kernel_rows, kernel_cols), stride, padding, dilation = (
            layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        self.row_taps = self._taps(self.in_rows, kernel_rows, stride[0], padding[0], dilation[0], self.out_rows)
        self.col_taps = self._taps(self.in_cols, kernel_cols, stride[1], padding[1], dilation[1], self.out_cols)
        self.row_class, self.col_class = _classes(self.row_taps), _classes(self.col_taps)
        self.reach_rows = (stride[0], padding[0], dilation[0] * (kernel_rows - 1))
        self.reach_cols = (stride[1], padding[1], dilation[1] * (kernel_cols - 1))
        # per input pixel: first and last target compartment (H, W, C order), taps that land
        valid_r, valid_c = self.row_taps >= 0, self.col_taps >= 0
        top = np.where(valid_r.any(axis=1), np.where(valid_r, self.row_taps, self.out_rows).min(axis=1), -1)
        bottom = np.where(valid_r, self.row_taps, -1).max(axis=1)
        leftmost = np.where(valid_c.any(axis=1), np.where(valid_c, self.col_taps, self.out_cols).min(axis=1), -1)
        rightmost = np.where(valid_c, self.col_taps, -1).max(axis=1)
        lands = (top >= 0)[:, None] & (leftmost >= 0)[None, :]
        channels_out = self.out_channels
        self.first_target = np.where(lands, (top[:, None] * self.out_cols + leftmost[None, :]) * channels_out, -1)
        self.last_target = np.where(
            lands, (bottom[:, None] * self.out_cols + rightmost[None, :]) * channels_out + channels_out - 1, -1)
        self.units = np.outer(valid_r.sum(axis=1), valid_c.sum(axis=1))
        # first compartment of the tap pair (y via row tap, x via col tap) = row part + col part
        self.row_unit = np.where(valid_r, self.row_taps * self.out_cols * channels_out, _FAR)
        self.col_unit = np.where(valid_c, self.col_taps * channels_out, _FAR)
        # without dilation a pixel's output columns are consecutive: one run per window row
        self.col_run = None
        if dilation[1] == 1:
            self.col_run = (np.where(valid_c.any(axis=1), leftmost * channels_out, _FAR),
                            valid_c.sum(axis=1) * channels_out)
        nonzero = layer.effective_weight != 0
        per_in = self.in_channels // layer.groups
        taps = self._tap_counts(nonzero, layer.groups)
        valid_rows = (self.row_taps >= 0).astype(np.float64)
        valid_cols = (self.col_taps >= 0).astype(np.float64)
        self.fanout = np.rint((valid_rows @ taps) @ valid_cols.T).astype(np.int64).ravel()  # (C, H, W)
        self.density = float(nonzero.mean()) if nonzero.size else 0.0
        self.atoms = per_in  # weights per target in a shared list: the input channels of a group

    #: the output position each input position meets through each tap (see :func:`_taps_out`)
    _taps = staticmethod(_taps_out)

    def _tap_counts(self, nonzero: np.ndarray, groups: int) -> np.ndarray:
        """``(in channels, kH, kW)``: non-zero weights each input channel has at each tap."""
        per_out, per_in = nonzero.shape[0] // groups, nonzero.shape[1]  # weight (out, in / groups, kH, kW)
        taps = np.zeros((self.in_channels, *nonzero.shape[2:]))
        for group in range(groups):
            taps[group * per_in:(group + 1) * per_in] = nonzero[group * per_out:(group + 1) * per_out].sum(axis=0)
        return taps

    @staticmethod
    def _reaching(first: np.ndarray, last: np.ndarray, reach: tuple[int, int, int],
                  size: int) -> tuple[np.ndarray, np.ndarray]:
        """The input positions ``[low, high]`` that can reach output positions ``[first, last]``."""
        stride, pad, span = reach
        return np.clip(first * stride - pad, 0, size), np.clip(last * stride - pad + span, -1, size - 1)

    def _pairs(self, starts: np.ndarray, stops: np.ndarray) -> dict[str, np.ndarray]:
        """Every (block, input pixel) pair whose pixel reaches the block, with its targets.

        Candidates are the input rows (and, for blocks inside one output row, the input
        columns) that can reach the block's output rows. A pixel whose whole window
        of targets lies in the block is settled in O(1) from its first and last
        target; a pixel cut by a block edge is resolved row by row of its window (a
        contiguous run of compartments per row without dilation, else tap by tap).
        Blocks are taken in batches of about ``_BATCH`` candidates (memory stays small).
        """
        channels, out_cols = self.out_channels, self.out_cols
        first_row = (starts // channels) // out_cols
        last_row = ((stops - 1) // channels) // out_cols
        low, high = self._reaching(first_row, last_row, self.reach_rows, self.in_rows)
        one_row = first_row == last_row
        first_col = np.where(one_row, (starts // channels) % out_cols, 0)
        last_col = np.where(one_row, ((stops - 1) // channels) % out_cols, out_cols - 1)
        left, right = self._reaching(first_col, last_col, self.reach_cols, self.in_cols)
        width = np.maximum(right - left + 1, 0)
        per_block = np.maximum(high - low + 1, 0) * width
        ends = np.cumsum(per_block)
        edges = np.searchsorted(ends, np.arange(_BATCH, int(ends[-1]) + _BATCH, _BATCH), side="right") + 1
        bounds = np.unique(np.concatenate(([0], np.minimum(edges, len(starts)))))
        parts = [self._batch(np.arange(a, b), starts, stops, low, left, width, per_block)
                 for a, b in zip(bounds[:-1], bounds[1:])]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _batch(self, blocks: np.ndarray, starts: np.ndarray, stops: np.ndarray, low: np.ndarray,
               left: np.ndarray, width: np.ndarray, per_block: np.ndarray) -> dict[str, np.ndarray]:
        """The reaching pairs of ``blocks`` (see :meth:`_pairs`)."""
        channels = self.out_channels
        counts = per_block[blocks]
        block = np.repeat(blocks, counts)
        local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        block_width = width[block]
        y = low[block] + local // block_width
        x = left[block] + local % block_width
        first = self.first_target[y, x]
        last = self.last_target[y, x]
        s, e = starts[block], stops[block]
        interior = (first >= s) & (last < e)
        cut = ~interior & (first >= 0) & (first < e) & (last >= s)
        units = self.units[y, x]
        kept_from = np.zeros(len(block), dtype=np.int64)
        kept_to = np.where(interior, units * channels, 0)
        if cut.any():
            if self.col_run is not None:  # per window row: one run of compartments
                sc, ec = s[cut][:, None], e[cut][:, None]
                lo = self.row_unit[y[cut]] + self.col_run[0][x[cut]][:, None]        # (P, kH)
                length = self.col_run[1][x[cut]][:, None]
                axes: tuple[int, ...] = (1,)
            else:
                sc, ec = s[cut][:, None, None], e[cut][:, None, None]
                lo = self.row_unit[y[cut]][:, :, None] + self.col_unit[x[cut]][:, None, :]  # (P, kH, kW)
                length, axes = channels, (1, 2)
            kept_from[cut] = np.minimum(np.maximum(sc - lo, 0), length).sum(axis=axes)
            kept_to[cut] = np.minimum(np.maximum(ec - lo, 0), length).sum(axis=axes)
            first[cut] = np.where(lo + length > sc, np.maximum(lo, sc), _FAR).min(axis=axes)
            last[cut] = np.where(lo < ec, np.minimum(lo + length, ec) - 1, -1).max(axis=axes)
        keep = kept_to > kept_from
        block, y, x = block[keep], y[keep], x[keep]
        return dict(block=block, pixel=y * self.in_cols + x, units=units[keep], row_class=self.row_class[y],
                    col_class=self.col_class[x], kept_from=kept_from[keep], kept_to=kept_to[keep],
                    first=first[keep] - starts[block], last=last[keep] - starts[block])

    def evaluate(self, chunk: int) -> BlockCosts:
        starts, stops = self.ranges(chunk)
        pairs = self._pairs(starts, stops)
        block, kept = pairs["block"], pairs["kept_to"] - pairs["kept_from"]
        n_blocks = len(starts)
        base = self.chip.compartment_base_limit
        if self.groups == 1:
            return self._population(starts, stops, pairs, kept, base)
        # discrete axons (grouped conv / pool): channels of the pixel with targets in the block
        axons = np.clip(-(-kept // np.maximum(pairs["units"], 1)), 1, self.in_channels)
        per_axon = -(-kept * self.atoms // axons)
        per_synapse = self.fmt.sparse_bits(int((stops - starts).max()), self.chip)
        bits = axons * synapse_memory_bits(per_axon, per_synapse if per_synapse is not None else 0, self.chip)
        memory = np.bincount(block, weights=bits, minlength=n_blocks).astype(np.int64)
        if per_synapse is None:
            memory[:] = _INFEASIBLE
        in_axons = np.bincount(block, weights=axons, minlength=n_blocks).astype(np.int64)
        synapses = np.rint(np.bincount(block, weights=kept * self.atoms * self.density, minlength=n_blocks))
        no_dense = np.full(n_blocks, _INFEASIBLE, dtype=np.int64)  # taps are stored sparse only
        return BlockCosts(starts, stops, in_axons, synapses.astype(np.int64), no_dense, memory, block,
                          pairs["pixel"], axons, axons / self.in_channels, self.fanout, self.in_channels)

    def _population(self, starts: np.ndarray, stops: np.ndarray, pairs: dict[str, np.ndarray],
                    kept: np.ndarray, base: int) -> BlockCosts:
        block, n_blocks = pairs["block"], len(starts)
        page = pairs["first"] // base
        index = pairs["last"] - pairs["first"] % base              # largest index in the weight list
        targets = self.row_taps.shape[1] * self.col_taps.shape[1] * self.out_channels + 1
        pages = int(page.max(initial=0)) + 1
        classes = 1 << self.col_taps.shape[1]
        key = pairs["row_class"] * classes + pairs["col_class"]
        key = ((key * targets + pairs["kept_from"]) * targets + pairs["kept_to"]) * pages + page
        order = np.lexsort((key, block))
        sorted_block, sorted_key = block[order], key[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (np.diff(sorted_block) != 0) | (np.diff(sorted_key) != 0)
        pattern_block, pattern_size = sorted_block[new], kept[order][new] * self.atoms
        largest = np.zeros(n_blocks, dtype=np.int64)
        np.maximum.at(largest, block, index)
        index_bits = _snap_index_bits(np.ceil(np.log2(largest + 1)).astype(np.int64), self.chip)
        per_weight = self.fmt.dense_bits + index_bits[pattern_block]
        bits = synapse_memory_bits(pattern_size, per_weight, self.chip)
        memory = np.bincount(pattern_block, weights=bits, minlength=n_blocks).astype(np.int64)
        memory[index_bits < 0] = _INFEASIBLE
        in_axons = np.bincount(block, minlength=n_blocks).astype(np.int64)
        synapses = np.rint(np.bincount(block, weights=kept * self.atoms * self.density, minlength=n_blocks))
        slots = np.full(len(block), self.chip.population_axon_slots, dtype=np.int64)
        return BlockCosts(starts, stops, in_axons, synapses.astype(np.int64), memory, memory, block,
                          pairs["pixel"], slots, np.ones(len(block)), self.fanout, self.in_channels,
                          population=True)


class ConvTransposeCoster(ConvCoster):
    """Transposed conv (and unpool, its depthwise form) with shared weights, mapped as a conv
    is: input pixel ``y`` reaches outputs ``y * stride - padding + t * dilation`` through
    tap ``t``; a population axon per input pixel and block it reaches (groups 1), weight
    lists shared by the pixels with the same targets pattern; grouped ones (unpool) use
    discrete axons as a pool does. Weights ``(in, out / groups, kH, kW)``."""

    _taps = staticmethod(_taps_transposed)

    def _tap_counts(self, nonzero: np.ndarray, groups: int) -> np.ndarray:
        return nonzero.sum(axis=1).astype(np.float64)  # each input channel over its group's outputs

    @staticmethod
    def _reaching(first: np.ndarray, last: np.ndarray, reach: tuple[int, int, int],
                  size: int) -> tuple[np.ndarray, np.ndarray]:
        stride, pad, span = reach  # y * stride - pad + t * dilation in [first, last] for a tap t
        return np.clip(-((span - pad - first) // stride), 0, size), np.clip((last + pad) // stride, -1, size - 1)


def _no_synapse_bits(layer: InputLayer) -> tuple[int, int]:
    return 0, 0


def _weight_synapse_bits(layer: DenseLayer | ConvLayer) -> tuple[int, int]:
    required = layer.weight_bits if layer.weight_bits is not None else _cached(
        layer, "weight_bits", lambda: required_weight_bits(layer.effective_weight))
    return required, required_delay_bits(layer.delay)


def _two_matrix_synapse_bits(layer: RecurrentDenseLayer | ComplexDenseLayer) -> tuple[int, int]:
    """One weight format for both matrices (lava-dl's netx quantizes a recurrent layer's
    together; a complex layer's real and imaginary parts are charged at the wider)."""
    required = layer.weight_bits if layer.weight_bits is not None else _cached(
        layer, "weight_bits", lambda: required_weight_bits(layer.all_weights))
    return required, required_delay_bits(layer.delay)


def _pool_synapse_bits(layer: PoolLayer) -> tuple[int, int]:
    return required_weight_bits(np.array([layer.weight])), 0


#: (required weight bits, required delay bits) of a layer's synapses, per kind
SYNAPSE_BITS: dict[str, Callable[[Any], tuple[int, int]]] = {
    "input": _no_synapse_bits,
    "dense": _weight_synapse_bits,
    "dense_rec": _two_matrix_synapse_bits,
    "dense_comp": _two_matrix_synapse_bits,
    "conv": _weight_synapse_bits,
    "convT": _weight_synapse_bits,
    "pool": _pool_synapse_bits,
    "unpool": _pool_synapse_bits,
}


def _synapse_format(layer: Layer, chip: "Chip", weight_bits: int | None) -> tuple[SynapseFormat, int, int]:
    """(format, required weight bits, required delay bits) of a layer."""
    required, delay = lookup(SYNAPSE_BITS, layer.kind, "synapse format", f"layer {layer.name!r}")(layer)
    if weight_bits is not None:
        required = weight_bits
    snapped = snap_bits(required, chip.weight_bits) if required > 0 else 0
    stored = chip.max_weight_bits if snapped is None else snapped
    return SynapseFormat(weight_bits=stored, delay_bits=delay, tag_bits=chip.tag_bits), required, delay


def _input_coster(layer: InputLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                  chip: "Chip") -> Coster:
    return InputCoster(int(np.prod(out_shape)), fmt, chip)


def _dense_coster(layer: DenseLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                  chip: "Chip") -> Coster:
    return DenseCoster(layer, fmt, chip)


def _dense_rec_coster(layer: RecurrentDenseLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                      chip: "Chip") -> Coster:
    return RecurrentDenseCoster(layer, fmt, chip)


def _dense_comp_coster(layer: ComplexDenseLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                       chip: "Chip") -> Coster:
    return ComplexDenseCoster(layer, fmt, chip)


def _conv_coster(layer: ConvLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> Coster:
    return ConvCoster(layer, in_shape, out_shape, fmt, chip)


def _pool_coster(layer: PoolLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> Coster:
    return ConvCoster(layer.as_conv(in_shape[0]), in_shape, out_shape, fmt, chip)


def _conv_transpose_coster(layer: ConvTransposeLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                           chip: "Chip") -> Coster:
    return ConvTransposeCoster(layer, in_shape, out_shape, fmt, chip)  # type: ignore[arg-type]


def _unpool_coster(layer: UnpoolLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                   chip: "Chip") -> Coster:
    return ConvTransposeCoster(layer.as_conv_transpose(in_shape[0]), in_shape, out_shape, fmt,  # type: ignore[arg-type]
                               chip)


#: the cost model of each kind that holds compartments (flatten is a pass-through, concat joins
#: its sources' spikes: no cost of their own)
COSTERS: dict[str, Callable[..., Coster]] = {
    "input": _input_coster,
    "dense": _dense_coster,
    "dense_rec": _dense_rec_coster,
    "dense_comp": _dense_comp_coster,
    "conv": _conv_coster,
    "convT": _conv_transpose_coster,
    "pool": _pool_coster,
    "unpool": _unpool_coster,
}


def make_coster(layer: Layer, in_shape: Shape, out_shape: Shape, chip: "Chip",
                weight_bits: int | None = None) -> tuple[Coster, int, int]:
    """The coster of a layer with compartments, plus its required weight and delay bits.

    ``weight_bits`` overrides the layer's width (to ask "what if quantized to b bits").
    """
    factory = lookup(COSTERS, layer.kind, "hardware cost model", f"layer {layer.name!r}")
    fmt, required, delay = _synapse_format(layer, chip, weight_bits)
    return factory(layer, in_shape, out_shape, fmt, chip), required, delay


# ----------------------------------------------------------------------------- neuron features
def neuron_violations(network: "Network", chip: "Chip") -> list[tuple[int, str, str]]:
    """(layer, limit, fix) for every layer whose neurons need a feature ``chip`` lacks:
    graded spikes (``graded_spikes``: sigma-delta neurons, ``gradedSpike``) or a neuron
    model other than the CUBA compartment (``programmable_neurons``). One entry per layer,
    the graded-spike one first."""
    found = []
    for index, layer in enumerate(network.layers):
        neuron = getattr(layer, "neuron", None)
        if neuron is None:
            continue
        if neuron.sends_graded and not chip.graded_spikes:
            found.append((index, "graded_spikes",
                          f"{chip.name} sends binary spikes only; run {neuron.kind} neurons with graded spikes on a "
                          "chip with graded spikes (--chip loihi2)"))
        elif not neuron.is_lif and not chip.programmable_neurons:
            found.append((index, "programmable_neurons",
                          f"{chip.name} runs CUBA neurons only; run {neuron.kind} neurons on a chip with "
                          "programmable neurons (--chip loihi2)"))
    return found
