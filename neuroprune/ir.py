"""The neutral network description every part of neuroprune speaks.

A :class:`Network` is an ordered chain of layers (``input``, ``dense``, ``dense_rec``, ``dense_comp``, ``conv``,
``convT``, ``pool``, ``unpool``, ``flatten``, ``concat``; host-side readouts such as ``average`` at the end;
a ``concat`` joins the previous layer's output with earlier layers' outputs, netx's skip connections) with shapes
inferred and checked at construction, integer-valued numpy weights (Loihi weight
mantissas), optional unstructured masks, synaptic delays and neuron parameters (CUBA,
sigma-delta, resonate-and-fire) in the units the chip uses.

Conventions
-----------
- Shapes are in torch order without batch and time: ``(C, H, W)`` for maps, ``(N,)``
  for vectors. (netx files and Lava use the reverse, ``(W, H, C)``; the converters
  translate.)
- Dense weights are ``(out, in)``; conv weights are ``(out, in // groups, kH, kW)`` and
  act as a correlation, exactly like ``torch.nn.functional.conv2d``; transposed conv
  weights are ``(in, out // groups, kH, kW)``, as ``torch.nn.functional.conv_transpose2d``
  and lava-dl's slayer hold them.
- Neuron parameters are the chip's integers: ``i_decay`` and ``v_decay`` in 1/4096 per
  time step, ``v_th_mant`` such that a neuron spikes when ``v > v_th_mant << 6``.

This module imports numpy only (networkx on demand): a fit check of a netx file must
start fast and must not pull in torch or Lava.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.loihi_arith import DECAY_UNITY, MAX_V_TH_MANT, STATE_BITS, VTH_SHIFT

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = [
    "Neuron",
    "NEURON_TYPES",
    "require_lif",
    "Layer",
    "InputLayer",
    "DenseLayer",
    "RecurrentDenseLayer",
    "ComplexDenseLayer",
    "ConvLayer",
    "ConvTransposeLayer",
    "PoolLayer",
    "UnpoolLayer",
    "FlattenLayer",
    "ConcatLayer",
    "AverageLayer",
    "Network",
    "LAYER_TYPES",
    "conv_output_size",
]

Shape = tuple[int, ...]

#: neuron types lava-dl's netx runs: Loihi's CUBA compartment (``CUBA``, ``LOIHI``),
#: sigma-delta with ReLU (``SDNN``, graded spikes) and resonate-and-fire (``RF_PHASE``,
#: ``RF_IZHIKEVICH``), as lava-dl's slayer writes them (``neuron.device_params``)
NEURON_TYPES = ("CUBA", "LOIHI", "SDNN", "RF_PHASE", "RF_IZHIKEVICH")
#: the types Loihi 1's fixed compartment runs (the others need programmable neurons)
LIF_TYPES = ("CUBA", "LOIHI")
#: activations of lava-dl's sigma-delta neurons Lava runs (its SigmaDelta process: ReLU)
SDNN_ACTIVATIONS = ("relu",)
#: payload bits of a graded spike when the file does not say (lava-dl netx's default for SDNN)
SDNN_MESSAGE_BITS = 16
#: largest payload of a graded spike (Loihi 2 graded spikes carry up to 32-bit payloads)
MAX_MESSAGE_BITS = 32


@dataclass(frozen=True)
class Neuron:
    """Neuron parameters in chip units, as lava-dl's netx stores them.

    Parameters
    ----------
    kind : one of :data:`NEURON_TYPES` ("CUBA" and "LOIHI" are the same compartment on Loihi).
    i_decay : current decay per step, in 1/4096 (0 = no decay, 4096 = no memory); CUBA only.
    v_decay : voltage decay per step, in 1/4096; CUBA only.
    v_th_mant : threshold mantissa; a CUBA neuron spikes when ``v > v_th_mant << 6``; a
        sigma-delta neuron sends a delta when it exceeds ``v_th_mant << 6``.
    ref_delay : refractory delay in time steps.
    graded_spike : whether spikes carry a payload (graded spikes); always so for SDNN.
    activation : SDNN activation (lava-dl writes the function's name, ``"relu"``).
    sigma_output : SDNN output layer that integrates (sigma) instead of sending deltas.
    message_bits : netx ``messageBits``, payload bits of a graded spike; ``None``: lava-dl's
        default for the type.
    sin_decay, cos_decay : resonate-and-fire rotation, in 1/4096 (``sinDecay``, ``cosDecay``).
    """

    kind: str = "CUBA"
    i_decay: int = 1024
    v_decay: int = 128
    v_th_mant: int = 80
    ref_delay: int = 1
    graded_spike: bool = False
    activation: str | None = None
    sigma_output: bool = False
    message_bits: int | None = None
    sin_decay: int = 0
    cos_decay: int = 0

    def __post_init__(self) -> None:
        if self.kind not in NEURON_TYPES:
            raise UnsupportedLayerError(
                f"neuron type {self.kind!r} is not supported; use one of {', '.join(NEURON_TYPES)}"
            )
        for name in ("i_decay", "v_decay"):
            value = getattr(self, name)
            if not 0 <= value <= DECAY_UNITY:
                raise ShapeError(f"neuron {name}={value} is outside [0, {DECAY_UNITY}] (units of 1/{DECAY_UNITY})")
        for name in ("sin_decay", "cos_decay"):
            value = getattr(self, name)
            if not -DECAY_UNITY <= value <= DECAY_UNITY:
                raise ShapeError(f"neuron {name}={value} is outside [-{DECAY_UNITY}, {DECAY_UNITY}] "
                                 f"(units of 1/{DECAY_UNITY})")
        if not 0 <= self.v_th_mant <= MAX_V_TH_MANT:
            raise ShapeError(
                f"neuron v_th_mant={self.v_th_mant} is outside [0, {MAX_V_TH_MANT}] (v_th_mant << {VTH_SHIFT} must "
                f"fit the chip's {STATE_BITS}-bit voltage); lower the threshold and scale the weights with it"
            )
        if self.ref_delay < 0:
            raise ShapeError(f"neuron ref_delay={self.ref_delay} must be >= 0 time steps")
        if self.kind == "SDNN" and (self.activation or "relu") not in SDNN_ACTIVATIONS:
            raise UnsupportedLayerError(
                f"SDNN activation {self.activation!r} is not supported: Lava's sigma-delta neuron runs "
                f"{', '.join(SDNN_ACTIVATIONS)}; train the network with a ReLU activation"
            )
        if self.sigma_output and self.kind != "SDNN":
            raise ShapeError(f"sigma_output belongs to SDNN neurons, not {self.kind}")
        if self.message_bits is not None and not 0 <= self.message_bits <= MAX_MESSAGE_BITS:
            raise ShapeError(f"neuron message_bits={self.message_bits} is outside [0, {MAX_MESSAGE_BITS}]")

    @property
    def is_lif(self) -> bool:
        """Loihi's CUBA leaky integrate-and-fire compartment (runs on Loihi 1 and 2)."""
        return self.kind in LIF_TYPES

    @property
    def sends_graded(self) -> bool:
        """Spikes carry an integer payload (graded spikes): SDNN always, others when flagged."""
        return self.kind == "SDNN" or self.graded_spike

    @property
    def payload_bits(self) -> int:
        """Bits of payload each spike carries (0: binary spikes)."""
        if not self.sends_graded:
            return 0
        if self.message_bits is not None:
            return self.message_bits
        return SDNN_MESSAGE_BITS if self.kind == "SDNN" else 0


def require_lif(network: "Network", what: str) -> None:
    """:class:`UnsupportedLayerError` naming the first layer whose neuron is not Loihi's
    CUBA compartment, for the parts (``what``) that model only that neuron."""
    for index, layer in enumerate(network.layers):
        neuron = getattr(layer, "neuron", None)
        if neuron is not None and not neuron.is_lif:
            raise UnsupportedLayerError(
                f"layer {index} ({layer.name}): {what} supports {'/'.join(LIF_TYPES)} neurons, not {neuron.kind}; "
                "info and fit read this network, the rest does not yet"
            )


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis (torch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if np.isscalar(value):
        return int(value), int(value)  # type: ignore[arg-type]
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    if len(values) != 2:
        raise ShapeError(f"{name} must be an int or a pair, got {value!r}")
    return values  # type: ignore[return-value]


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(frozen=True, eq=False)
class Layer:
    """Base of every layer. Subclasses set ``kind`` and implement ``output_shape``."""

    kind: ClassVar[str] = ""
    #: carries synapses (a weight) feeding a neuron population of its own
    synaptic: ClassVar[bool] = False
    #: only reshapes: no synapses, no neurons; its input's spikes pass through unchanged
    passthrough: ClassVar[bool] = False
    #: one kernel shared by every position: spikes in reach it as population spikes
    shared_weights: ClassVar[bool] = False
    #: computed by the host from the chip's output spikes (a readout such as average):
    #: no compartments, no synapses, no cost; only host-side layers may follow it
    on_host: ClassVar[bool] = False
    name: str = ""

    @property
    def channel_wise(self) -> bool:
        """Output channel ``c`` depends on input channel ``c`` alone (pool, depthwise conv):
        the layer follows its producer's channel count."""
        return False

    @property
    def holds_compartments(self) -> bool:
        """The layer becomes a neuron population (compartments) on the chip."""
        return self.synaptic

    def output_shape(self, in_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_params(self) -> int:
        """Number of stored synaptic weights (zeros included)."""
        return 0

    def same_as(self, other: "Layer") -> bool:
        """Field-by-field equality, arrays compared by value."""
        if type(self) is not type(other):
            return False
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not _same_array(a, b):
                    return False
            elif a != b:
                return False
        return True

    def describe(self) -> str:
        """One-line description of the layer's hyper-parameters."""
        return ""


@dataclass(frozen=True, eq=False)
class InputLayer(Layer):
    """Network input; with a neuron it encodes graded input into spikes on the chip."""

    kind: ClassVar[str] = "input"
    shape: Shape = (1,)
    neuron: Neuron | None = None
    weight: float | None = None
    bias: float | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if not shape or any(s <= 0 for s in shape) or len(shape) not in (1, 2, 3):
            raise ShapeError(f"input shape {self.shape} must be 1 to 3 positive sizes (C, H, W)")
        object.__setattr__(self, "shape", shape)

    @property
    def holds_compartments(self) -> bool:
        return self.neuron is not None

    def output_shape(self, in_shape: Shape) -> Shape:
        return self.shape


@dataclass(frozen=True, eq=False)
class _SynapticLayer(Layer):
    """Common fields of layers with a weight tensor and a neuron population."""

    synaptic: ClassVar[bool] = True
    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), dtype=np.int32))
    neuron: Neuron | None = None
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None
    mask: np.ndarray | None = None
    weight_bits: int | None = None

    def __post_init__(self) -> None:
        weight = np.asarray(self.weight)
        object.__setattr__(self, "weight", weight)
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.shape != weight.shape:
                raise ShapeError(
                    f"{self.kind} layer {self.name!r}: mask shape {mask.shape} differs from "
                    f"weight shape {weight.shape}"
                )
            object.__setattr__(self, "mask", mask)
        if self.delay is not None:
            delay = np.asarray(self.delay)
            if delay.size and (delay.min() < 0):
                raise ShapeError(f"{self.kind} layer {self.name!r}: negative synaptic delay")
            object.__setattr__(self, "delay", delay)
        if self.bias is not None:
            object.__setattr__(self, "bias", np.asarray(self.bias))
        if self.weight_bits is not None and not 1 <= self.weight_bits <= 9:
            raise ShapeError(f"{self.kind} layer {self.name!r}: weight_bits={self.weight_bits} not in 1..9")

    @property
    def effective_weight(self) -> np.ndarray:
        """Weights with the unstructured mask applied (what the chip stores)."""
        if self.mask is None:
            return self.weight
        return self.weight * self.mask

    @property
    def num_params(self) -> int:
        return int(self.weight.size)

    @property
    def num_nonzero(self) -> int:
        """Number of non-zero synapses after masking."""
        return int(np.count_nonzero(self.effective_weight))

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class DenseLayer(_SynapticLayer):
    """Fully connected synapses ``(out, in)`` feeding ``out`` neurons."""

    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight.ndim != 2:
            raise ShapeError(
                f"dense layer {self.name!r}: weight must be 2-D (out, in), got shape {self.weight.shape}"
            )

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1:
            raise ShapeError(
                f"dense layer {self.name!r} receives shape {in_shape}; insert a flatten layer before it"
            )
        if in_shape[0] != self.in_features:
            raise ShapeError(
                f"dense layer {self.name!r}: weight expects {self.in_features} inputs, "
                f"the previous layer gives {in_shape[0]}"
            )
        return (self.out_channels,)

    def describe(self) -> str:
        return f"{self.in_features}->{self.out_channels}"


