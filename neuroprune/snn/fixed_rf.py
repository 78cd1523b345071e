"""Bit-exact resonate-and-fire neurons and the two-matrix dense synapses (recurrent and
complex) of the fixed-point model, registered in :mod:`neuroprune.snn.fixed`'s
``NEURON_MODELS`` and ``SYNAPSES``.

What Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` computes, as lava-dl's netx builds it:

- Resonate-and-fire (``lava/proc/rf/models.py`` ``PyRFModelFixed``, ``lava/proc/rf_iz/models.py``
  ``PyRF_IZModelFixed``): inputs enter shifted left by ``state_exp = 6`` (a 32-bit shift);
  ``re' = s(cos * re) - s(sin * im) + a_re``, ``im' = s(sin * re) + s(cos * im) + a_im``
  with ``s(x) = sign(x) * (|x| >> 12)``, both clipped to ``±(2**23 - 1)``. ``RF_PHASE``
  spikes when ``re' >= vth``, ``im' >= 0`` and the previous ``im < 0`` (no reset);
  ``RF_IZHIKEVICH`` spikes when ``im' >= vth`` and then resets ``re = 0``, ``im = vth - 1``.
  ``vth = vThMant << 6``. A plain dense layer feeds the real input only; a complex dense
  layer feeds both.
- The decays: netx does not hand the file's ``sinDecay``/``cosDecay`` to Lava. It turns
  them into a period and a decay (lava-dl slayer's ``rf.neuron_params``) and Lava's ``RF``
  process turns those back into ``int32((1 - alpha) * sin(2 pi / period) * 4096)`` (and
  cos), truncating: a value can come back one lower. :func:`lava_rf_decays` repeats
  that float64 computation operation for operation.
- Recurrent dense (netx ``dense_rec``, lava-dl's ``RecurrentDense`` block): netx scales
  ``hstack(weight, weight_rec)`` with one ``optimize_weight_bits``; the feed-forward and
  the recurrent synapse are two Lava ``Dense`` processes with that one exponent, each
  shifting its own sum, both into the neuron's input. The recurrent synapse delivers the
  layer's own output of the previous step (a ``Dense`` process delivers one step later).
- Complex dense (lava-dl's ``ComplexDense`` block): the real and the imaginary matrix are
  scaled separately (one ``optimize_weight_bits`` each) and feed the neuron's real and
  imaginary inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import ComplexDenseLayer, Neuron, RecurrentDenseLayer
from neuroprune.loihi_arith import DECAY_UNITY, STATE_BITS, VTH_SHIFT, shift_right
from neuroprune.snn.fixed import (
    NEURON_MODELS,
    SYNAPSES,
    _DenseSynapse,
    _delayed,
    _signed_wrap,
    dense_synapse_weights,
)

__all__ = ["lava_rf_decays", "RF_KINDS"]

#: neuron types with a real and an imaginary input (Lava's RF and RF_IZ processes)
RF_KINDS = ("RF_PHASE", "RF_IZHIKEVICH")
_STATE_EXP = 6  # netx's state_exp for RF neurons: inputs and threshold shifted left by 6
_DECAY_BITS = 12  # netx's decay_bits
_LIMIT = (1 << (STATE_BITS - 1)) - 1  # Lava clips re and im to +-(2**23 - 1)


def lava_rf_decays(sin_decay: int, cos_decay: int) -> tuple[int, int]:
    """The (sin, cos) decays Lava's RF process holds when netx builds it from a file's
    ``sinDecay`` and ``cosDecay`` (through a period and an alpha, truncated back to int)."""
    sin, cos = np.float64(sin_decay) / DECAY_UNITY, np.float64(cos_decay) / DECAY_UNITY
    decay = 1 - np.sqrt(sin ** 2 + cos ** 2)
    with np.errstate(divide="ignore"):  # no rotation: an infinite period, as in lava-dl
        period = 1 / (np.arctan2(sin, cos) / 2 / np.pi)
    rotated_sin = (1 - decay) * np.sin(np.pi * 2 * 1 / period)
    rotated_cos = (1 - decay) * np.cos(np.pi * 2 * 1 / period)
    return int(np.int32(rotated_sin * (1 << _DECAY_BITS))), int(np.int32(rotated_cos * (1 << _DECAY_BITS)))


def _scale(values: torch.Tensor) -> torch.Tensor:
    # sign(x) * (|x| >> 12): division by 4096 truncated toward zero
    return torch.div(values, 1 << _DECAY_BITS, rounding_mode="trunc")


class _Resonator:
    """Lava's fixed-point RF (``RF_PHASE``) or RF_IZ (``RF_IZHIKEVICH``) for a batch of populations."""

    def __init__(self, neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                 device: torch.device, is_input: bool = False) -> None:
        if bias is not None and np.any(bias):
            raise UnsupportedLayerError(
                f"{neuron.kind} neurons take no bias in Lava (its RF processes have none); remove the layer's bias"
            )
        self.phase = neuron.kind == "RF_PHASE"
        self.sin, self.cos = lava_rf_decays(neuron.sin_decay, neuron.cos_decay)
        self.vth = int(neuron.v_th_mant) << VTH_SHIFT
        self.real = torch.zeros((batch, *shape), dtype=torch.int64, device=device)
        self.imag = torch.zeros_like(self.real)

    @property
    def v(self) -> torch.Tensor:
        """The real part of the state (the voltage an RF_PHASE neuron compares)."""
        return self.real

    def step(self, activation: torch.Tensor, imag: torch.Tensor | None = None) -> torch.Tensor:
        # Lava shifts the int32 input by state_exp in 32 bits
        a_real = _signed_wrap(activation << _STATE_EXP, 32)
        real = _scale(self.cos * self.real) - _scale(self.sin * self.imag) + a_real
        new_imag = _scale(self.sin * self.real) + _scale(self.cos * self.imag)
        if imag is not None:
            new_imag = new_imag + _signed_wrap(imag << _STATE_EXP, 32)
        real = torch.clamp_(real, -_LIMIT, _LIMIT)
        new_imag = torch.clamp_(new_imag, -_LIMIT, _LIMIT)
        if self.phase:
            spikes = (real >= self.vth) & (new_imag >= 0) & (self.imag < 0)
            self.real, self.imag = real, new_imag
        else:
            spikes = new_imag >= self.vth
            self.real = real.masked_fill_(spikes, 0)
            self.imag = new_imag.masked_fill_(spikes, self.vth - 1)
        return spikes


