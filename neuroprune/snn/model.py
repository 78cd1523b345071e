"""SNN models on lava-dl slayer CUBA or sigma-delta blocks, and conversion to and from the IR.

An :class:`SNN` is a ``torch.nn.Module`` holding a sequence of slayer blocks
(``Input``, ``Conv``, ``Flatten``, ``Dense``). slayer's CUBA blocks quantize weights to
Loihi's 8-bit mantissa (``quantize_8bit``: step 2/64, range [-256, 254]/64) and run the
neuron state in Loihi's integer scale, so the trained network maps onto the chip
exactly; :func:`to_ir` reads the mantissas and device parameters back out.

With a :class:`SigmaDeltaConfig` the blocks are slayer's ``sigma_delta`` ones, built as
lava-dl's PilotNet SDNN recipe builds them: a sigma-delta ``Input`` block delta-encodes
the (static) image, every conv and dense block is a sigma-delta ReLU unit (one shared,
learnable threshold per layer; 8-bit weights through the same ``quantize_8bit``) and the
classifier is slayer's ``Output`` block: a dense layer whose neurons only integrate
(sigma) the weighted deltas, written to netx with ``sigma_output``. The class is the
arg-max of that integrated output summed over time.

Architectures are written as a comma-separated spec, e.g. ``"c16,c32s2,f,d10"``:

- ``c<out>[k<kernel>][s<stride>][p<padding>][g<groups>]`` convolution (padding
  defaults to kernel // 2, "same" for odd kernels),
- ``f`` flatten, ``d<out>`` dense.

netx has no pooling layer; use strided convolutions (``c32s2``) instead.

Tensors are batch first with time last, as slayer uses: ``(N, C, H, W, T)`` or
``(N, F, T)``.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Iterable, Sequence, Union

import numpy as np
import torch

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.loihi_arith import DECAY_UNITY, MANTISSA_MAX, MANTISSA_MIN, WEIGHT_SCALE
from neuroprune.ir import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    Network,
    Neuron,
    conv_output_size,
)
from neuroprune.registry import lookup

__all__ = [
    "NeuronConfig",
    "SigmaDeltaConfig",
    "NEURON_CONFIGS",
    "LayerSpec",
    "SNN",
    "parse_arch",
    "build",
    "to_ir",
    "from_ir",
    "slayer",
    "WEIGHT_SCALE",
    "check_weights",
]

# Sanity limits of an architecture spec: far above any net a Loihi chip holds (128 cores
# x 1024 neurons), low enough that a typo cannot allocate gigabytes.
MAX_CHANNELS = 16384  # output channels / features of one layer
MAX_KERNEL = 31  # kernel side
MAX_STRIDE = 16
MAX_ARCH_LAYER_NEURONS = 1 << 22  # neurons of one layer (C x H x W) of a net to train
MAX_LAYER_WEIGHTS = 1 << 25  # weights of one layer (128 MiB of float32)
# slayer clamps weight mantissas to [-256, 254] (8 bits); a trained weight drifts only a
# little past the clamp (no gradient beyond it), so a stored one beyond twice that is corrupt.
MAX_STORED_WEIGHT_MANTISSA = 2 * -MANTISSA_MIN


def slayer() -> Any:
    """lava-dl's slayer module, imported without its import-time chatter."""
    with contextlib.redirect_stdout(io.StringIO()):
        import lava.lib.dl.slayer as module
    return module


@dataclass(frozen=True)
class NeuronConfig:
    """CUBA neuron parameters for training (slayer's units: threshold in weight units,
    decays as fractions per step; surrogate gradient shape ``tau_grad``/``scale_grad``)."""

    threshold: float = 1.25
    current_decay: float = 0.25
    voltage_decay: float = 0.03
    tau_grad: float = 0.03
    scale_grad: float = 3.0

    #: the ``--neuron`` name and the slayer block module (``slayer.block.<module>``)
    kind: ClassVar[str] = "cuba"
    block_module: ClassVar[str] = "cuba"

    def slayer_params(self) -> dict[str, Any]:
        params = asdict(self)
        params["requires_grad"] = False
        return params

    @classmethod
    def from_neuron(cls, neuron: Neuron, tau_grad: float = 0.03, scale_grad: float = 3.0) -> "NeuronConfig":
        return cls(
            threshold=neuron.v_th_mant / WEIGHT_SCALE,
            current_decay=neuron.i_decay / DECAY_UNITY,
            voltage_decay=neuron.v_decay / DECAY_UNITY,
            tau_grad=tau_grad,
            scale_grad=scale_grad,
        )