def _second_matrix(layer: DenseLayer, key: str, shape: tuple[int, int], meaning: str, lava_block: str) -> None:
    """Check and store a dense layer's second weight matrix (``key``) of ``shape``; no delays."""
    matrix = np.asarray(getattr(layer, key))
    object.__setattr__(layer, key, matrix)
    if matrix.shape != shape:
        raise ShapeError(f"{layer.kind} layer {layer.name!r}: {key} has shape {matrix.shape}; {meaning}: {shape}")
    if layer.delay is not None and np.any(layer.delay):
        raise UnsupportedLayerError(
            f"{layer.kind} layer {layer.name!r} with synaptic delays is not supported: lava-dl's {lava_block} "
            "has no delays of its own; train it without delays"
        )


@dataclass(frozen=True, eq=False)
class _PairedDenseLayer(DenseLayer):
    """A dense layer with a second weight matrix (the field named by ``second``) into the
    same neurons: one synapse memory, one weight format."""

    second: ClassVar[str] = ""

    @property
    def all_weights(self) -> np.ndarray:
        """The effective ``weight``, then the second matrix, side by side ``(out, in + ...)``."""
        return np.hstack((self.effective_weight, getattr(self, self.second)))

    @property
    def num_params(self) -> int:
        return int(self.weight.size + getattr(self, self.second).size)

    @property
    def num_nonzero(self) -> int:
        return super().num_nonzero + int(np.count_nonzero(getattr(self, self.second)))


