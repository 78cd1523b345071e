"""Bit-exact fixed-point simulation of an IR network, batched on torch.

This reproduces what Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` computes for a
netx network (``lava/proc/lif/models.py`` ``PyLifModelBitAcc``,
``lava/proc/dense/models.py`` ``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc``,
``lava/proc/conv/models.py`` ``PyConvModelFixed`` and the netx block wiring), for a
whole batch at once:

- Dense synapses: netx rescales the weights (``optimize_weight_bits``), Lava clips them
  to 8 bits and truncates to ``num_weight_bits``, accumulates the weights of the spiking
  inputs and shifts the sum by ``weight_exp`` (arithmetic shift: floor).
- Conv synapses: integer correlation of the stored weights, wrapped to 24 bits (Lava
  sums in float64 and casts to int32 first: a sum beyond the int32 range becomes
  ``-2**31``, see :func:`neuroprune.snn.fixed_sdnn.graded_conv`).
- Graded spikes (sigma-delta neurons, ``Neuron.sends_graded``): the synapses weight the
  int32 payloads instead of 0/1 spikes; the neurons are in :mod:`neuroprune.snn.fixed_sdnn`.
- Every synapse delivers at step ``t`` what it received at ``t - 1`` (plus its delay);
  an input neuron layer receives the input of the same step.
- CUBA neuron: ``u = sround(u * (4096 - iDecay) / 4096) + (a << 6)`` wrapped at 24 bits;
  ``v = sround(v * (4096 - vDecay) / 4096) + u + (bias << 6)`` clipped to 24 bits;
  spike when ``v > vThMant << 6``; ``v = 0`` after a spike. ``sround`` truncates toward
  zero, as Lava's ``sign(x) * (|x| >> 12)`` does.
- Periodic reset (lava-dl netx's ``reset_interval``, Lava's ``LIFReset``): each LIF layer
  zeroes ``u`` and ``v`` one step after the layer before it, see :func:`reset_phases`.
- Resonate-and-fire neurons, recurrent (``dense_rec``) and complex (``dense_comp``) dense
  synapses: :mod:`neuroprune.snn.fixed_rf` (registered at the end of this module). A
  synapse with a ``wrap_model`` method also acts inside the step loop of its layer.

Input ``x`` is ``(N, *input_shape, T)`` integers: the input neuron's input mantissa when
the network has an input neuron layer, else binary spikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import ConvLayer, DenseLayer, Network, Neuron, PoolLayer
from neuroprune.ir import ConcatLayer, ConvTransposeLayer, UnpoolLayer
from neuroprune.loihi_arith import (
    ACT_SHIFT,
    BIAS_EXP,
    DECAY_UNITY,
    MANTISSA_MAX,
    MANTISSA_MIN,
    MAX_DELAY,
    MAX_V_TH_MANT,
    STATE_BITS,
    VTH_SHIFT,
    shift_right,
)
from neuroprune.registry import lookup
from neuroprune.snn.fixed_sdnn import graded_conv as _graded_conv
from neuroprune.snn.fixed_sdnn import graded_dense as _graded_dense
from neuroprune.snn.fixed_sdnn import sdnn_neuron

__all__ = ["FixedPointResult", "run_fixed", "reset_phases", "RESET_BLOCKS", "dense_synapse_weights", "NEURON_MODELS", "SYNAPSES"]

MAX_UV = 1 << (STATE_BITS - 1)


@dataclass
class FixedPointResult:
    """Output messages ``(N, *shape, T)`` of every neuron-bearing layer, keyed by layer
    index: int8 spikes (0/1), or int32 payloads for neurons that send graded spikes;
    optionally voltages ``v`` (int64, after reset) and LIF currents ``u`` of the same layers."""

    spikes: dict[int, torch.Tensor]
    voltages: dict[int, torch.Tensor] | None = None
    currents: dict[int, torch.Tensor] | None = None  # LIF synaptic currents ``u``, when recorded

    def output(self) -> torch.Tensor:
        return self.spikes[max(self.spikes)]


def dense_synapse_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Stored dense weights -> (weights as Lava applies them, right shift of the sum).

    Mirrors ``lava.lib.dl.netx.utils.optimize_weight_bits`` followed by Lava's
    ``clip_weights`` (8 bits) and ``truncate_weights``.
    """
    weight = np.asarray(weight).astype(np.int64)
    if not weight.any():
        return weight, 0
    max_w, min_w = int(weight.max()), int(weight.min())
    if max_w > MANTISSA_MAX and min_w < 0:
        weight = np.clip(weight, MANTISSA_MIN, MANTISSA_MAX)
        max_w = int(weight.max())
    if min_w < MANTISSA_MIN and max_w > 0:
        weight = np.clip(weight, MANTISSA_MIN, MANTISSA_MAX)
        min_w = int(weight.min())
    if max_w < 0:
        mode, signed, scale = "inh", 0, -256 / min_w
    elif min_w >= 0:
        mode, signed, scale = "exc", 0, 255 / max_w
    else:
        # numpy's 127 / 0 is inf in lava-dl (a non-positive matrix with zeros): the negative scale decides
        mode, signed, scale = "mixed", 1, min(127 / max_w if max_w else np.inf, -128 / min_w)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(weight / 2**n - np.round(weight / 2**n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    weight = np.left_shift(weight.astype(np.int32), scale_bits).astype(np.int64)
    # Lava's clip_weights(num_bits=8) then truncate_weights(num_weight_bits)
    if mode == "inh":
        weight = -weight
    mixed = int(mode == "mixed")
    weight = np.clip(weight, -(2**8) * mixed, 2**8 - 1)
    truncate = 8 - num_weight_bits + mixed
    weight = (weight >> truncate) << truncate
    if mode == "inh":
        weight = -weight
    return weight, -weight_exp


def _signed_wrap(values: torch.Tensor, bits: int) -> torch.Tensor:
    base = 1 << bits
    if values.numel() and int(values.abs().max()) < base // 2:
        return values  # nothing to wrap (the common case); skip the modulo pass
    return torch.remainder(values + base // 2, base) - base // 2


class _Lif:
    """Lava's PyLifModelBitAcc for a batch of populations."""

    def __init__(self, neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                 device: torch.device, is_input: bool = False) -> None:
        self.u = torch.zeros((batch, *shape), dtype=torch.int64, device=device)
        self.v = torch.zeros_like(self.u)
        self.keep_u = DECAY_UNITY - neuron.i_decay  # du = iDecay - 1, plus ds_offset 1
        self.keep_v = DECAY_UNITY - neuron.v_decay
        self.vth = int(neuron.v_th_mant) << VTH_SHIFT
        if bias is None:
            self.bias: torch.Tensor | int = 0
        else:
            bias_t = torch.as_tensor(np.asarray(bias).astype(np.int64), device=device)
            if bias_t.numel() == shape[0] and len(shape) > 1:  # channel-wise bias
                bias_t = bias_t.reshape(shape[0], *([1] * (len(shape) - 1)))
            self.bias = bias_t << BIAS_EXP

    @staticmethod
    def _decay(state: torch.Tensor, keep: int) -> torch.Tensor:
        # sign(x) * (|x| >> 12) is division by 4096 truncated toward zero
        return torch.div(state * keep, DECAY_UNITY, rounding_mode="trunc")

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        current = self._decay(self.u, self.keep_u) + (activation << ACT_SHIFT)
        wrapped = torch.where(current > MAX_UV, current - 2 * MAX_UV, current)
        wrapped = torch.where(wrapped <= -MAX_UV, current + 2 * MAX_UV, wrapped)
        self.u = wrapped
        voltage = self._decay(self.v, self.keep_v) + self.u + self.bias
        self.v = torch.clamp_(voltage, -MAX_UV + 1, MAX_UV - 1)
        spikes = self.v > self.vth
        self.v.masked_fill_(spikes, 0)
        return spikes

    def reset(self) -> None:
        """Lava's ``LIFReset`` at a reset step: ``u`` and ``v`` are zeroed before the update."""
        self.u.zero_()
        self.v.zero_()


#: the neuron model of each neuron type, from (neuron, shape, batch, bias or None, device,
#: is_input: the network's input layer); ``step(activation)`` returns the layer's output
#: messages for one time step (spikes, or graded payloads) and keeps the voltage in ``v``
NEURON_MODELS: dict[str, Callable[..., Any]] = {
    "CUBA": _Lif,
    "LOIHI": _Lif,  # the same compartment on Loihi
    "SDNN": sdnn_neuron,  # Delta / SigmaDelta / Sigma, see fixed_sdnn
}


def _neuron_model(neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                  device: torch.device, where: str, is_input: bool = False) -> Any:
    factory = NEURON_MODELS.get(neuron.kind)
    if factory is None:
        raise UnsupportedLayerError(f"{where}: the fixed-point model supports {'/'.join(NEURON_MODELS)} neurons, "
                                    f"not {neuron.kind}")
    try:
        return factory(neuron, shape, batch, bias, device, is_input)
    except ShapeError as err:
        raise ShapeError(f"{where}: {err}") from None


class _DenseSynapse:
    def __init__(self, layer: DenseLayer, device: torch.device) -> None:
        self.layer = layer
        weight, self.shift = dense_synapse_weights(layer.effective_weight)
        self.weight = torch.as_tensor(weight, dtype=torch.float64, device=device)
        self.delays: list[tuple[int, torch.Tensor]] = []
        if layer.delay is not None:
            delay = np.clip(np.asarray(layer.delay), 0, MAX_DELAY)
            out, inp = weight.shape
            if delay.ndim == 0:
                delay = np.full(weight.shape, int(delay))
            elif delay.ndim == 1 and delay.size == out:
                delay = np.repeat(delay.reshape(-1, 1), inp, axis=1)
            elif delay.ndim == 1 and delay.size == inp:
                delay = np.repeat(delay.reshape(1, -1), out, axis=0)
            elif delay.shape != weight.shape:
                raise ShapeError(f"dense layer {layer.name!r}: delay shape {delay.shape} does not fit weight {weight.shape}")
            self.delays = [
                (int(d), torch.as_tensor(np.where(delay == d, weight, 0), dtype=torch.float64, device=device))
                for d in np.unique(delay)
            ]

    def __call__(self, spikes: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """Synaptic input per delay for a batch of spike vectors (rows).

        Graded payloads (int32 rows) are summed as Lava's graded dense model does, in
        ``int32`` (wrapping at 32 bits) before the shift; float64 sums them exactly while
        every sum stays below 2**53, else int64 does."""
        if spikes.dtype != torch.int32:
            flat = spikes.reshape(spikes.shape[0], -1).to(torch.float64)
            if not self.delays:
                parts = [(0, flat @ self.weight.T)]
            else:
                parts = [(d, flat @ w.T) for d, w in self.delays]
            return [(d, shift_right(torch.round(p).to(torch.int64), self.shift)) for d, p in parts]
        return _graded_dense(self, spikes.reshape(spikes.shape[0], -1))


class _ConvSynapse:
    def __init__(self, layer: ConvLayer, device: torch.device) -> None:
        self.weight = torch.as_tensor(layer.effective_weight.astype(np.float64), device=device)
        self.layer = layer
        if layer.delay is not None and np.any(layer.delay):
            raise ShapeError(f"conv layer {layer.name!r}: synaptic delays on conv layers are not run by netx")

    def __call__(self, spikes: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        # float32 sums integers exactly below 2**24; use it when no sum can reach that
        fan_in = self.weight[0].numel()
        bound = float(self.weight.abs().max()) * float(spikes.abs().max()) * fan_in if spikes.numel() else 0.0
        if bound >= 2 ** 24:  # large graded payloads: exact float64, as Lava's scipy conv
            return [(0, _signed_wrap(_graded_conv(self, spikes), STATE_BITS))]
        out = F.conv2d(spikes.to(torch.float32), self.weight.to(torch.float32), stride=self.layer.stride,
                       padding=self.layer.padding, dilation=self.layer.dilation, groups=self.layer.groups)
        return [(0, _signed_wrap(torch.round(out).to(torch.int64), STATE_BITS))]

    def conv(self, rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(rows, weight, stride=self.layer.stride, padding=self.layer.padding,
                        dilation=self.layer.dilation, groups=self.layer.groups)


def _delayed(values: torch.Tensor, delay: int) -> torch.Tensor:
    """``values`` (T, N, ...) delivered ``delay`` steps later (zeros before)."""
    if delay <= 0:
        return values
    out = torch.zeros_like(values)
    if delay < values.shape[0]:
        out[delay:] = values[:-delay]
    return out


def _dense(layer: DenseLayer, in_shape: tuple[int, ...], device: torch.device) -> _DenseSynapse:
    return _DenseSynapse(layer, device)


def _conv(layer: ConvLayer, in_shape: tuple[int, ...], device: torch.device) -> _ConvSynapse:
    return _ConvSynapse(layer, device)


def _pool(layer: PoolLayer, in_shape: tuple[int, ...], device: torch.device) -> _ConvSynapse:
    return _ConvSynapse(layer.as_conv(in_shape[0]), device)  # sum pooling = depthwise conv, one shared weight


class _ConvTransposeSynapse:
    """A transposed convolution with the arithmetic of the dense synapses Lava runs it with
    (lava-dl netx's dense block on :meth:`~neuroprune.ir.ConvTransposeLayer.unrolled_weight`,
    see ``converters.lava_build``), computed without the matrix: the dense weight scaling of
    :func:`dense_synapse_weights` depends only on the set of values the matrix holds (the
    kernel taps, and 0 where the matrix has any zero) and maps each value alike; the sum of
    the scaled taps of the spiking inputs is a transposed convolution, then shifted."""

    def __init__(self, layer: ConvTransposeLayer, in_shape: tuple[int, ...], device: torch.device) -> None:
        if layer.delay is not None and np.any(layer.delay):
            raise UnsupportedLayerError(f"convT layer {layer.name!r} with synaptic delays is not supported: "
                                        "Lava runs it without delays; train it without delays")
        self.layer, self.in_shape = layer, tuple(in_shape)
        kernel = layer.effective_weight.astype(np.int64)
        stored = layer.unrolled_nonzero(in_shape)
        values = np.unique(kernel)
        if stored < int(np.prod(layer.output_shape(in_shape))) * int(np.prod(in_shape)):
            values = np.union1d(values, [0])  # the unrolled matrix holds zeros too
        scaled, self.shift = dense_synapse_weights(values)
        self.weight = torch.as_tensor(scaled[np.searchsorted(values, kernel)].astype(np.float64), device=device)

    def __call__(self, spikes: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        layer = self.layer
        out = F.conv_transpose2d(spikes.reshape(-1, *self.in_shape).to(torch.float64), self.weight,
                                 stride=layer.stride, padding=layer.padding, groups=layer.groups,
                                 dilation=layer.dilation)
        summed = torch.round(out).to(torch.int64)  # then the dense synapse's arithmetic shift (floor)
        return [(0, shift_right(summed, self.shift))]


def _conv_transpose(layer: ConvTransposeLayer, in_shape: tuple[int, ...],
                    device: torch.device) -> _ConvTransposeSynapse:
    return _ConvTransposeSynapse(layer, in_shape, device)


def _unpool(layer: UnpoolLayer, in_shape: tuple[int, ...], device: torch.device) -> _ConvTransposeSynapse:
    return _ConvTransposeSynapse(layer.as_conv_transpose(in_shape[0]), in_shape, device)  # one weight per tap


#: the synapse (``layer`` attribute: the layer it computes) of each synaptic kind, from (layer, input shape, device)
SYNAPSES: dict[str, Callable[[Any, tuple[int, ...], torch.device], Any]] = {
    "dense": _dense,
    "conv": _conv,
    "convT": _conv_transpose,
    "pool": _pool,
    "unpool": _unpool,
}


def _joined(network: Network, index: int, outputs: dict[int, torch.Tensor]) -> torch.Tensor:
    """A concat's output ``(T, N, *shape)``: its sources' outputs joined along channels."""
    parts = [outputs[source].reshape(*outputs[source].shape[:2], *network.shapes[source]).to(torch.int64)
             for source in network.sources_of(index)]
    return torch.cat(parts, dim=2)


#: the lava-dl netx block that takes ``reset_interval`` (and the next reset phase) for each layer kind
RESET_BLOCKS: dict[str, str] = {"input": "Input", "conv": "Conv", "dense": "Dense", "dense_rec": "RecurrentDense"}


def reset_phases(network: Network, interval: int, offset: int = 0) -> dict[int, int]:
    """The reset phase (in ``0 .. interval - 1``) of every neuron-bearing layer when netx
    builds ``network`` with ``reset_interval=interval, reset_offset=offset``: its ``k``-th
    block resets ``u`` and ``v`` at the steps ``t`` (from 0) with ``t % interval ==
    (offset + k) % interval`` (lava-dl's ``hdf5.Network`` gives block ``k`` the offset
    ``offset + 1 + k`` on a clock that starts at 1), so each layer restarts when the first
    step of a sample reaches it. Only LIF neurons (CUBA, LOIHI) reset; netx ignores the
    reset of the others."""
    if interval < 1:
        raise ShapeError(f"reset interval {interval} must be at least 1 step")
    phases = {}
    for k, index in enumerate(network.compartment_indices()):
        lookup(RESET_BLOCKS, network[index].kind, "periodic reset in lava-dl's netx (run without a reset interval)",
               f"layer {index}")
        phases[index] = (offset + k) % interval
    return phases


def run_fixed(network: Network, x: torch.Tensor | np.ndarray, record_voltage: bool = False,
              device: str | torch.device = "cpu", reset_interval: int | None = None,
              reset_offset: int = 0, record_current: bool = False) -> FixedPointResult:
    """Run ``network`` bit-exactly as Lava's fixed-point simulation would.

    The network is run layer by layer: a layer's synaptic input for all time steps is
    one batched matrix product or convolution of the previous layer's spikes (shifted
    by the one-step synaptic delay plus any programmed delay), then its neurons step
    through time on contiguous time-first tensors. This gives the same numbers as a
    step-by-step simulation because synapses are linear and time-invariant.

    Parameters
    ----------
    x : (N, *input_shape, T) integers (input mantissas for an input neuron layer, else
        binary spikes).
    record_voltage : also return membrane voltages (chip units, after reset).
    reset_interval, reset_offset : zero the LIF states periodically as lava-dl's netx does
        with ``hdf5.Network(reset_interval=..., reset_offset=...)`` (see :func:`reset_phases`);
        ``None``: no reset.
    record_current : also return the LIF synaptic currents ``u`` (chip units).

    Returns
    -------
    FixedPointResult with the spikes ``(N, *shape, T)`` of every layer that has neurons.
    """
    device = torch.device(device)
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(device=device, dtype=torch.int64)
    if tuple(x.shape[1:-1]) != network.input_shape:
        raise ShapeError(f"input shape {tuple(x.shape[1:-1])} does not match the network input {network.input_shape}")
    batch, steps = x.shape[0], x.shape[-1]
    time_first = list(range(x.ndim))
    time_first = [time_first[-1]] + time_first[:-1]  # (N, ..., T) -> (T, N, ...)
    current = x.permute(*time_first).contiguous()
    spikes: dict[int, torch.Tensor] = {}
    voltages: dict[int, torch.Tensor] | None = {} if record_voltage else None
    currents: dict[int, torch.Tensor] | None = {} if record_current else None
    phases = reset_phases(network, reset_interval, reset_offset) if reset_interval is not None else {}

    def run_neurons(index: int, neuron: Neuron, model: Any, drive: torch.Tensor, base: Any) -> torch.Tensor:
        dtype = torch.int32 if neuron.sends_graded else torch.int8
        out = torch.empty(drive.shape, dtype=dtype, device=device)
        trace = torch.empty(drive.shape, dtype=torch.int64, device=device) if voltages is not None else None
        has_u = currents is not None and hasattr(base, "u")
        u_trace = torch.empty(drive.shape, dtype=torch.int64, device=device) if has_u else None
        resets = index in phases and hasattr(base, "reset")  # LIF neurons; netx ignores the others' reset
        for t in range(steps):
            if resets and t % reset_interval == phases[index]:
                base.reset()
            out[t] = model.step(drive[t])
            if trace is not None:
                trace[t] = model.v
            if u_trace is not None:
                u_trace[t] = base.u
        back = list(range(1, drive.ndim)) + [0]  # (T, N, ...) -> (N, ..., T)
        spikes[index] = out.permute(*back)
        if voltages is not None:
            voltages[index] = trace.permute(*back)
        if u_trace is not None:
            currents[index] = u_trace.permute(*back)
        return out

    outputs: dict[int, torch.Tensor] = {}  # (T, N, ...) each layer's output, for concat layers
    for index, layer in enumerate(network.layers):
        shape = network.shapes[index]
        if index:
            outputs[index - 1] = current  # references only (spikes already holds the neuron outputs)
        if isinstance(layer, ConcatLayer):
            current = _joined(network, index, outputs)
            continue
        if not layer.synaptic:  # the input (its neurons encode), or a pass-through: the next synapse reshapes
            if layer.holds_compartments:
                model = _neuron_model(layer.neuron, shape, batch, None, device, f"layer {index} ({layer.name})",
                                      is_input=True)
                current = run_neurons(index, layer.neuron, model, current, model)
            continue
        synapse = lookup(SYNAPSES, layer.kind, "fixed-point synapse", f"layer {index}")(
            layer, network.input_shape_of(index), device)
        layer = synapse.layer
        rows = current.reshape(steps * batch, *current.shape[2:])
        if isinstance(synapse, _ConvSynapse):
            rows = rows.reshape(steps * batch, *network.input_shape_of(index))
        drive = torch.zeros((steps, batch, *shape), dtype=torch.int64, device=device)
        for delay, part in synapse(rows):
            drive += _delayed(part.reshape(steps, batch, *shape), 1 + delay)
        neuron = layer.neuron or Neuron(i_decay=0, v_decay=DECAY_UNITY, v_th_mant=MAX_V_TH_MANT)
        model = base = _neuron_model(neuron, shape, batch, layer.bias, device, f"layer {index} ({layer.name})")
        if hasattr(synapse, "wrap_model"):  # a synapse that also acts step by step (recurrent, complex)
            model = synapse.wrap_model(model, rows, steps)
        current = run_neurons(index, neuron, model, drive, base)
    return FixedPointResult(spikes=spikes, voltages=voltages, currents=currents)


from neuroprune.snn import fixed_rf  # noqa: E402,F401  registers RF neurons, dense_rec and dense_comp
