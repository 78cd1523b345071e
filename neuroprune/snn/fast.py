"""A fused no-grad forward pass of an :class:`~neuroprune.snn.model.SNN`, spike for
spike identical to slayer's.

slayer's CPU path runs each CUBA neuron as two leaky integrators over time on
time-last tensors: every step slices a strided column, converts float to int64, shifts
towards zero with six element-wise passes and writes the state back as float. Candidate
evaluation in a pruning search runs thousands of such forwards without gradients, and
on small nets that bookkeeping is nearly all the time. This module runs the same
arithmetic without it:

- time-first layout ``(T, N, ...)``: a step is one contiguous slice, and a conv over
  all steps is one ``conv2d`` over ``T * N`` images (slayer: ``conv3d`` with a
  ``k x k x 1`` kernel, the same sums);
- the neuron state as integers, in place: the current is
  ``trunc(i * (4096 - d_i) / 4096) + trunc(64 * z)``, the voltage likewise from the
  current; a spike where the voltage reaches the threshold, then the voltage resets to
  0 -- the integer arithmetic of slayer's ``_li_dynamics_fwd``, in int32 when a bound
  on the states rules out overflow (int64 otherwise, as slayer), without autograd
  records;
- the one-step synaptic delay as a shift of the time axis.

Weights and the analog input pass through the blocks' own quantization hooks, so the
dendritic sums are bit-identical to slayer's; spikes are identical for every state
below 2**24 in magnitude (slayer stores states as float32 between its steps). The
neurons' forward hooks (:class:`~neuroprune.snn.activity.ActivityMonitor`) receive
the same spikes, in slayer's time-last layout. Anything this path does not model
(gradients, per-channel decays, graded spikes, persistent state, norms, dropout,
axonal delays, patched spike functions, block hooks, sigma-delta models) falls back to slayer:
:func:`unsupported` says why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neuroprune.loihi_arith import DECAY_UNITY

__all__ = ["unsupported", "forward_all_fast"]


def _neuron_issue(neuron: Any) -> str | None:
    if "spike" in neuron.__dict__ or "forward" in neuron.__dict__:
        return "the neuron's spike function is patched (voltage recording)"
    if getattr(neuron, "persistent_state", False):
        return "persistent neuron state"
    if getattr(neuron, "graded_spike", False):
        return "graded spikes"
    if getattr(neuron, "norm", None) is not None or getattr(neuron, "drop", None) is not None:
        return "neuron norm or dropout"
    if neuron.current_decay.numel() != 1 or neuron.voltage_decay.numel() != 1:
        return "per-channel decays"
    if neuron._forward_pre_hooks:
        return "forward pre-hooks on a neuron"
    return None


def unsupported(model: Any) -> str | None:
    """Why :func:`forward_all_fast` cannot run ``model`` exactly (None: it can)."""
    from neuroprune.snn.model import _kind

    if getattr(model, "neuron_kind", "cuba") != "cuba":
        return f"{model.neuron_kind} neurons (only CUBA is fused; slayer's own forward runs the others)"
    for index, block in enumerate(model.blocks):
        kind = _kind(block)
        if block._forward_hooks or block._forward_pre_hooks:
            return f"block {index} has forward hooks"
        if getattr(block, "count_log", False) or getattr(block, "delay", None) is not None:
            return f"block {index} logs counts or has axonal delays"
        if getattr(block, "mask", None) is not None:
            return f"block {index} has a weight mask"
        neuron = getattr(block, "neuron", None)
        if kind == "input":
            if neuron is None:
                continue
            if getattr(block, "weight", None) is not None or getattr(block, "bias", None) is not None:
                return f"block {index}: input block with weight or bias"
        if kind in ("conv", "dense"):
            synapse = block.synapse
            if synapse.bias is not None or getattr(synapse, "complex", False):
                return f"block {index}: synapse with bias or complex weights"
            if getattr(synapse, "weight_norm_enabled", False):
                return f"block {index}: weight normalisation"
            if kind == "conv" and (tuple(synapse.kernel_size)[-1] != 1 or tuple(synapse.stride)[-1] != 1
                                   or tuple(synapse.dilation)[-1] != 1 or tuple(synapse.padding)[-1] != 0):
                return f"block {index}: convolution over time"
        if neuron is not None:
            issue = _neuron_issue(neuron)
            if issue is not None:
                return f"block {index}: {issue}"
    return None


def _weight(synapse: Any) -> torch.Tensor:
    hook = getattr(synapse, "_pre_hook_fx", None)
    return synapse.weight if hook is None else hook(synapse.weight)


def _shift_to_zero_(x: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
    """``x = trunc(x / 4096)`` in place for integer ``x`` (slayer's
    ``right_shift_to_zero(x, 12)``): negative values get 4095 added before the
    arithmetic shift, so the shift rounds towards zero rather than down."""
    torch.bitwise_right_shift(x, x.element_size() * 8 - 1, out=carry)
    carry.bitwise_and_(DECAY_UNITY - 1)
    return x.add_(carry).bitwise_right_shift_(12)


def _cuba(neuron: Any, z: torch.Tensor) -> torch.Tensor:
    """Spikes ``(T, N, ...)`` (bool, before the synaptic delay) of a CUBA neuron for
    dendritic input ``z`` ``(T, N, ...)`` -- slayer's integer dynamics, fused.

    The states are int32 when no product ``state * (4096 - decay)`` can overflow it
    (``|current| <= T * max|drive|``, ``|voltage| <= T * max|current|``), else int64
    as in slayer; both are exact."""
    from lava.lib.dl.slayer.utils import quantize

    scale = int(neuron.s_scale)
    keep_i = DECAY_UNITY - int(quantize(neuron.current_decay).item())
    keep_v = DECAY_UNITY - int(quantize(neuron.voltage_decay).item())
    # slayer compares the integer voltage, as float32, with the float32 threshold
    threshold = math.ceil(float(np.float32((neuron.threshold + neuron.threshold_eps) * scale)))
    steps = z.shape[0]
    scaled = z * scale
    bound = float(scaled.abs().max()) * steps * steps * DECAY_UNITY if scaled.numel() else 0.0
    dtype = torch.int32 if bound < 2**31 - 1 else torch.int64
    drive = scaled.to(dtype)  # truncates towards zero, as slayer's (w_scale * input).to(int64)
    current = torch.zeros_like(drive[0])
    voltage = torch.zeros_like(drive[0])
    carry = torch.empty_like(current)
    spikes = torch.empty(z.shape, dtype=torch.bool, device=z.device)
    for t in range(steps):
        _shift_to_zero_(current.mul_(keep_i), carry).add_(drive[t])
        _shift_to_zero_(voltage.mul_(keep_v), carry).add_(current)
        torch.ge(voltage, threshold, out=spikes[t])
        voltage.masked_fill_(spikes[t], 0)
    return spikes


def _delay(spikes: torch.Tensor) -> torch.Tensor:
    """Shift by one time step (slayer's ``delay_shift``): step 0 gets no spikes."""
    out = torch.empty_like(spikes)
    out[0] = 0
    out[1:] = spikes[:-1]
    return out


def _time_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(0, -1)


def _fire(neuron: Any, z: torch.Tensor) -> torch.Tensor:
    """Run the neuron, set its shape as slayer does, and feed its forward hooks."""
    spikes = _cuba(neuron, z).to(z.dtype)
    if neuron.shape is None:  # slayer sizes a neuron on its first forward
        neuron.shape = z.shape[2:]
        neuron.num_neurons = np.prod(neuron.shape)
    for hook in list(neuron._forward_hooks.values()):
        hook(neuron, (_time_last(z),), _time_last(spikes))
    return spikes


def forward_all_fast(model: Any, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every block of ``model`` for input ``x`` ``(N, *input_shape, T)``, as
    :meth:`SNN.forward_all` returns them (time-last views), without autograd.

    The caller checks :func:`unsupported` first."""
    from neuroprune.snn.model import _kind

    steps = x.shape[-1]
    if not model.has_input_neuron:
        x = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], dim=-1)
    h = _time_last_inverse(x)  # (T, N, ...)
    outputs = []
    for block in model.blocks:
        kind = _kind(block)
        if kind == "input":
            if block.neuron is not None:
                h = _fire(block.neuron, block.pre_hook_fx(h))
                h = _delay(h) if block.delay_shift else h
            if block.input_shape is None:  # as slayer's forward records it (for export)
                block.input_shape = block.neuron.shape if block.neuron is not None else h.shape[2:]
        elif kind == "flatten":
            if block.shape is None:
                block.shape = [int(np.prod(h.shape[2:])), 1, 1]
            h = h.reshape(h.shape[0], h.shape[1], -1)
        else:
            synapse = block.synapse
            weight = _weight(synapse)
            flat = h.reshape(-1, *h.shape[2:])
            if kind == "conv":
                z = F.conv2d(flat, weight[..., 0], None, tuple(synapse.stride)[:2], tuple(synapse.padding)[:2],
                             tuple(synapse.dilation)[:2], synapse.groups)
            else:
                z = F.linear(flat.reshape(flat.shape[0], -1), weight.reshape(weight.shape[0], -1))
            z = z.reshape(steps, -1, *z.shape[1:])
            h = _fire(block.neuron, z)
            h = _delay(h) if block.delay_shift else h
        outputs.append(_time_last(h))
    return outputs


def _time_last_inverse(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 0).contiguous()