@dataclass(frozen=True, eq=False)
class RecurrentDenseLayer(_PairedDenseLayer):
    """Dense layer whose neurons also feed themselves: ``weight`` ``(out, in)`` from the
    previous layer and ``weight_rec`` ``(out, out)`` from the layer's own spikes of the
    previous step (lava-dl netx's ``dense_rec``, Lava's ``RecurrentDense`` block). The
    mask applies to ``weight``; ``all_weights`` is ``(out, in + out)`` (lava-dl's netx
    quantizes both together). No synaptic delays: lava-dl's ``RecurrentDense`` gives the
    recurrent synapses the feed-forward delays too (and fails unless ``in == out``)."""

    kind: ClassVar[str] = "dense_rec"
    second: ClassVar[str] = "weight_rec"
    weight_rec: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), dtype=np.int32))

    def __post_init__(self) -> None:
        super().__post_init__()
        out = self.out_channels
        _second_matrix(self, "weight_rec", (out, out), f"a recurrent weight connects the layer's {out} neurons "
                       "to themselves", "RecurrentDense (it would give the recurrent synapses the same delays)")

    def describe(self) -> str:
        return f"{self.in_features}->{self.out_channels} +{self.out_channels}x{self.out_channels} recurrent"


@dataclass(frozen=True, eq=False)
class ComplexDenseLayer(_PairedDenseLayer):
    """Complex dense synapses: ``weight`` (real part) and ``weight_imag``, both ``(out, in)``,
    drive the real and imaginary inputs of resonate-and-fire neurons (lava-dl's complex
    synapse, Lava's ``ComplexDense`` block; netx type ``dense_comp``, or ``dense`` with a
    ``weight/real``, ``weight/imag`` pair as slayer writes it). The mask applies to ``weight``."""

    kind: ClassVar[str] = "dense_comp"
    second: ClassVar[str] = "weight_imag"
    weight_imag: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), dtype=np.int32))

    def __post_init__(self) -> None:
        super().__post_init__()
        _second_matrix(self, "weight_imag", self.weight.shape, "the imaginary part has the real part's shape",
                       "ComplexDense")

    def describe(self) -> str:
        return f"{self.in_features}->{self.out_channels} complex (real, imag)"


