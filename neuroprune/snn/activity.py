"""Activity recording: per-layer spikes, neuron updates and, on demand, membrane
potentials, keyed by IR layer index.

Two sources:

- :class:`ActivityMonitor` hooks a slayer :class:`~neuroprune.snn.model.SNN` (training
  or evaluation, float path). Spike sums are accumulated in place, so the hooks cost a
  reduction per block and step batch, not a copy. With ``voltage=True`` it also records
  each channel's mean |membrane potential| (SCA's channel activity) and the mean arctan
  surrogate derivative ``1 / (1 + (pi * (v - theta))^2)`` (criticality), both in slayer
  units (threshold ``theta`` in weight units).
- :func:`fixed_point_activity` counts exactly what the chip does, from
  :func:`neuroprune.snn.fixed.run_fixed` on the IR. A neuron that sends graded spikes
  (sigma-delta) sends a message only when its payload is non-zero, so its rate counts
  non-zero payloads, not their values.

Rates are spikes per neuron per time step, averaged over samples, with the layer's
shape; they are the ``activity`` that :func:`hw_models.fit` turns into SynOps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import Network

__all__ = ["Activity", "ActivityMonitor", "record_activity", "fixed_point_activity"]


@dataclass
class Activity:
    """Activity of every neuron-bearing layer (IR index -> per-neuron arrays).

    ``rates``: spikes (messages: graded spikes count once, whatever their payload) per
    neuron per time step. ``mean_abs_voltage`` and
    ``criticality``: per output channel, when recorded. ``steps``/``samples`` describe
    the run the averages come from.
    """

    rates: dict[int, np.ndarray]
    steps: int
    samples: int
    mean_abs_voltage: dict[int, np.ndarray] = field(default_factory=dict)
    criticality: dict[int, np.ndarray] = field(default_factory=dict)
    source: str = "measured"

    def spikes_per_inference(self, index: int) -> float:
        """Spikes of layer ``index`` per sample over the whole run."""
        return float(self.rates[index].sum() * self.steps)

    def total_spikes(self) -> float:
        return sum(self.spikes_per_inference(i) for i in self.rates)

    def channel_rates(self, index: int) -> np.ndarray:
        """Mean spike rate per output channel (first axis of the layer's shape)."""
        rates = self.rates[index]
        return rates.reshape(rates.shape[0], -1).mean(axis=1)

    def neuron_updates(self, network: Network) -> float:
        """Neuron (compartment) updates per inference: every neuron, every step."""
        return float(sum(network.num_neurons(i) for i in network.neuron_indices()) * self.steps)


class ActivityMonitor:
    """Context manager recording the activity of an SNN's blocks.

    >>> with ActivityMonitor(model, voltage=True) as monitor:
    ...     model(x)
    >>> activity = monitor.result()

    A neuron with graded spikes (slayer's sigma-delta) sends a message only when its delta
    is not zero, so its rate counts the non-zero messages (a constant input sends deltas on
    the first step only), and the SynOps :func:`hw_models.fit` makes of it are those
    messages times their fan-out.
    """

    def __init__(self, model: torch.nn.Module, voltage: bool = False) -> None:
        self.model = model
        self.voltage = voltage
        self.offset = model.ir_offset  # IR index = block index + offset
        self._handles: list[Any] = []
        self._patched: list[tuple[Any, Callable]] = []
        self.reset()

    def reset(self) -> None:
        self._spike_sums: dict[int, torch.Tensor] = {}
        self._abs_v: dict[int, torch.Tensor] = {}
        self._crit: dict[int, torch.Tensor] = {}
        self._v_count: dict[int, int] = {}
        self.samples = 0
        self.steps = 0

    def _spike_hook(self, index: int) -> Callable:
        def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if isinstance(output, tuple):
                output = output[0]
            # messages, not payloads: a graded (sigma-delta) output counts where it is non-zero
            summed = (output.detach() != 0).sum(dim=(0, output.ndim - 1), dtype=output.dtype)
            if index in self._spike_sums:
                self._spike_sums[index] += summed
            else:
                self._spike_sums[index] = summed
            if index == self._first:
                self.samples += int(output.shape[0])
                self.steps = int(output.shape[-1])
        return hook

    def _voltage_wrapper(self, index: int, neuron: Any, original: Callable) -> Callable:
        threshold = float(neuron.threshold)

        def spike(voltage: torch.Tensor) -> torch.Tensor:
            v = voltage.detach()
            reduce_dims = tuple(d for d in range(v.ndim) if d != 1)  # keep channels
            abs_v = v.abs().sum(dim=reduce_dims)
            crit = (1.0 / (1.0 + (math.pi * (v - threshold)) ** 2)).sum(dim=reduce_dims)
            count = v.numel() // v.shape[1]
            if index in self._abs_v:
                self._abs_v[index] += abs_v
                self._crit[index] += crit
                self._v_count[index] += count
            else:
                self._abs_v[index], self._crit[index], self._v_count[index] = abs_v, crit, count
            return original(voltage)
        return spike

    def __enter__(self) -> "ActivityMonitor":
        blocks = list(self.model.blocks)
        with_neurons = [k for k, b in enumerate(blocks) if getattr(b, "neuron", None) is not None]
        self._first = with_neurons[0] + self.offset if with_neurons else None
        if self.voltage and getattr(self.model, "neuron_kind", "cuba") != "cuba":
            raise UnsupportedLayerError(
                f"{self.model.neuron_kind} neurons have no membrane potential to record: voltage-based scores "
                "(criterion 'membrane', SCA, criticality) need CUBA neurons; use --criterion l1, l2 or rate"
            )
        for k in with_neurons:
            block = blocks[k]
            # hook the neuron, not the block: the block's output is delayed by one step
            self._handles.append(_message_source(block).register_forward_hook(self._spike_hook(k + self.offset)))
            if self.voltage:
                neuron = block.neuron
                original = neuron.spike
                neuron.spike = self._voltage_wrapper(k + self.offset, neuron, original)
                self._patched.append((neuron, original))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        for neuron, _ in self._patched:
            del neuron.spike  # drop the instance attribute; the class method shows again
        self._handles, self._patched = [], []

    def result(self) -> Activity:
        """Averages of everything recorded since the last :meth:`reset`."""
        if not self.samples or not self.steps:
            raise RuntimeError("no forward pass was recorded")
        denominator = self.samples * self.steps
        rates = {i: (s / denominator).cpu().numpy().astype(np.float64) for i, s in self._spike_sums.items()}
        abs_v = {i: (s / self._v_count[i]).cpu().numpy() for i, s in self._abs_v.items()}
        crit = {i: (s / self._v_count[i]).cpu().numpy() for i, s in self._crit.items()}
        return Activity(rates=rates, steps=self.steps, samples=self.samples, mean_abs_voltage=abs_v, criticality=crit)


def _message_source(block: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is what a block's neurons send: the neuron itself, except for
    slayer's sigma-delta ``Input`` (its delta unit, called directly) and sigma ``Output``
    blocks (the integrating sigma unit, whose value the output layer sends every step)."""
    if getattr(block.neuron, "graded_spike", False) and type(block.neuron).__module__.endswith("sigma_delta"):
        if type(block).__name__ == "Input":
            return block.neuron.delta
        if type(block).__name__ == "Output":
            return block.neuron.sigma
    return block.neuron


def record_activity(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256, voltage: bool = False) -> Activity:
    """Run ``x`` (N, *input_shape, T) through ``model`` without gradients and return its
    activity. Without an input neuron layer the input spikes count as layer 0."""
    model.eval()
    with torch.inference_mode(), ActivityMonitor(model, voltage=voltage) as monitor:
        input_sum = None
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size]
            model(chunk)
            if monitor.offset:
                part = (chunk > 0).float().sum(dim=(0, chunk.ndim - 1))
                input_sum = part if input_sum is None else input_sum + part
        activity = monitor.result()
    if monitor.offset and input_sum is not None:
        activity.rates[0] = (input_sum / (x.shape[0] * x.shape[-1])).cpu().numpy().astype(np.float64)
    return activity


def fixed_point_activity(network: Network, x_int: np.ndarray | torch.Tensor | Iterable[torch.Tensor]) -> Activity:
    """Exact chip activity of ``network`` for integer input ``x_int`` (see
    :func:`neuroprune.snn.fixed.run_fixed`): one array ``(N, *input_shape, T)``, or an
    iterable of such batches (counted one after another, so a large split needs one batch
    of memory). Without an input neuron layer the input spikes count as layer 0."""
    from neuroprune.snn.fixed import run_fixed

    if isinstance(x_int, (np.ndarray, torch.Tensor)):
        x_int = [x_int]
    sums: dict[int, torch.Tensor] = {}
    samples = steps = 0
    for batch in x_int:
        x = torch.as_tensor(np.asarray(batch) if not torch.is_tensor(batch) else batch)
        if not len(x):
            continue
        counts = {i: (s != 0).to(torch.float64).sum(dim=(0, s.ndim - 1)) for i, s in run_fixed(network, x).spikes.items()}
        if 0 not in counts:
            counts[0] = (x > 0).to(torch.float64).sum(dim=(0, x.ndim - 1))
        for i, count in counts.items():
            sums[i] = count if i not in sums else sums[i] + count
        samples, steps = samples + int(x.shape[0]), int(x.shape[-1])
    if not samples:
        raise RuntimeError("no input to count chip activity on")
    rates = {i: s.numpy() / (samples * steps) for i, s in sums.items()}
    return Activity(rates=rates, steps=steps, samples=samples, source="fixed point")
