"""Bit-exact fixed-point simulation of an IR network, batched on torch.

This reproduces what Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` computes for a
netx network (``lava/proc/lif/models.py`` ``PyLifModelBitAcc``,
``lava/proc/dense/models.py`` ``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc``,
``lava/proc/conv/models.py`` ``PyConvModelFixed`` and the netx block wiring), for a
whole batch at once:

- Dense synapses: netx rescales the weights (``optimize_weight_bits``), Lava clips them
  to 8 bits and truncates to ``num_weight_bits``, accumulates the weights of the spiking
  inputs and shifts the sum by ``weight_exp`` (arithmetic shift: floor).
- Conv synapses: integer correlation of the stored weights, wrapped to 24 bits.
- Every synapse delivers at step ``t`` what it received at ``t - 1`` (plus its delay);
  an input neuron layer receives the input of the same step.
- CUBA neuron: ``u = sround(u * (4096 - iDecay) / 4096) + (a << 6)`` wrapped at 24 bits;
  ``v = sround(v * (4096 - vDecay) / 4096) + u + (bias << 6)`` clipped to 24 bits;
  spike when ``v > vThMant << 6``; ``v = 0`` after a spike. ``sround`` truncates toward
  zero, as Lava's ``sign(x) * (|x| >> 12)`` does.

Input ``x`` is ``(N, *input_shape, T)`` integers: the input neuron's input mantissa when
the network has an input neuron layer, else binary spikes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neuroprune.errors import ShapeError
from neuroprune.ir import ConvLayer, DenseLayer, InputLayer, Network, Neuron, PoolLayer

__all__ = ["FixedPointResult", "run_fixed", "dense_synapse_weights"]

UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)
DECAY_UNITY = 1 << 12
ACT_SHIFT = 6
VTH_SHIFT = 6
BIAS_EXP = 6
MAX_DELAY = 62


@dataclass
class FixedPointResult:
    """Spikes ``(N, *shape, T)`` (int8) of every neuron-bearing layer, keyed by layer
    index; optionally voltages ``v`` (int64, after reset) of the same layers."""

    spikes: dict[int, torch.Tensor]
    voltages: dict[int, torch.Tensor] | None = None

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
    if max_w > 254 and min_w < 0:
        weight = np.clip(weight, -256, 254)
        max_w = int(weight.max())
    if min_w < -256 and max_w > 0:
        weight = np.clip(weight, -256, 254)
        min_w = int(weight.min())
    if max_w < 0:
        mode, signed, scale = "inh", 0, -256 / min_w
    elif min_w >= 0:
        mode, signed, scale = "exc", 0, 255 / max_w
    else:
        mode, signed, scale = "mixed", 1, min(127 / max_w, -128 / min_w)
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


def _shift_right(values: torch.Tensor, shift: int) -> torch.Tensor:
    if shift > 0:
        return torch.bitwise_right_shift(values, shift)
    if shift < 0:
        return torch.bitwise_left_shift(values, -shift)
    return values


def _signed_wrap(values: torch.Tensor, bits: int) -> torch.Tensor:
    base = 1 << bits
    return torch.remainder(values + base // 2, base) - base // 2


class _Lif:
    """Lava's PyLifModelBitAcc for a batch of populations."""

    def __init__(self, neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                 device: torch.device) -> None:
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
        product = state * keep
        return torch.sign(product) * torch.bitwise_right_shift(torch.abs(product), 12)

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        current = self._decay(self.u, self.keep_u) + (activation << ACT_SHIFT)
        wrapped = torch.where(current > MAX_UV, current - 2 * MAX_UV, current)
        wrapped = torch.where(wrapped <= -MAX_UV, current + 2 * MAX_UV, wrapped)
        self.u = wrapped
        voltage = self._decay(self.v, self.keep_v) + self.u + self.bias
        self.v = torch.clamp(voltage, -MAX_UV + 1, MAX_UV - 1)
        spikes = self.v > self.vth
        self.v = torch.where(spikes, torch.zeros_like(self.v), self.v)
        return spikes


class _DenseSynapse:
    def __init__(self, layer: DenseLayer, device: torch.device) -> None:
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
        flat = spikes.reshape(spikes.shape[0], -1).to(torch.float64)
        if not self.delays:
            parts = [(0, flat @ self.weight.T)]
        else:
            parts = [(d, flat @ w.T) for d, w in self.delays]
        return [(d, _shift_right(torch.round(p).to(torch.int64), self.shift)) for d, p in parts]