@dataclass(frozen=True, eq=False)
class _ConvolutionLayer(_SynapticLayer):
    """What :class:`ConvLayer` and :class:`ConvTransposeLayer` share: a 4-D shared kernel
    with stride, padding, dilation and groups, grouped along the weight's first axis."""

    shared_weights: ClassVar[bool] = True
    #: the weight's axes, and what its first (grouped) axis counts, for error messages
    weight_layout: ClassVar[str] = ""
    grouped_axis: ClassVar[str] = ""
    #: appended to :meth:`describe`
    describe_tag: ClassVar[str] = ""
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight.ndim != 4:
            raise ShapeError(f"{self.kind} layer {self.name!r}: weight must be 4-D ({self.weight_layout}), "
                             f"got shape {self.weight.shape}")
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation"))
        object.__setattr__(self, "groups", int(self.groups))
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0 or self.groups < 1:
            raise ShapeError(f"{self.kind} layer {self.name!r}: stride/dilation/groups must be >= 1, padding >= 0")
        if self.weight.shape[0] % self.groups:
            raise ShapeError(f"{self.kind} layer {self.name!r}: {self.weight.shape[0]} {self.grouped_axis} channels "
                             f"not divisible by groups={self.groups}")

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def channel_wise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels  # type: ignore[attr-defined]

    def describe(self) -> str:
        k, s, p = self.kernel_size, self.stride, self.padding
        text = (f"{self.in_channels}->{self.out_channels} k{k[0]}x{k[1]} s{s[0]},{s[1]} "  # type: ignore[attr-defined]
                f"p{p[0]},{p[1]}{self.describe_tag}")
        if self.dilation != (1, 1):
            text += f" d{self.dilation[0]},{self.dilation[1]}"
        if self.groups != 1:
            text += f" g{self.groups}"
        return text