@dataclass(frozen=True)
class SigmaDeltaConfig:
    """Sigma-delta ReLU neuron parameters for training (slayer's ``sigma_delta`` units):
    the delta threshold in activation units (the chip's ``vThMant`` is ``threshold * 64``,
    truncated), learnable and shared by a layer's neurons when ``learn_threshold``
    (lava-dl's PilotNet SDNN recipe: threshold 0.1, ``tau_grad`` 0.5, ``scale_grad`` 1,
    ``shared_param``, ``requires_grad``), and the surrogate shape of the threshold's gradient.
    ``mean_norm``: hidden conv/dense blocks normalise with slayer's mean-only batch norm, as
    the recipe does (exported as each channel's bias).
    ``event_weight`` scales the delta-message regulariser of training (the recipe's event
    rate loss, see :func:`delta_loss`); 0 turns it off."""

    threshold: float = 0.1
    tau_grad: float = 0.5
    scale_grad: float = 1.0
    learn_threshold: bool = True
    event_weight: float = 0.01
    max_event_rate: float = 0.01
    mean_norm: bool = True

    kind: ClassVar[str] = "sdnn"
    block_module: ClassVar[str] = "sigma_delta"

    def slayer_params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "tau_grad": self.tau_grad, "scale_grad": self.scale_grad,
                "activation": torch.nn.functional.relu, "shared_param": True,
                "requires_grad": self.learn_threshold}

    def hidden_params(self, params: dict[str, Any], channels: int) -> dict[str, Any]:
        """Parameters of a hidden conv/dense block of ``channels`` outputs: with ``mean_norm``,
        slayer's mean-only batch norm (the recipe's; its running mean becomes the neurons'
        per-channel bias mantissa on the chip), sized up front so a rebuilt model loads it."""
        if not self.mean_norm:
            return params
        import functools

        norm = slayer().neuron.norm.MeanOnlyBatchNorm
        return {**params, "norm": functools.partial(norm, num_features=channels)}


AnyNeuronConfig = Union[NeuronConfig, SigmaDeltaConfig]

#: the neuron config of each ``--neuron`` kind (its ``block_module`` names the slayer blocks)
NEURON_CONFIGS: dict[str, type] = {"cuba": NeuronConfig, "sdnn": SigmaDeltaConfig}


