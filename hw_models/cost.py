"""Per-layer hardware costs: neurons, input axons, synapse memory, fan-out, SynOps.

A *coster* describes one layer that holds compartments on the chip (the input layer
when it has neurons, and every dense, conv or pool layer) and evaluates a split of the
layer's neurons into core blocks of contiguous neuron indices (torch ``C, H, W``
order). For each block it returns

- ``in_axons``: presynaptic neurons with at least one non-zero synapse into the block
  (one input axon each on that core);
- ``synapses``: real synapses into the block (conv: kernel taps that land inside the
  input, after stride, padding, dilation and groups; zeros never count);
- synapse memory in bits for two encodings (nengo-loihi's
  ``SynapseConfig.bits_per_axon``): *dense*, each used axon stores one entry per
  compartment of the block; *sparse* (pruned), each axon stores its non-zero synapses
  with an index. Per axon, entries are packed in groups of ``synapses_per_group``, each
  group costing ``n * bits_per_synapse + group_header_bits`` rounded up to whole words:

  .. math:: bits(n) = \\sum_{groups} \\lceil (n_g b + h) / w \\rceil \\, w

  with :math:`b` = weight + delay + tag bits (+ index bits when sparse).

Conv fan-in and fan-out are counted exactly and vectorised: for a block of output
channels and rows, the number of synapses from input ``(c, y, x)`` is
``V_y^T K_c V_x`` where ``K_c[ky, kx]`` counts the block's non-zero kernel taps on
input channel ``c`` and ``V_y[ky, y]`` (``V_x[kx, x]``) is 1 when input row ``y``
meets an output row of the block through tap ``ky``. Conv weights are costed
expanded (one stored synapse per connection), an upper bound: Loihi's shared-weight
(population) conv encoding can store less and is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, InputLayer, Layer, PoolLayer
from neuroprune.validate import MAX_WORK_ELEMENTS

if TYPE_CHECKING:  # pragma: no cover
    from hw_models.chip import Chip

__all__ = [
    "BlockCosts",
    "SynapseFormat",
    "required_weight_bits",
    "required_delay_bits",
    "snap_bits",
    "synapse_memory_bits",
    "make_coster",
    "COSTERS",
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
        """Bits per synapse, sparse encoding: index bits address a block compartment."""
        needed = int(np.ceil(np.log2(block_neurons))) if block_neurons > 1 else 0
        index = snap_bits(needed, chip.index_bits)
        return None if index is None else self.dense_bits + index


# ----------------------------------------------------------------------------- costs
@dataclass
class BlockCosts:
    """Costs of one split of a layer into core blocks (arrays have one entry per block).

    ``reach[b, j]`` is True when presynaptic neuron ``j`` has a synapse into block
    ``b``; ``fanout_synapses[j]`` counts presynaptic neuron ``j``'s non-zero outgoing
    synapses in this layer. Both are ``None`` for layers without synapses.
    """

    starts: np.ndarray
    stops: np.ndarray
    in_axons: np.ndarray
    synapses: np.ndarray
    dense_bits: np.ndarray
    sparse_bits: np.ndarray
    reach: np.ndarray | None
    fanout_synapses: np.ndarray | None

    @property
    def neurons(self) -> np.ndarray:
        return self.stops - self.starts

    @property
    def memory_bits(self) -> np.ndarray:
        """Synapse memory per block with the cheaper encoding, bits."""
        return np.minimum(self.dense_bits, self.sparse_bits)

    @property
    def encodings(self) -> list[str]:
        return ["sparse" if s < d else "dense" for s, d in zip(self.sparse_bits, self.dense_bits)]


def _block_memory(counts: np.ndarray, in_axons: np.ndarray, neurons: np.ndarray,
                  fmt: SynapseFormat, chip: "Chip") -> tuple[np.ndarray, np.ndarray]:
    """Dense and sparse memory (bits) per block from counts (blocks x presynaptic)."""
    dense = in_axons * synapse_memory_bits(neurons, fmt.dense_bits, chip)
    sparse_per_synapse = fmt.sparse_bits(int(neurons.max()), chip)
    if sparse_per_synapse is None:
        sparse = np.full(len(neurons), np.iinfo(np.int64).max // 4, dtype=np.int64)
    else:
        table = synapse_memory_bits(np.arange(int(counts.max(initial=0)) + 1), sparse_per_synapse, chip)
        sparse = table[counts].sum(axis=1)
    return dense.astype(np.int64), sparse.astype(np.int64)


class Coster:
    """Base: a layer with ``neurons`` compartments split into blocks by a chunk size."""

    def __init__(self, neurons: int, fmt: SynapseFormat, chip: "Chip") -> None:
        self.neurons = neurons
        self.fmt = fmt
        self.chip = chip

    def candidates(self) -> list[int]:
        """Chunk sizes to try, ascending (a chunk is neurons per block by default)."""
        top = min(self.neurons, self.chip.max_neurons_per_core)
        return list(range(1, top + 1))

    def ranges(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        starts = np.arange(0, self.neurons, chunk, dtype=np.int64)
        return starts, np.minimum(starts + chunk, self.neurons)

    def evaluate(self, chunk: int) -> BlockCosts:  # pragma: no cover - abstract
        raise NotImplementedError

    def ideal_chunk(self) -> int | None:
        """A chunk known to fit the memory and axon limits (fast path), if cheap to tell."""
        return None


class InputCoster(Coster):
    """Input layer with neurons: compartments only (its input comes from the host)."""

    def evaluate(self, chunk: int) -> BlockCosts:
        starts, stops = self.ranges(chunk)
        zeros = np.zeros(len(starts), dtype=np.int64)
        return BlockCosts(starts, stops, zeros, zeros, zeros, zeros, None, None)


class DenseCoster(Coster):
    """Dense layer ``(out, in)``: a block is a range of output neurons."""

    def __init__(self, layer: DenseLayer, fmt: SynapseFormat, chip: "Chip") -> None:
        super().__init__(layer.out_channels, fmt, chip)
        self.nonzero = (layer.effective_weight != 0).astype(np.float32)
        self.fanout = self.nonzero.sum(axis=0).astype(np.int64)
        self.used_inputs = int(np.count_nonzero(self.fanout))

    def evaluate(self, chunk: int) -> BlockCosts:
        starts, stops = self.ranges(chunk)
        rows = np.arange(self.neurons)
        membership = ((rows >= starts[:, None]) & (rows < stops[:, None])).astype(np.float32)
        counts = np.rint(membership @ self.nonzero).astype(np.int64)  # (blocks, in)
        reach = counts > 0
        in_axons = reach.sum(axis=1)
        dense, sparse = _block_memory(counts, in_axons, stops - starts, self.fmt, self.chip)
        return BlockCosts(starts, stops, in_axons, counts.sum(axis=1), dense, sparse, reach, self.fanout)

    def ideal_chunk(self) -> int | None:
        """Largest chunk whose dense encoding fits even if every block used every input."""
        chip = self.chip
        if self.used_inputs > chip.max_in_axons_per_core:
            return None
        chunks = np.array(self.candidates())
        bits = self.used_inputs * synapse_memory_bits(chunks, self.fmt.dense_bits, chip)
        fitting = chunks[bits <= chip.max_synapse_bits_per_core]
        return int(fitting.max()) if fitting.size else None


class ConvCoster(Coster):
    """Conv layer (torch semantics). A chunk is output rows per block: below the map
    height a block is a slab of rows of one channel, above it whole channels
    (``chunk = k * H_out`` for ``k`` channels)."""

    def __init__(self, layer: ConvLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> None:
        super().__init__(int(np.prod(out_shape)), fmt, chip)
        self.out_channels, self.out_rows, self.out_cols = out_shape
        in_channels, self.in_rows, self.in_cols = in_shape
        nonzero = (layer.effective_weight != 0).astype(np.float32)
        per_group_out = layer.out_channels // layer.groups
        per_group_in = in_channels // layer.groups
        kernel_rows, kernel_cols = layer.kernel_size
        full = np.zeros((layer.out_channels, in_channels, kernel_rows, kernel_cols), dtype=np.float32)
        for group in range(layer.groups):
            outs = slice(group * per_group_out, (group + 1) * per_group_out)
            ins = slice(group * per_group_in, (group + 1) * per_group_in)
            full[outs, ins] = nonzero[outs]
        self.taps = full  # (out, in, kH, kW): 1 where a non-zero weight connects them
        self.layer = layer
        self.v_cols = self._valid(self.in_cols, kernel_cols, layer.stride[1], layer.padding[1],
                                  layer.dilation[1], 0, self.out_cols)

    @staticmethod
    def _valid(size: int, kernel: int, stride: int, padding: int, dilation: int,
               first: int, stop: int) -> np.ndarray:
        """``V[k, y] = 1`` when input position ``y`` meets an output in [first, stop) via tap k."""
        positions = np.arange(size)[None, :] + padding - dilation * np.arange(kernel)[:, None]
        out = positions // stride
        return ((positions % stride == 0) & (out >= first) & (out < stop)).astype(np.float32)

    def candidates(self) -> list[int]:
        limit = self.chip.max_neurons_per_core
        rows = [r for r in range(1, self.out_rows) if r * self.out_cols <= limit]
        per_map = self.out_rows * self.out_cols
        rows += [k * self.out_rows for k in range(1, self.out_channels + 1) if k * per_map <= limit]
        return rows or [1]

    def _blocks(self, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(starts, stops, kernel counts per block, V_y per block or shared)."""
        per_map = self.out_rows * self.out_cols
        layer = self.layer
        if chunk >= self.out_rows:
            channels = chunk // self.out_rows
            first = np.arange(0, self.out_channels, channels)
            taps = np.add.reduceat(self.taps, first, axis=0)
            v_rows = self._valid(self.in_rows, layer.kernel_size[0], layer.stride[0], layer.padding[0],
                                 layer.dilation[0], 0, self.out_rows)[None]
            starts = first * per_map
            stops = np.minimum(first + channels, self.out_channels) * per_map
            return starts, stops, taps, v_rows
        slab_first = np.arange(0, self.out_rows, chunk)
        slab_stop = np.minimum(slab_first + chunk, self.out_rows)
        v_slabs = np.stack([
            self._valid(self.in_rows, layer.kernel_size[0], layer.stride[0], layer.padding[0],
                        layer.dilation[0], a, b)
            for a, b in zip(slab_first, slab_stop)
        ])
        n_slabs = len(slab_first)
        taps = np.repeat(self.taps, n_slabs, axis=0)
        v_rows = np.tile(v_slabs, (self.out_channels, 1, 1))
        base = np.repeat(np.arange(self.out_channels) * per_map, n_slabs)
        starts = base + np.tile(slab_first * self.out_cols, self.out_channels)
        stops = base + np.tile(slab_stop * self.out_cols, self.out_channels)
        return starts, stops, taps, v_rows

    def evaluate(self, chunk: int) -> BlockCosts:
        blocks = len(range(0, self.out_channels, max(chunk // self.out_rows, 1))) if chunk >= self.out_rows \
            else self.out_channels * len(range(0, self.out_rows, chunk))
        in_neurons = self.taps.shape[1] * self.in_rows * self.in_cols
        if blocks * in_neurons > MAX_WORK_ELEMENTS:
            raise UnsupportedLayerError(
                f"conv layer {self.layer.name!r}: costing {blocks} core blocks against {in_neurons} input "
                f"neurons needs {blocks * in_neurons} table cells, more than the limit of {MAX_WORK_ELEMENTS}; "
                "the layer is far too large for the chip: shrink its input map or split the network"
            )
        starts, stops, taps, v_rows = self._blocks(chunk)
        along_cols = taps @ self.v_cols                                   # (B, Cin, kH, Win)
        v_rows_t = np.swapaxes(v_rows, 1, 2)[:, None]                     # (B or 1, 1, Hin, kH)
        counts = np.rint(v_rows_t @ along_cols).astype(np.int64)          # (B, Cin, Hin, Win)
        counts = counts.reshape(len(starts), -1)
        reach = counts > 0
        in_axons = reach.sum(axis=1)
        dense, sparse = _block_memory(counts, in_axons, stops - starts, self.fmt, self.chip)
        return BlockCosts(starts, stops, in_axons, counts.sum(axis=1), dense, sparse, reach,
                          counts.sum(axis=0))


def _synapse_format(layer: Layer, chip: "Chip", weight_bits: int | None) -> tuple[SynapseFormat, int, int]:
    """(format, required weight bits, required delay bits) of a layer."""
    if isinstance(layer, PoolLayer):
        required = required_weight_bits(np.array([layer.weight]))
        delay = 0
    elif isinstance(layer, (DenseLayer, ConvLayer)):
        required = layer.weight_bits if layer.weight_bits is not None else required_weight_bits(
            layer.effective_weight)
        delay = required_delay_bits(layer.delay)
    else:
        required, delay = 0, 0
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


def _conv_coster(layer: ConvLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> Coster:
    return ConvCoster(layer, in_shape, out_shape, fmt, chip)


def _pool_coster(layer: PoolLayer, in_shape: Shape, out_shape: Shape, fmt: SynapseFormat,
                 chip: "Chip") -> Coster:
    return ConvCoster(layer.as_conv(in_shape[0]), in_shape, out_shape, fmt, chip)


COSTERS: dict[str, Callable[..., Coster]] = {
    "input": _input_coster,
    "dense": _dense_coster,
    "conv": _conv_coster,
    "pool": _pool_coster,
}


def make_coster(layer: Layer, in_shape: Shape, out_shape: Shape, chip: "Chip",
                weight_bits: int | None = None) -> tuple[Coster, int, int]:
    """The coster of a layer with compartments, plus its required weight and delay bits.

    ``weight_bits`` overrides the layer's width (to ask "what if quantized to b bits").
    """
    factory = COSTERS.get(layer.kind)
    if factory is None:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: type {layer.kind!r} has no hardware cost model; "
            f"supported: {', '.join(COSTERS)}, flatten"
        )
    fmt, required, delay = _synapse_format(layer, chip, weight_bits)
    return factory(layer, in_shape, out_shape, fmt, chip), required, delay