@dataclass(frozen=True, eq=False)
class ConvLayer(_ConvolutionLayer):
    """2-D convolution ``(out, in // groups, kH, kW)`` with torch's semantics."""

    kind: ClassVar[str] = "conv"
    weight_layout: ClassVar[str] = "out, in/groups, kH, kW"
    grouped_axis: ClassVar[str] = "output"

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ShapeError(f"conv layer {self.name!r} needs a (C, H, W) input, got {in_shape}")
        channels, height, width = in_shape
        if channels != self.in_channels:
            raise ShapeError(
                f"conv layer {self.name!r}: weight expects {self.in_channels} input channels, "
                f"the previous layer gives {channels}"
            )
        out_hw = [
            conv_output_size(size, k, s, p, d)
            for size, k, s, p, d in zip((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        ]
        if min(out_hw) < 1:
            raise ShapeError(
                f"conv layer {self.name!r}: kernel {self.kernel_size} does not fit input {in_shape} "
                f"with padding {self.padding}"
            )
        return (self.out_channels, out_hw[0], out_hw[1])



@dataclass(frozen=True, eq=False)
class _WindowLayer(Layer):
    """A channel-wise window with one shared weight mantissa, followed by neurons: the
    fields and checks :class:`PoolLayer` and :class:`UnpoolLayer` share."""

    shared_weights: ClassVar[bool] = True
    synaptic: ClassVar[bool] = True
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None  # None: the kernel
    padding: tuple[int, int] = (0, 0)
    weight: int = 64
    neuron: Neuron | None = None

    @property
    def channel_wise(self) -> bool:
        return True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "kernel"))
        object.__setattr__(self, "stride", _pair(self.kernel if self.stride is None else self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        object.__setattr__(self, "weight", int(self.weight))
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:  # type: ignore[type-var]
            raise ShapeError(f"{self.kind} layer {self.name!r}: kernel and stride must be >= 1, padding >= 0")

    def describe(self) -> str:
        return (f"k{self.kernel[0]}x{self.kernel[1]} s{self.stride[0]},{self.stride[1]} "  # type: ignore[index]
                f"p{self.padding[0]},{self.padding[1]} w{self.weight}")


@dataclass(frozen=True, eq=False)
class PoolLayer(_WindowLayer):
    """Sum pooling per channel with one shared weight mantissa, followed by neurons.

    lava-dl writes it to netx as a ``pool`` layer (slayer's ``Pool`` block), but lava-dl
    0.6's netx builds no Lava process for ``pool``; so the netx writer emits the
    equivalent depthwise convolution (``groups = channels``, every kernel tap equal to
    ``weight``) and the reader accepts both forms.
    """

    kind: ClassVar[str] = "pool"

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ShapeError(f"pool layer {self.name!r} needs a (C, H, W) input, got {in_shape}")
        out_hw = [
            conv_output_size(size, k, s, p, 1)
            for size, k, s, p in zip(in_shape[1:], self.kernel, self.stride, self.padding)  # type: ignore[arg-type]
        ]
        if min(out_hw) < 1:
            raise ShapeError(f"pool layer {self.name!r}: kernel {self.kernel} does not fit input {in_shape}")
        return (in_shape[0], out_hw[0], out_hw[1])

    def as_conv(self, in_channels: int) -> ConvLayer:
        """The depthwise convolution that computes the same sums."""
        weight = np.full((in_channels, 1, *self.kernel), self.weight, dtype=np.int32)
        return ConvLayer(
            name=self.name, weight=weight, neuron=self.neuron, stride=self.stride,  # type: ignore[arg-type]
            padding=self.padding, groups=in_channels,
        )

def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a transposed convolution along one axis (torch's formula, no output padding)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1


@dataclass(frozen=True, eq=False)
class ConvTransposeLayer(_ConvolutionLayer):
    """2-D transposed convolution, weights ``(in, out // groups, kH, kW)`` with the semantics
    of ``torch.nn.functional.conv_transpose2d`` (no output padding), as lava-dl's slayer
    ``ConvT`` block stores them (netx type ``convT``).

    The chip maps it as a conv (shared weights, population axons; see
    ``hw_models.cost.ConvTransposeCoster``). lava-dl 0.6's netx builds no Lava process for
    it; ``converters.lava_build`` runs it as the dense synapses of :meth:`unrolled_weight`
    (the same sums), and the fixed point computes them with Lava's dense arithmetic."""

    kind: ClassVar[str] = "convT"
    weight_layout: ClassVar[str] = "in, out/groups, kH, kW"
    grouped_axis: ClassVar[str] = "input"
    describe_tag: ClassVar[str] = " transposed"

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ShapeError(f"convT layer {self.name!r} needs a (C, H, W) input, got {in_shape}")
        if in_shape[0] != self.in_channels:
            raise ShapeError(f"convT layer {self.name!r}: weight expects {self.in_channels} input channels, "
                             f"the previous layer gives {in_shape[0]}")
        out_hw = [conv_transpose_output_size(size, k, s, p, d) for size, k, s, p, d in
                  zip(in_shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)]
        if min(out_hw) < 1:
            raise ShapeError(f"convT layer {self.name!r}: padding {self.padding} crops input {in_shape} to nothing")
        return (self.out_channels, out_hw[0], out_hw[1])

    def unrolled_entries(self, in_shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero entries ``(rows, columns, values)`` of :meth:`unrolled_weight`, without
        building the matrix (a (output, input) pair meets through at most one kernel tap)."""
        out_shape = self.output_shape(in_shape)
        (c_in, h_in, w_in), (c_out, h_out, w_out) = in_shape, out_shape
        per_in, per_out = c_in // self.groups, c_out // self.groups
        weight = self.effective_weight
        ci, co, y, x = (axis.ravel() for axis in np.meshgrid(
            np.arange(c_in), np.arange(per_out), np.arange(h_in), np.arange(w_in), indexing="ij"))
        co_full = (ci // per_in) * per_out + co
        source = (ci * h_in + y) * w_in + x
        rows, cols, values = [], [], []
        for ky in range(self.kernel_size[0]):
            for kx in range(self.kernel_size[1]):
                oy = y * self.stride[0] - self.padding[0] + ky * self.dilation[0]
                ox = x * self.stride[1] - self.padding[1] + kx * self.dilation[1]
                tap = weight[ci, co, ky, kx]
                keep = (oy >= 0) & (oy < h_out) & (ox >= 0) & (ox < w_out) & (tap != 0)
                rows.append(((co_full * h_out + oy) * w_out + ox)[keep])
                cols.append(source[keep])
                values.append(tap[keep])
        return (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
                np.concatenate(values).astype(np.int64))

    def unrolled_nonzero(self, in_shape: Shape) -> int:
        """Number of non-zero entries of :meth:`unrolled_weight` (counted per tap, no matrix)."""
        out_shape = self.output_shape(in_shape)
        reach = []
        for axis in (0, 1):  # input positions whose output through each tap lands inside
            out = (np.arange(in_shape[1 + axis])[:, None] * self.stride[axis] - self.padding[axis]
                   + np.arange(self.kernel_size[axis])[None, :] * self.dilation[axis])
            reach.append(((out >= 0) & (out < out_shape[1 + axis])).sum(axis=0))
        return int(np.einsum("abyx,y,x->", (self.effective_weight != 0).astype(np.int64), *reach))

    def unrolled_weight(self, in_shape: Shape) -> np.ndarray:
        """The equivalent dense weight ``(out C*H*W, in C*H*W)`` (torch flatten order):
        entry ``[o, i]`` is the kernel tap that carries input neuron ``i`` to output ``o``, 0 where none does."""
        rows, cols, values = self.unrolled_entries(in_shape)
        dense = np.zeros((int(np.prod(self.output_shape(in_shape))), int(np.prod(in_shape))), dtype=np.int64)
        dense[rows, cols] = values
        return dense



@dataclass(frozen=True, eq=False)
class UnpoolLayer(_WindowLayer):
    """Unpooling per channel with one shared weight mantissa, followed by neurons (lava-dl
    slayer's ``Unpool`` block, netx type ``unpool``): each input neuron drives the
    ``kernel`` window of outputs at ``stride`` (nearest upsampling when ``stride ==
    kernel``) with ``weight``; ``padding`` crops the border. The transposed counterpart of
    :class:`PoolLayer`: it computes what :meth:`as_conv_transpose` computes."""

    kind: ClassVar[str] = "unpool"

    def as_conv_transpose(self, in_channels: int) -> ConvTransposeLayer:
        """The depthwise transposed convolution that computes the same sums."""
        weight = np.full((in_channels, 1, *self.kernel), self.weight, dtype=np.int32)
        return ConvTransposeLayer(name=self.name, weight=weight, neuron=self.neuron, stride=self.stride,  # type: ignore
                                  padding=self.padding, groups=in_channels)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ShapeError(f"unpool layer {self.name!r} needs a (C, H, W) input, got {in_shape}")
        return self.as_conv_transpose(in_shape[0]).output_shape(in_shape)


@dataclass(frozen=True, eq=False)
class FlattenLayer(Layer):
    """Reshape ``(C, H, W)`` into ``(C*H*W,)`` in C order (torch's flatten)."""

    kind: ClassVar[str] = "flatten"
    passthrough: ClassVar[bool] = True

    def output_shape(self, in_shape: Shape) -> Shape:
        return (int(np.prod(in_shape)),)


@dataclass(frozen=True, eq=False)
class AverageLayer(Layer):
    """Mean of ``num_outputs`` equal contiguous groups of the flattened input (lava-dl
    slayer's ``Average`` block: a population-coded readout, output ``i`` the mean spike of
    group ``i``). lava-dl's netx builds no Lava process for it: the host computes it from
    the chip's output spikes, so it holds no compartments and ends the network."""

    kind: ClassVar[str] = "average"
    on_host: ClassVar[bool] = True
    num_outputs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_outputs", int(self.num_outputs))
        if self.num_outputs < 1:
            raise ShapeError(f"average layer {self.name!r}: num_outputs={self.num_outputs} must be >= 1")

    def output_shape(self, in_shape: Shape) -> Shape:
        size = int(np.prod(in_shape))
        if size % self.num_outputs:
            raise ShapeError(
                f"average layer {self.name!r}: {size} inputs do not split into {self.num_outputs} equal groups"
            )
        return (self.num_outputs,)

    def describe(self) -> str:
        return f"mean of {self.num_outputs} groups (host)"


@dataclass(frozen=True, eq=False)
class ConcatLayer(Layer):
    """Joins, along channels, the output of the previous layer with the outputs of the
    earlier layers ``layers`` (network indices, in that order): netx's ``concat`` (a skip
    connection; the chain stays in topological order). No synapses, no neurons: its
    spikes are its sources' spikes (see :meth:`Network.sources_of`). Maps ``(C_k, H, W)``
    join to ``(sum C_k, H, W)``, vectors ``(N_k,)`` to ``(sum N_k,)``."""

    kind: ClassVar[str] = "concat"
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        ids = np.atleast_1d(np.asarray(self.layers, dtype=np.int64))
        object.__setattr__(self, "layers", tuple(int(i) for i in ids))
        if not self.layers:
            raise ShapeError(f"concat layer {self.name!r}: name at least one earlier layer to join")

    def output_shape(self, in_shape: Shape) -> Shape:  # pragma: no cover - Network joins the sources' shapes
        raise ShapeError(f"concat layer {self.name!r}: its shape comes from its sources (Network.sources_of)")

    def joined_shape(self, shapes: Sequence[Shape]) -> Shape:
        """Output shape of joining ``shapes`` (the previous layer's first) along channels."""
        first = shapes[0]
        for shape in shapes[1:]:
            if len(shape) != len(first) or tuple(shape[1:]) != tuple(first[1:]):
                raise ShapeError(f"concat layer {self.name!r} cannot join shapes {list(map(tuple, shapes))}: "
                                 "all but the channel size must agree")
        return (sum(int(shape[0]) for shape in shapes), *first[1:])

    def describe(self) -> str:
        return "joins the previous layer with layers " + ", ".join(map(str, self.layers))


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (InputLayer, DenseLayer, RecurrentDenseLayer, ComplexDenseLayer, ConvLayer,
                              ConvTransposeLayer, PoolLayer, UnpoolLayer, FlattenLayer, ConcatLayer, AverageLayer)
}


class Network:
    """An ordered chain of layers starting with an :class:`InputLayer`: each layer receives
    the previous layer's output, a :class:`ConcatLayer` also earlier layers' (the chain is
    in topological order; :meth:`sources_of` names what a layer receives).

    Shapes are inferred at construction; a mismatch raises :class:`ShapeError` naming
    the layer. The network is immutable by convention: transforms return new networks
    (see :meth:`replace`).
    """

    def __init__(self, layers: Sequence[Layer], name: str = "network") -> None:
        layers = tuple(layers)
        if not layers or not isinstance(layers[0], InputLayer):
            raise ShapeError("a network must start with an input layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer) or type(layer) not in LAYER_TYPES.values():
                raise UnsupportedLayerError(
                    f"layer {index}: {type(layer).__name__} is not a supported layer type; "
                    f"supported: {', '.join(LAYER_TYPES)}"
                )
            if index > 0 and isinstance(layer, InputLayer):
                raise ShapeError(f"layer {index}: only the first layer may be an input layer")
            if index > 0 and layers[index - 1].on_host and not layer.on_host:
                raise ShapeError(
                    f"layer {index}: a {layer.kind} layer cannot follow the {layers[index - 1].kind} layer "
                    f"{index - 1}, which the host computes from the chip's output; move the readout to the end"
                )
        named = []
        for index, layer in enumerate(layers):
            named.append(layer if layer.name else dataclasses.replace(layer, name=f"{layer.kind}{index}"))
        self.layers: tuple[Layer, ...] = tuple(named)
        self.name = name
        shapes: list[Shape] = []
        shape: Shape = ()
        for index, layer in enumerate(self.layers):
            try:
                if isinstance(layer, ConcatLayer):
                    shape = layer.joined_shape([shapes[source] for source in self._check_sources(index, layer)])
                else:
                    shape = layer.output_shape(shape)
            except ShapeError as err:
                raise ShapeError(f"layer {index}: {err}") from None
            shapes.append(shape)
        self.shapes: tuple[Shape, ...] = tuple(shapes)

    def _check_sources(self, index: int, layer: "ConcatLayer") -> tuple[int, ...]:
        for source in layer.layers:
            if not 0 <= source < index - 1 or self.layers[source].on_host:
                raise ShapeError(f"concat layer {layer.name!r} joins layer {source}; name earlier layers "
                                 f"(0..{index - 2}) the chip computes (the previous layer {index - 1} is joined first)")
        return (index - 1, *layer.layers)

    # -- container protocol -------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __repr__(self) -> str:
        kinds = ", ".join(f"{layer.kind}{list(shape)}" for layer, shape in zip(self.layers, self.shapes))
        return f"Network({self.name!r}: {kinds})"

    # -- queries --------------------------------------------------------------------
    @property
    def input_shape(self) -> Shape:
        return self.shapes[0]

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1]

    def input_shape_of(self, index: int) -> Shape:
        """Shape flowing into layer ``index`` (the input layer receives its own shape)."""
        return self.shapes[max(index - 1, 0)]

    def synaptic_indices(self) -> list[int]:
        """Indices of layers that carry synapses (dense, conv, pool)."""
        return [i for i, layer in enumerate(self.layers) if layer.synaptic]

    def neuron_indices(self) -> list[int]:
        """Indices of layers with a neuron population (their spikes leave the layer)."""
        return [i for i, layer in enumerate(self.layers) if getattr(layer, "neuron", None) is not None]

    def compartment_indices(self) -> list[int]:
        """Indices of layers that become neuron populations on the chip (every synaptic
        layer, and the input layer when it has a neuron): the blocks netx builds in Lava."""
        return [i for i, layer in enumerate(self.layers) if layer.holds_compartments]

    def source_indices(self) -> list[int]:
        """Indices of layers whose output is spikes another layer receives (every layer
        but pass-through reshapes such as flatten and host-side readouts such as average)."""
        return [i for i, layer in enumerate(self.layers) if not (layer.passthrough or layer.on_host)]

    def chip_part(self) -> "Network":
        """The layers the chip runs: the network without its trailing host-side readouts."""
        keep = len(self.layers)
        while keep > 1 and self.layers[keep - 1].on_host:
            keep -= 1
        return self if keep == len(self.layers) else Network(self.layers[:keep], name=self.name)

    def sources_of(self, index: int) -> tuple[int, ...]:
        """The layers whose outputs layer ``index`` receives: a concat's joined layers (the
        previous one first), else the previous layer (none for the input layer)."""
        layer = self.layers[index]
        if isinstance(layer, ConcatLayer):
            return (index - 1, *layer.layers)
        return (index - 1,) if index else ()

    def producer_of(self, index: int) -> int | None:
        """The layer whose spikes feed layer ``index`` (pass-through layers such as
        flatten skipped; a concat is a producer: its spikes are its sources' spikes, see
        :meth:`sources_of`); ``None`` for the input layer."""
        for previous in range(index - 1, -1, -1):
            if not self.layers[previous].passthrough:
                return previous
        return None

    def num_neurons(self, index: int) -> int:
        """Neurons (compartments) of layer ``index``; 0 for layers without neurons."""
        if getattr(self.layers[index], "neuron", None) is None:
            return 0
        return int(np.prod(self.shapes[index]))

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def graph(self) -> "nx.DiGraph":
        """The network as a networkx ``DiGraph``: nodes are layer indices with
        ``layer``, ``kind`` and ``shape`` attributes; edges follow the data flow."""
        import networkx as nx

        graph = nx.DiGraph(name=self.name)
        for index, (layer, shape) in enumerate(zip(self.layers, self.shapes)):
            graph.add_node(index, layer=layer, kind=layer.kind, shape=shape)
            for source in self.sources_of(index):
                graph.add_edge(source, index)
        return graph

    # -- transforms -----------------------------------------------------------------
    def replace(self, index: int, layer: Layer) -> "Network":
        """A new network with layer ``index`` replaced (shapes re-checked)."""
        layers = list(self.layers)
        layers[index] = layer
        return Network(layers, name=self.name)

    def with_layers(self, layers: Sequence[Layer]) -> "Network":
        return Network(layers, name=self.name)

    def same_as(self, other: "Network") -> bool:
        """True when both networks have equal layers (weights compared by value)."""
        return len(self) == len(other) and all(a.same_as(b) for a, b in zip(self.layers, other.layers))

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: index, type, shape, params, neuron type, details."""
        rows = []
        for index, (layer, shape) in enumerate(zip(self.layers, self.shapes)):
            neuron = getattr(layer, "neuron", None)
            rows.append(
                {
                    "index": index,
                    "name": layer.name,
                    "type": layer.kind,
                    "shape": shape,
                    "params": layer.num_params,
                    "nonzero": getattr(layer, "num_nonzero", layer.num_params),
                    "neuron": neuron.kind if neuron is not None else "-",
                    "details": layer.describe(),
                }
            )
        return rows