class _StepDrive:
    """A neuron model driven, step by step, with an extra input the synapse computes."""

    def __init__(self, model: Any, extra: Any) -> None:
        self.model, self.extra, self.t = model, extra, 0

    @property
    def v(self) -> torch.Tensor:
        return self.model.v

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        out = self.extra(self.model, activation, self.t)
        self.t += 1
        return out


def _matrix(weight: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(weight, dtype=torch.float64, device=device)


def _apply(weight: torch.Tensor, shift: int, rows: torch.Tensor) -> torch.Tensor:
    flat = rows.reshape(rows.shape[0], -1).to(torch.float64)
    return shift_right(torch.round(flat @ weight.T).to(torch.int64), shift)


class _RecurrentDenseSynapse(_DenseSynapse):
    """lava-dl's RecurrentDense: feed-forward sums batched over time (the inherited
    ``__call__``), the recurrent sums step by step from the layer's own last output."""

    def __init__(self, layer: RecurrentDenseLayer, device: torch.device) -> None:
        self.layer = layer
        weight, self.shift = dense_synapse_weights(layer.all_weights)  # one exponent for both (netx)
        self.weight = _matrix(weight[:, :layer.in_features], device)
        self.weight_rec = _matrix(weight[:, layer.in_features:], device)
        self.delays = []  # the IR refuses delays on recurrent layers

    def wrap_model(self, model: Any, rows: torch.Tensor, steps: int) -> Any:
        last: list[torch.Tensor | None] = [None]
        # netx gives the recurrent synapse the message bits of the layer's input: graded
        # payloads (int32 rows, see run_fixed) or binary spikes, as which Lava's Dense then
        # reads the layer's own output too (any non-zero payload a spike)
        graded_input = rows.dtype == torch.int32

        def step(inner: Any, activation: torch.Tensor, t: int) -> torch.Tensor:
            if last[0] is not None:
                activation = activation + _apply(self.weight_rec, self.shift, last[0]).reshape(activation.shape)
            out = inner.step(activation)
            last[0] = out if graded_input else out != 0
            return out

        return _StepDrive(model, step)


class _ComplexDenseSynapse(_DenseSynapse):
    """lava-dl's ComplexDense: the real part is the inherited batched dense synapse, the
    imaginary part a second one (its own exponent) into the neuron's imaginary input."""

    def __init__(self, layer: ComplexDenseLayer, device: torch.device) -> None:
        self.layer = layer
        weight, self.shift = dense_synapse_weights(layer.effective_weight)
        imag, self.shift_imag = dense_synapse_weights(layer.weight_imag)
        self.weight, self.weight_imag = _matrix(weight, device), _matrix(imag, device)
        self.delays = []  # the IR refuses delays on complex layers

    def wrap_model(self, model: Any, rows: torch.Tensor, steps: int) -> Any:
        if not isinstance(model, _Resonator):
            kind = self.layer.neuron.kind if self.layer.neuron is not None else "CUBA (netx's default)"
            raise UnsupportedLayerError(
                f"complex dense layer {self.layer.name!r} drives the real and imaginary inputs of "
                f"{'/'.join(RF_KINDS)} neurons, not {kind} neurons; give it a resonate-and-fire neuron"
            )
        part = _apply(self.weight_imag, self.shift_imag, rows)
        imag = _delayed(part.reshape(steps, -1, *part.shape[1:]), 1)  # a Dense process delivers a step later

        def step(inner: Any, activation: torch.Tensor, t: int) -> torch.Tensor:
            return inner.step(activation, imag[t].reshape(activation.shape))

        return _StepDrive(model, step)


def _dense_rec(layer: RecurrentDenseLayer, in_shape: tuple[int, ...], device: torch.device) -> _RecurrentDenseSynapse:
    return _RecurrentDenseSynapse(layer, device)


def _dense_comp(layer: ComplexDenseLayer, in_shape: tuple[int, ...], device: torch.device) -> _ComplexDenseSynapse:
    return _ComplexDenseSynapse(layer, device)


NEURON_MODELS.update({kind: _Resonator for kind in RF_KINDS})
SYNAPSES.update({"dense_rec": _dense_rec, "dense_comp": _dense_comp})