class _ConvSynapse:
    def __init__(self, layer: ConvLayer, device: torch.device) -> None:
        self.weight = torch.as_tensor(layer.effective_weight.astype(np.float64), device=device)
        self.layer = layer
        if layer.delay is not None and np.any(layer.delay):
            raise ShapeError(f"conv layer {layer.name!r}: synaptic delays on conv layers are not run by netx")

    def __call__(self, spikes: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        out = F.conv2d(spikes.to(torch.float64), self.weight, stride=self.layer.stride,
                       padding=self.layer.padding, dilation=self.layer.dilation, groups=self.layer.groups)
        return [(0, _signed_wrap(torch.round(out).to(torch.int64), 24))]


def run_fixed(network: Network, x: torch.Tensor | np.ndarray, record_voltage: bool = False,
              device: str | torch.device = "cpu") -> FixedPointResult:
    """Run ``network`` bit-exactly as Lava's fixed-point simulation would.

    Parameters
    ----------
    x : (N, *input_shape, T) integers (input mantissas for an input neuron layer, else
        binary spikes).
    record_voltage : also return membrane voltages (chip units).

    Returns
    -------
    FixedPointResult with the spikes of every layer that has neurons.
    """
    device = torch.device(device)
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(device=device, dtype=torch.int64)
    if tuple(x.shape[1:-1]) != network.input_shape:
        raise ShapeError(f"input shape {tuple(x.shape[1:-1])} does not match the network input {network.input_shape}")
    batch, steps = x.shape[0], x.shape[-1]
    first = network[0]
    assert isinstance(first, InputLayer)
    stages = []  # (layer index, synapse or None, lif or None)
    for index, layer in enumerate(network.layers):
        if isinstance(layer, InputLayer):
            lif = None if layer.neuron is None else _Lif(layer.neuron, network.shapes[0], batch, None, device)
            stages.append((index, None, lif))
        elif isinstance(layer, (DenseLayer, ConvLayer, PoolLayer)):
            if isinstance(layer, PoolLayer):
                layer = layer.as_conv(network.input_shape_of(index)[0])
            synapse = _DenseSynapse(layer, device) if isinstance(layer, DenseLayer) else _ConvSynapse(layer, device)
            neuron = layer.neuron or Neuron(i_decay=0, v_decay=4096, v_th_mant=(1 << 17) - 1)
            stages.append((index, synapse, _Lif(neuron, network.shapes[index], batch, layer.bias, device)))
        # flatten: shapes only
    spikes = {i: torch.zeros((batch, *network.shapes[i], steps), dtype=torch.int8, device=device)
              for i, _, lif in stages if lif is not None}
    voltages = {i: torch.zeros((batch, *network.shapes[i], steps), dtype=torch.int64, device=device)
                for i in spikes} if record_voltage else None
    # pending[k][d]: activation that synapse k delivers d steps from now
    pending: dict[int, list[torch.Tensor]] = {}
    for k, (index, synapse, _) in enumerate(stages):
        if synapse is not None:
            depth = 1 + (max((d for d, _ in synapse.delays), default=0) if isinstance(synapse, _DenseSynapse) else 0)
            zero = torch.zeros((batch, *network.shapes[index]), dtype=torch.int64, device=device)
            pending[k] = [zero.clone() for _ in range(depth + 1)]
    for t in range(steps):
        previous = x[..., t]
        for k, (index, synapse, lif) in enumerate(stages):
            if synapse is None:
                out = previous if lif is None else lif.step(previous)
            else:
                queue = pending[k]
                activation = queue.pop(0)  # what was sent from the previous step
                queue.append(torch.zeros_like(activation))
                shape = network.shapes[index]
                for delay, value in synapse(previous):
                    queue[delay] = queue[delay] + value.reshape(batch, *shape)
                out = lif.step(activation)
            if lif is not None:
                spikes[index][..., t] = out.to(torch.int8)
                if voltages is not None:
                    voltages[index][..., t] = lif.v
            previous = out.to(torch.int64)
    return FixedPointResult(spikes=spikes, voltages=voltages)
