"""Bit-exact sigma-delta (SDNN) neurons for :func:`neuroprune.snn.fixed.run_fixed`.

These reproduce Lava's fixed-point sigma-delta process models (``lava/proc/sdn/models.py``)
as lava-dl netx builds them from an ``SDNN`` neuron (``hdf5.Network.get_neuron_params``,
``spike_exp = state_exp = 6``, no cumulative error):

- input layer: ``Delta`` (``PyDeltaModelFixed``). The input ``a`` enters as
  ``a << (spike_exp + state_exp)``; ``delta = a - act + residue``; the neuron sends
  ``delta >> state_exp`` when ``|delta| >= vth``, else nothing (0); ``residue = delta - sent``
  (the unsent delta is carried over, a sent one leaves no residue); ``act = a``.
- other layers: ``SigmaDelta`` (``PySigmaDeltaModelFixed``, ReLU): ``sigma += a``,
  ``act = relu(sigma + bias)``, then the same delta encoding of ``act``.
- ``sigma_output`` layers: ``Sigma`` (``PySigmaModelFixed``): ``sigma += a``, sent as is
  every step. Lava's ``Sigma`` takes no bias, so netx cannot build one with a bias.

``vth`` and ``bias`` are ``v_th_mant`` and the bias mantissa times
``2**(spike_exp + state_exp)``; ``>>`` is an arithmetic shift (floor). The simulator keeps
these states in ``int32`` arrays and does not enforce their nominal 24-bit precision, so
every sum wraps at 32 bits here as numpy's ``int32`` does; nor does it clip a payload to
the layer's ``messageBits``, so neither is done here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuroprune.errors import ShapeError
from neuroprune.ir import Neuron
from neuroprune.loihi_arith import SDNN_SPIKE_EXP, SDNN_STATE_EXP, SIM_INT_BITS, shift_right

__all__ = ["sdnn_neuron", "SigmaDeltaNeuron", "DeltaNeuron", "SigmaNeuron", "wrap_int"]

_SCALE_EXP = SDNN_SPIKE_EXP + SDNN_STATE_EXP


def wrap_int(values: torch.Tensor, bits: int = SIM_INT_BITS) -> torch.Tensor:
    """``values`` wrapped to signed ``bits`` (two's complement), as numpy's int32 arithmetic wraps."""
    half = 1 << (bits - 1)
    if values.numel() == 0 or (int(values.max()) < half and int(values.min()) >= -half):
        return values  # nothing to wrap (the common case)
    return torch.remainder(values + half, 2 * half) - half


def _bias(bias: np.ndarray | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | int:
    if bias is None:
        return 0
    values = torch.as_tensor(np.asarray(bias).astype(np.int64), device=device)
    if values.numel() == shape[0] and len(shape) > 1:  # channel-wise bias
        values = values.reshape(shape[0], *([1] * (len(shape) - 1)))
    # netx hands the bias over as int32 and the process scales it in int32
    return wrap_int(wrap_int(values) << _SCALE_EXP)


class DeltaNeuron:
    """Lava's ``PyDeltaModelFixed`` (an SDNN input layer) for a batch of populations."""

    def __init__(self, neuron: Neuron, shape: tuple[int, ...], batch: int, device: torch.device) -> None:
        self.act = torch.zeros((batch, *shape), dtype=torch.int64, device=device)
        self.residue = torch.zeros_like(self.act)
        self.vth = wrap_int(torch.tensor(int(neuron.v_th_mant) << _SCALE_EXP)).item()

    @property
    def v(self) -> torch.Tensor:
        return self.act

    def _encode(self, act: torch.Tensor) -> torch.Tensor:
        delta = wrap_int(act - self.act + self.residue)
        sent = torch.where(delta.abs() >= self.vth, delta, torch.zeros_like(delta))
        self.residue = wrap_int(delta - sent)
        self.act = act
        return torch.bitwise_right_shift(sent, SDNN_STATE_EXP)

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        return self._encode(wrap_int(activation.to(torch.int64) << _SCALE_EXP))


class SigmaDeltaNeuron(DeltaNeuron):
    """Lava's ``PySigmaDeltaModelFixed`` with ReLU activation."""

    def __init__(self, neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                 device: torch.device) -> None:
        super().__init__(neuron, shape, batch, device)
        self.sigma = torch.zeros_like(self.act)
        self.bias = _bias(bias, shape, device)

    @property
    def v(self) -> torch.Tensor:
        return self.sigma

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        self.sigma = wrap_int(self.sigma + activation)
        return self._encode(torch.clamp_min(wrap_int(self.sigma + self.bias), 0))


class SigmaNeuron:
    """Lava's ``PySigmaModelFixed``: integrates its input and sends the sum every step."""

    def __init__(self, shape: tuple[int, ...], batch: int, device: torch.device) -> None:
        self.sigma = torch.zeros((batch, *shape), dtype=torch.int64, device=device)

    @property
    def v(self) -> torch.Tensor:
        return self.sigma

    def step(self, activation: torch.Tensor) -> torch.Tensor:
        self.sigma = wrap_int(self.sigma + activation)
        return self.sigma


def sdnn_neuron(neuron: Neuron, shape: tuple[int, ...], batch: int, bias: np.ndarray | None,
                device: torch.device, is_input: bool = False) -> Any:
    """The process netx builds for an SDNN neuron: Delta for the input layer, Sigma for a
    ``sigma_output`` layer, SigmaDelta otherwise (see the module docstring)."""
    if is_input:
        return DeltaNeuron(neuron, shape, batch, device)
    if neuron.sigma_output:
        if bias is not None and np.any(np.asarray(bias)):
            raise ShapeError("an SDNN sigma_output layer has no bias in Lava (its Sigma process takes none); "
                             "drop the bias or make the layer a sigma-delta layer")
        return SigmaNeuron(shape, batch, device)
    return SigmaDeltaNeuron(neuron, shape, batch, bias, device)


def _matmul(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight.T`` exactly: float64 while no sum can reach 2**53, else int64."""
    bound = float(rows.abs().max()) * float(weight.abs().sum(dim=1).max()) if rows.numel() and weight.numel() else 0.0
    if bound < 2 ** 53:
        return torch.round(rows.to(torch.float64) @ weight.T).to(torch.int64)
    return rows.to(torch.int64) @ weight.to(torch.int64).T


def graded_dense(synapse: Any, rows: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """Synaptic input per delay of a dense synapse for graded payload rows ``(B, inputs)``.

    Lava's ``PyDenseModelBitAcc`` with ``num_message_bits > 0`` takes the ``int32`` dot
    product of weights and payloads (wrapping at 32 bits) and shifts it by the weight
    exponent; ``PyDelayDenseModelBitAcc`` sums per delay in ``int64`` and wraps into its
    ``int32`` buffer after the shift.
    """
    if not synapse.delays:
        total = wrap_int(_matmul(rows, synapse.weight))
        return [(0, wrap_int(shift_right(total, synapse.shift)))]
    return [(d, wrap_int(shift_right(_matmul(rows, w), synapse.shift))) for d, w in synapse.delays]


def graded_conv(synapse: Any, rows: torch.Tensor) -> torch.Tensor:
    """A conv synapse's input for rows ``(B, C, H, W)`` whose sums may reach 2**24.

    Lava's ``PyConvModelFixed`` convolves with scipy in float64 (``lava/proc/conv/utils.py``
    sets ``TORCH_IS_AVAILABLE = False``), exact for these integers, then casts to ``int32``:
    a sum outside the ``int32`` range becomes ``-2**31`` (the x86 conversion numpy uses),
    which the caller's 24-bit wrap turns into 0.
    """
    exact = torch.round(synapse.conv(rows.to(torch.float64), synapse.weight)).to(torch.int64)
    half = 1 << (SIM_INT_BITS - 1)
    return torch.where((exact >= half) | (exact < -half), torch.full_like(exact, -half), exact)