def delta_loss(model: "SNN", outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """lava-dl's event-rate regulariser of sigma-delta nets: for the delta messages ``x`` of
    each block that sends them, ``relu(mean|x| - max_event_rate)^2``, summed over blocks and
    scaled by the config's ``event_weight``. Fewer, smaller deltas mean fewer SynOps on the chip."""
    config = model.neuron_config
    total = outputs[0].new_zeros(())
    for block, out in zip(model.blocks, outputs):
        if getattr(block, "neuron", None) is not None and type(block).__name__ != "Output":
            total = total + torch.relu(out.abs().mean() - config.max_event_rate) ** 2
    return config.event_weight * total


@dataclass(frozen=True)
class LayerSpec:
    """One layer of an architecture: ``kind`` in {"input", "conv", "flatten", "dense"}."""

    kind: str
    out: int = 0
    kernel: int = 3
    stride: int = 1
    padding: int | None = None
    groups: int = 1

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding is None else self.padding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CONV = re.compile(r"^c(\d+)(?:k(\d+))?(?:s(\d+))?(?:p(\d+))?(?:g(\d+))?$")
_DENSE = re.compile(r"^d(\d+)$")


def _check_spec(index: int, token: str, spec: LayerSpec) -> LayerSpec:
    limits = [("output channels", spec.out, 1, MAX_CHANNELS)]
    if spec.kind == "conv":
        limits += [("kernel", spec.kernel, 1, MAX_KERNEL), ("stride", spec.stride, 1, MAX_STRIDE),
                   ("padding", spec.pad, 0, MAX_KERNEL), ("groups", spec.groups, 1, spec.out)]
    for what, value, low, high in limits:
        if not low <= value <= high:
            raise ShapeError(
                f"architecture layer {index} ({token!r}): {what} {value} outside [{low}, {high}]; "
                "give a size in that range (e.g. 'c16,c32s2,f,d10')"
            )
    return spec


def parse_arch(spec: str) -> list[LayerSpec]:
    """Parse ``"c16,c32s2,f,d10"`` into layer specs (see the module docstring)."""
    layers: list[LayerSpec] = []
    for token in (t.strip().lower() for t in spec.split(",") if t.strip()):
        if (match := _CONV.match(token)) is not None:
            out, kernel, stride, padding, groups = match.groups()
            layers.append(_check_spec(len(layers), token, LayerSpec(
                "conv", int(out), int(kernel or 3), int(stride or 1),
                None if padding is None else int(padding), int(groups or 1))))
        elif (match := _DENSE.match(token)) is not None:
            layers.append(_check_spec(len(layers), token, LayerSpec("dense", int(match.group(1)))))
        elif token == "f":
            layers.append(LayerSpec("flatten"))
        elif re.match(r"^p\d+", token):
            raise UnsupportedLayerError(
                f"architecture token {token!r}: netx (and so Loihi export) has no pooling layer; "
                "use a strided convolution such as 'c32s2' instead"
            )
        else:
            raise ShapeError(
                f"architecture token {token!r} not understood; use c<out>[k<k>][s<s>][p<p>][g<g>], f or d<out> "
                "(e.g. 'c16,c32s2,f,d10')"
            )
    if not layers:
        raise ShapeError("empty architecture; e.g. 'c16,c32s2,f,d10'")
    return layers


class SNN(torch.nn.Module):
    """A feed-forward SNN of slayer CUBA blocks.

    Parameters
    ----------
    blocks : slayer blocks in order (``Input`` optional first, then ``Conv``,
        ``Flatten``, ``Dense``).
    input_shape : input shape without batch and time, e.g. ``(1, 8, 8)``.
    neuron : training neuron parameters (kept for rebuilding after pruning).
    """

    # no-grad forwards run the fused path of neuroprune.snn.fast (same spikes);
    # set False on an instance to time or check slayer's own forward
    fast_inference: bool = True

    def __init__(self, blocks: Iterable[torch.nn.Module], input_shape: Sequence[int],
                 neuron: AnyNeuronConfig | None = None, name: str = "snn") -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.neuron_config = neuron or NeuronConfig()
        self.name = name
        #: the sigma-delta event regulariser of the last forward with autograd (see :func:`delta_loss`)
        self.event_loss: torch.Tensor | None = None
        _check_blocks(self.blocks, self.neuron_kind)

    @property
    def neuron_kind(self) -> str:
        """``"cuba"`` or ``"sdnn"`` (sigma-delta ReLU blocks)."""
        return self.neuron_config.kind

    # -- running ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output spikes ``(N, classes, T)`` for input ``(N, *input_shape, T)``."""
        return self.forward_all(x)[-1]

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every block (flatten included), in order.

        Timing matches the chip exactly: on Loihi every synapse delivers one step
        late, which slayer models by delaying each block's output (``delay_shift``).
        The last block is built without that delay, so its output is the output
        layer's spikes at the chip's time steps; without an input neuron layer the
        input spikes are delayed one step here (the first synapse's delay).
        Sigma-delta blocks run without that delay (slayer's default for them, as
        lava-dl's PilotNet SDNN recipe trains): Lava delays each layer by one step,
        so on the chip the integrated output arrives later (the fixed-point accuracy
        ``neuroprune train`` reports is measured with the chip's timing) and a hidden
        layer sends its bias-only activation before the input's change, more messages
        than here (pruning counts SynOps on the chip model, see
        :data:`neuroprune.prune.base.MESSAGE_COUNTERS`).

        Without autograd (``torch.no_grad`` / ``inference_mode``) and with
        ``fast_inference`` set (the default), the pass runs in
        :mod:`neuroprune.snn.fast`: the same spikes, several times faster.
        """
        if self.fast_inference and not torch.is_grad_enabled():
            from neuroprune.snn import fast

            if fast.unsupported(self) is None:
                return fast.forward_all_fast(self, x)
        if not self.has_input_neuron:
            x = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], dim=-1)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        if self.neuron_kind == "sdnn" and torch.is_grad_enabled() and self.neuron_config.event_weight > 0:
            self.event_loss = delta_loss(self, outputs)
        return outputs

    @property
    def has_input_neuron(self) -> bool:
        first = self.blocks[0]
        return _kind(first) == "input" and first.neuron is not None

    def chip_input(self, x: torch.Tensor) -> torch.Tensor:
        """The integers the chip receives for input ``x`` (N, *input_shape, T).

        With an input neuron layer, the analog input is quantized by the input block's
        own hook (step 2/64) and scaled to the neuron's input mantissa (``x * 64``);
        without one, ``x`` must already be binary spikes.
        """
        if self.has_input_neuron:
            quantized = self.blocks[0].pre_hook_fx(x)
            return torch.round(quantized * WEIGHT_SCALE).to(torch.int64)
        return (x > 0).to(torch.int64)

    # -- structure -------------------------------------------------------------------
    @property
    def ir_offset(self) -> int:
        """IR layer index of block ``k`` is ``k + ir_offset`` (the IR always starts with
        an input layer; a model without an Input block gets an implicit one)."""
        return 0 if _kind(self.blocks[0]) == "input" else 1

    def synaptic_blocks(self) -> dict[int, torch.nn.Module]:
        """Conv and dense blocks keyed by their IR layer index."""
        return {k + self.ir_offset: b for k, b in enumerate(self.blocks) if _kind(b) in ("conv", "dense")}

    # -- description -----------------------------------------------------------------
    def specs(self) -> list[LayerSpec]:
        """Layer specs with the current (possibly pruned) sizes."""
        specs = []
        for block in self.blocks:
            kind = _kind(block)
            if kind == "input":
                specs.append(LayerSpec("input"))
            elif kind == "conv":
                syn = block.synapse
                specs.append(LayerSpec("conv", int(syn.out_channels), int(syn.kernel_size[0]),
                                       int(syn.stride[0]), int(syn.padding[0]), int(syn.groups)))
            elif kind == "dense":
                specs.append(LayerSpec("dense", int(block.synapse.out_channels)))
            else:
                specs.append(LayerSpec("flatten"))
        return specs

    def meta(self) -> dict[str, Any]:
        """JSON-able description to rebuild the model (see :func:`build_from_meta`)."""
        meta = {
            "format": "neuroprune.snn/1",
            "name": self.name,
            "input_shape": list(self.input_shape),
            "neuron": asdict(self.neuron_config),
            "layers": [s.to_dict() for s in self.specs()],
        }
        if self.neuron_kind != "cuba":  # CUBA descriptions stay as they always were
            meta["neuron_kind"] = self.neuron_kind
        return meta


def _kind(block: torch.nn.Module) -> str:
    name = type(block).__name__.lower()
    if name in ("input", "conv", "dense", "flatten"):
        return name
    if name == "output" and type(block).__module__.endswith("sigma_delta"):
        return "dense"  # slayer's sigma output block: a dense layer whose neurons integrate
    raise UnsupportedLayerError(
        f"block {type(block).__module__}.{type(block).__name__} is not supported; "
        "use slayer.block.cuba (or sigma_delta) Input, Conv, Flatten and Dense (and sigma_delta Output)"
    )


#: the slayer neuron module (``slayer.neuron.<module>``) of each neuron kind
_NEURON_MODULES = {"cuba": "cuba", "sdnn": "sigma_delta"}


def _check_blocks(blocks: Iterable[torch.nn.Module], neuron_kind: str = "cuba") -> None:
    wanted = _NEURON_MODULES[neuron_kind]
    for index, block in enumerate(blocks):
        kind = _kind(block)
        if kind == "input" and index:
            raise ShapeError(f"block {index}: an Input block may only come first")
        if type(block).__name__ == "Output" and index != len(blocks) - 1:
            raise ShapeError(f"block {index}: a sigma Output block may only come last")
        neuron = getattr(block, "neuron", None)
        if neuron is not None and type(neuron).__module__.rsplit(".", 1)[-1] != wanted:
            raise UnsupportedLayerError(
                f"block {index}: neuron {type(neuron).__module__}.{type(neuron).__name__} is not a {wanted} neuron; "
                f"build every block of a {neuron_kind} model from slayer.block.{wanted}"
            )


def _check_size(index: int, kind: str, neurons: int, weights: int) -> None:
    for what, value, limit in (("neurons", neurons, MAX_ARCH_LAYER_NEURONS),
                               ("weights", weights, MAX_LAYER_WEIGHTS)):
        if value > limit:
            raise ShapeError(
                f"layer {index} ({kind}): {value:,} {what} exceed the limit of {limit:,} per layer; "
                "use fewer channels or a larger stride"
            )


Shape = tuple[int, ...]


def _build_input(index: int, spec: LayerSpec, shape: Shape, cuba: Any, params: dict, weight_scale: float) -> Any:
    return cuba.Input(params), shape


def _build_conv(index: int, spec: LayerSpec, shape: Shape, cuba: Any, params: dict, weight_scale: float) -> Any:
    _check_spec(index, spec.kind, spec)
    if len(shape) != 3:
        raise ShapeError(f"layer {index}: conv needs a (C, H, W) input, got {shape}")
    if shape[0] % spec.groups or spec.out % spec.groups:
        raise ShapeError(f"layer {index}: groups {spec.groups} must divide the input channels {shape[0]} "
                         f"and the output channels {spec.out}")
    hw = [conv_output_size(s, spec.kernel, spec.stride, spec.pad, 1) for s in shape[1:]]
    if min(hw) < 1:
        raise ShapeError(f"layer {index}: kernel {spec.kernel} does not fit input {shape}")
    _check_size(index, "conv", spec.out * hw[0] * hw[1], spec.out * (shape[0] // spec.groups) * spec.kernel ** 2)
    block = cuba.Conv(params, shape[0], spec.out, spec.kernel, stride=spec.stride, padding=spec.pad,
                      groups=spec.groups, weight_scale=weight_scale)
    return block, (spec.out, hw[0], hw[1])


def _build_flatten(index: int, spec: LayerSpec, shape: Shape, cuba: Any, params: dict, weight_scale: float) -> Any:
    return cuba.Flatten(), (int(np.prod(shape)),)


def _check_dense(index: int, spec: LayerSpec, shape: Shape) -> None:
    _check_spec(index, spec.kind, spec)
    if len(shape) != 1:
        raise ShapeError(f"layer {index}: dense after shape {shape}; add 'f' (flatten) before it")
    _check_size(index, "dense", spec.out, spec.out * shape[0])


def _build_dense(index: int, spec: LayerSpec, shape: Shape, cuba: Any, params: dict, weight_scale: float) -> Any:
    _check_dense(index, spec, shape)
    return cuba.Dense(params, shape[0], spec.out, weight_scale=weight_scale), (spec.out,)


#: the slayer block (and its output shape) of each layer kind, from (index, spec, in shape, cuba, params, scale);
#: pool layers have no trainable block here (slayer's Pool is not built by architecture strings)
_BLOCK_BUILDERS: dict[str, Any] = {
    "input": _build_input,
    "conv": _build_conv,
    "flatten": _build_flatten,
    "dense": _build_dense,
}


def _build_output(index: int, spec: LayerSpec, shape: Shape, module: Any, params: dict, weight_scale: float) -> Any:
    """The classifier of a sigma-delta net: slayer's sigma ``Output`` block (dense, integrating)."""
    _check_dense(index, spec, shape)
    return module.Output(params, shape[0], spec.out, weight_scale=weight_scale), (spec.out,)


def build(arch: str | Sequence[LayerSpec], input_shape: Sequence[int], num_classes: int | None = None,
          neuron: AnyNeuronConfig | None = None, input_neuron: bool = True, weight_scale: float = 2.0,
          seed: int | None = None, name: str = "snn") -> SNN:
    """Build an :class:`SNN` from an architecture spec.

    ``num_classes`` appends a final ``d<num_classes>`` when the spec does not end in a
    dense layer of that size. ``input_neuron`` prepends an Input neuron block that turns
    analog input into spikes (direct encoding on chip).

    With a :class:`SigmaDeltaConfig` the blocks are slayer's ``sigma_delta`` ones (see the
    module docstring): the Input block (the delta encoder of the input) is always there
    and the last layer, which must be dense, is the sigma ``Output`` block.
    """
    specs = parse_arch(arch) if isinstance(arch, str) else list(arch)
    if num_classes is not None and not (specs[-1].kind == "dense" and specs[-1].out == num_classes):
        if specs[-1].kind == "conv":
            specs.append(LayerSpec("flatten"))
        specs.append(LayerSpec("dense", num_classes))
    neuron = neuron or NeuronConfig()
    sigma_delta = neuron.kind == "sdnn"
    if (input_neuron or sigma_delta) and specs[0].kind != "input":
        specs.insert(0, LayerSpec("input"))
    if sigma_delta and specs[-1].kind != "dense":
        raise ShapeError(f"a sigma-delta net ends in a dense (sigma output) layer, not {specs[-1].kind}; "
                         "end the architecture with d<classes> (or give the number of classes)")
    if seed is not None:
        torch.manual_seed(seed)
    params = neuron.slayer_params()
    module = getattr(slayer().block, neuron.block_module)
    blocks: list[torch.nn.Module] = []
    shape: tuple[int, ...] = tuple(int(s) for s in input_shape)
    for index, spec in enumerate(specs):
        last = index == len(specs) - 1
        builder = _build_output if sigma_delta and last else \
            lookup(_BLOCK_BUILDERS, spec.kind, "slayer block", f"layer {index}")
        block_params = params
        if sigma_delta and not last and spec.kind in ("conv", "dense"):
            block_params = neuron.hidden_params(params, spec.out)
        block, shape = builder(index, spec, shape, module, block_params, weight_scale)
        blocks.append(block)
    blocks[-1].delay_shift = False  # the output layer's spikes at the chip's time steps
    return SNN(blocks, input_shape, neuron=neuron, name=name)


def build_from_meta(meta: dict[str, Any]) -> SNN:
    """Rebuild an untrained model with the sizes recorded by :meth:`SNN.meta`."""
    if meta.get("format") != "neuroprune.snn/1":
        raise ShapeError(f"not a neuroprune SNN description (format={meta.get('format')!r})")
    specs = [LayerSpec(**layer) for layer in meta["layers"]]
    config = lookup(NEURON_CONFIGS, meta.get("neuron_kind", "cuba"), "neuron kind", "model description")
    return build(specs, meta["input_shape"], neuron=config(**meta["neuron"]),
                 input_neuron=False, name=meta.get("name", "snn"))


# ------------------------------------------------------------------------- IR conversion
def _neuron_of(block: torch.nn.Module) -> Neuron:
    params = block.neuron.device_params
    if params["type"] == "SDNN":  # slayer writes type, activation and vThMant (+ sigma_output on Output)
        return Neuron(kind="SDNN", v_th_mant=int(params["vThMant"]), activation=str(params["activation"]),
                      sigma_output=type(block).__name__ == "Output")
    return Neuron(
        kind=str(params["type"]),
        i_decay=int(params["iDecay"]),
        v_decay=int(params["vDecay"]),
        v_th_mant=int(params["vThMant"]),
        ref_delay=int(params["refDelay"]),
        graded_spike=bool(params["gradedSpike"]),
    )


def _mantissa(block: torch.nn.Module, dims: int) -> np.ndarray:
    syn = block.synapse
    with torch.no_grad():
        weight = syn.pre_hook_fx(syn.weight, descale=True)
    weight = weight.detach().cpu().numpy()
    weight = weight.reshape(weight.shape[:dims])
    return np.round(weight).astype(np.int32)


def to_ir(model: SNN) -> Network:
    """The IR of a model: weight mantissas, conv geometry and neuron device parameters."""
    layers: list[Layer] = []
    if _kind(model.blocks[0]) != "input":
        layers.append(InputLayer(shape=model.input_shape))
    for block in model.blocks:
        layers.append(lookup(_IR_LAYERS, _kind(block), "IR form", f"block {type(block).__name__}")(block, model))
    return Network(layers, name=model.name)


def _input_to_ir(block: torch.nn.Module, model: SNN) -> Layer:
    neuron = _neuron_of(block) if block.neuron is not None else None
    return InputLayer(shape=model.input_shape, neuron=neuron)


def _flatten_to_ir(block: torch.nn.Module, model: SNN) -> Layer:
    return FlattenLayer()


def _norm_bias(block: torch.nn.Module) -> np.ndarray | None:
    """Per-channel bias mantissa of a block with a normalising neuron (slayer's mean-only batch
    norm: ``-quantize_8bit(running_mean)`` in mantissa units, what its ``export_hdf5`` writes)."""
    norm = getattr(block.neuron, "norm", None)
    if norm is None or type(block).__name__ == "Output":  # slayer's Output block writes no bias
        return None
    with torch.no_grad():
        bias = norm.bias.detach().cpu().numpy().flatten()
    return np.round(bias).astype(np.int32)


def _dense_to_ir(block: torch.nn.Module, model: SNN) -> Layer:
    delay = None
    if block.delay is not None:
        delay = torch.floor(block.delay.delay).flatten().detach().cpu().numpy().astype(np.int32)
    return DenseLayer(weight=_mantissa(block, 2), neuron=_neuron_of(block), delay=delay, bias=_norm_bias(block))


def _conv_to_ir(block: torch.nn.Module, model: SNN) -> Layer:
    syn = block.synapse
    return ConvLayer(
        weight=_mantissa(block, 4), neuron=_neuron_of(block), bias=_norm_bias(block),
        stride=tuple(int(s) for s in syn.stride[:2]),
        padding=tuple(int(p) for p in syn.padding[:2]),
        dilation=tuple(int(d) for d in syn.dilation[:2]),
        groups=int(syn.groups),
    )


#: the IR layer of each slayer block kind (see :func:`_kind`)
_IR_LAYERS: dict[str, Any] = {
    "input": _input_to_ir,
    "flatten": _flatten_to_ir,
    "dense": _dense_to_ir,
    "conv": _conv_to_ir,
}


def _input_spec(index: int, layer: InputLayer) -> list[LayerSpec]:
    return [LayerSpec("input")] if layer.neuron is not None else []


def _conv_spec(index: int, layer: ConvLayer) -> list[LayerSpec]:
    if layer.delay is not None:
        raise UnsupportedLayerError(f"layer {index}: conv with synaptic delays cannot be trained")
    if layer.dilation != (1, 1) or layer.stride[0] != layer.stride[1] or layer.padding[0] != layer.padding[1] \
            or layer.kernel_size[0] != layer.kernel_size[1]:
        raise UnsupportedLayerError(f"layer {index}: only square kernels, strides and paddings without dilation")
    return [LayerSpec("conv", layer.out_channels, layer.kernel_size[0], layer.stride[0], layer.padding[0],
                      layer.groups)]


def _dense_spec(index: int, layer: DenseLayer) -> list[LayerSpec]:
    if layer.delay is not None and np.any(layer.delay):
        raise UnsupportedLayerError(f"layer {index}: dense with synaptic delays cannot be trained")
    return [LayerSpec("dense", layer.out_channels)]


def _flatten_spec(index: int, layer: FlattenLayer) -> list[LayerSpec]:
    return [LayerSpec("flatten")]


#: the architecture specs of each IR kind a slayer model can train (pool: none, see :data:`_BLOCK_BUILDERS`)
_SPECS: dict[str, Any] = {
    "input": _input_spec,
    "conv": _conv_spec,
    "dense": _dense_spec,
    "flatten": _flatten_spec,
}


def from_ir(network: Network, neuron: NeuronConfig | None = None) -> SNN:
    """A trainable model with the IR's weights and neuron parameters.

    Exact for mantissas slayer can represent (even integers in [-256, 254]); the first
    synaptic layer's neuron parameters set the training neuron config unless given.
    Synaptic delays and pool layers are refused (slayer blocks cannot train them here).
    """
    specs: list[LayerSpec] = []
    neurons = [layer.neuron for layer in network.layers if getattr(layer, "neuron", None) is not None]
    for index, layer in enumerate(network.layers):
        if getattr(layer, "neuron", None) is not None and not layer.neuron.is_lif:
            raise UnsupportedLayerError(
                f"layer {index}: {layer.neuron.kind} neurons are not rebuilt as a trainable model from a netx file "
                "(CUBA/LOIHI only); train a sigma-delta net with 'neuroprune train --neuron sdnn'"
            )
    if neuron is None:
        if not neurons:
            raise ShapeError("the network has no neurons to take parameters from")
        neuron = NeuronConfig.from_neuron(neurons[0])
    for index, layer in enumerate(network.layers):
        if getattr(layer, "neuron", None) is not None and layer.neuron != neurons[0]:
            raise UnsupportedLayerError(
                f"layer {index}: neuron parameters differ between layers; one parameter set per model is supported"
            )
        specs.extend(lookup(_SPECS, layer.kind, "slayer block", f"layer {index}")(index, layer))
    model = build(specs, network.input_shape, neuron=neuron, input_neuron=False, name=network.name)
    with torch.no_grad():
        synaptic = [layer for layer in network.layers if layer.synaptic]
        blocks = [b for b in model.blocks if _kind(b) in ("conv", "dense")]
        for layer, block in zip(synaptic, blocks):
            weight = torch.as_tensor(layer.effective_weight, dtype=torch.float32) / WEIGHT_SCALE
            block.synapse.weight.data.copy_(weight.reshape(block.synapse.weight.shape))
    return model


# ----------------------------------------------------------------------------- files
def save_model(path: str, model: SNN, meta: dict[str, Any] | None = None) -> Any:
    """Write ``model`` as a neuroprune checkpoint (weights + rebuild description)."""
    from neuroprune.snn.checkpoint import save_checkpoint

    return save_checkpoint(path, model.state_dict(), {**(meta or {}), "model": model.meta()})


def load_model(path: str) -> tuple[SNN, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_model` (``weights_only`` loading)."""
    from neuroprune.errors import CheckpointError
    from neuroprune.snn.checkpoint import load_checkpoint

    state, meta = load_checkpoint(path)
    if "model" not in meta:
        raise CheckpointError(f"{path}: the checkpoint has no model description; save it with save_model()")
    try:
        model = build_from_meta(meta["model"])
    except (ShapeError, UnsupportedLayerError) as err:
        raise CheckpointError(f"{path}: the model description is refused: {err}") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: the model description is broken ({type(err).__name__}: {err}); "
                              "re-create the checkpoint") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model description ({str(err).splitlines()[0]})") from None
    check_weights(model, path)
    return model, meta


def check_weights(model: SNN, source: str) -> None:
    """Refuse non-finite parameters and weights far outside the chip's 8-bit mantissa
    range (what a corrupted or hand-edited checkpoint holds, never a trained one)."""
    from neuroprune.errors import CheckpointError

    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: {name} holds NaN or infinite values; the checkpoint is corrupt, "
                                  "re-create it (neuroprune train)")
        if name.endswith("synapse.weight") and tensor.numel():
            largest = float(tensor.abs().max()) * WEIGHT_SCALE
            if largest > MAX_STORED_WEIGHT_MANTISSA:
                raise CheckpointError(
                    f"{source}: {name} has a weight of mantissa {largest:.3g}, beyond {MAX_STORED_WEIGHT_MANTISSA} "
                    f"(the chip's 8-bit range is [{MANTISSA_MIN}, {MANTISSA_MAX}]); the checkpoint is corrupt, "
                    "re-create it"
                )
