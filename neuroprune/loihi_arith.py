"""The neuron and synapse arithmetic of the Loihi family, in one place.

Every part of neuroprune that turns numbers into what the chip computes (the IR's
checks, slayer's quantisation, the bit-exact fixed-point simulator, the ONNX and NIR
converters, the pruning quantizer) reads its constants and its weight quantizer from
here. Each number names its source; numbers that differ per chip (core sizes, weight
widths the synapse memory offers) live in ``hw_models/chips/*.toml`` instead.

Sources
-------
- Lava's bit-accurate CUBA LIF model, ``lava/proc/lif/models.py``
  (``AbstractPyLifModelFixed`` / ``PyLifModelBitAcc``): 12-bit decays with
  ``decay_unity = 2**12``; 24-bit ``u`` and ``v`` (``vth`` and ``bias`` shifted left by 6,
  activations shifted left by 6 through ``ds_offset``/``dm_offset``); ``u`` wraps at
  ``±2**23``, ``v`` saturates at ``±(2**23 - 1)``.
- lava-dl slayer's 8-bit weight quantizer (``slayer.utils.quantize`` with ``step = 2``,
  ``w_scale = 64``; ``quantize_8bit`` in ``slayer/block/base.py``): a weight ``w`` is
  sent as the even mantissa ``64 w`` clipped to ``[-256, 254]``.
- Lava's sigma-delta fixed-point models (``lava/proc/sdn/models.py`` ``PyDeltaModelFixed``,
  ``PySigmaDeltaModelFixed``, ``PySigmaModelFixed``) as lava-dl netx builds them
  (``get_neuron_params``: ``spike_exp=6``, ``state_exp=6``): thresholds and biases are
  scaled by ``2**(spike_exp + state_exp)``, an input (Delta) neuron's input by the same,
  and a delta leaves shifted right by ``state_exp``; the state arrays are ``int32``.
- Lava's Dense/Conv fixed-point models (``lava/proc/dense/models.py``): weights of up to
  8 bits (``num_weight_bits``); lava-dl netx clips synaptic delays to ``[0, 62]``
  (``lava/lib/dl/netx/hdf5.py``, and slayer's ``Delay(max_delay=62)`` in its blocks).

This module imports numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DECAY_UNITY",
    "STATE_BITS",
    "MAX_STATE",
    "ACT_SHIFT",
    "VTH_SHIFT",
    "BIAS_EXP",
    "MAX_V_TH_MANT",
    "MAX_ACTIVATION",
    "MAX_BIAS_MANT",
    "MAX_WEIGHT_MANT",
    "WEIGHT_SCALE",
    "MANTISSA_STEP",
    "MANTISSA_MIN",
    "MANTISSA_MAX",
    "MAX_WEIGHT_BITS",
    "MAX_DELAY",
    "SDNN_SPIKE_EXP",
    "SDNN_STATE_EXP",
    "SIM_INT_BITS",
    "threshold_for",
    "to_mantissa",
    "shift_right",
]

DECAY_UNITY = 1 << 12
"""Decays are in 1/4096 per step: 0 keeps everything, 4096 forgets everything (Lava ``decay_unity``)."""

STATE_BITS = 24
"""Width of the current ``u`` and voltage ``v`` (Lava's bit-accurate LIF)."""

MAX_STATE = (1 << (STATE_BITS - 1)) - 1
"""Largest value of a 24-bit signed state."""

ACT_SHIFT = 6
"""Incoming activations enter ``u`` shifted left by 6 bits."""

VTH_SHIFT = 6
"""A neuron spikes when ``v > v_th_mant << 6``."""

BIAS_EXP = 6
"""Biases enter ``v`` as ``bias_mant << 6``."""

MAX_V_TH_MANT = MAX_STATE >> VTH_SHIFT
"""Largest threshold mantissa whose shifted value fits the 24-bit voltage: ``2**17 - 1``."""

MAX_ACTIVATION = MAX_STATE >> ACT_SHIFT
"""Largest summed activation whose shifted value fits the 24-bit current: ``2**17 - 1``."""

MAX_BIAS_MANT = MAX_STATE >> BIAS_EXP
"""Largest bias mantissa whose shifted value fits the 24-bit voltage: ``2**17 - 1``."""

MAX_WEIGHT_MANT = MAX_STATE >> ACT_SHIFT
"""Largest stored weight one spike can send without overflowing the 24-bit current: ``2**17 - 1``."""

WEIGHT_SCALE = 1 << 6
"""slayer's ``w_scale``: the chip's weight mantissa is ``64 x`` the float weight."""

MANTISSA_STEP = 2
"""slayer's 8-bit quantizer keeps even mantissas (step 2/64 in weight units)."""

MANTISSA_MIN, MANTISSA_MAX = -256, 254
"""Range of slayer's 8-bit weight mantissas."""

MAX_WEIGHT_BITS = 8
"""Widest weight the synapse stores (Lava's ``num_weight_bits``)."""

MAX_DELAY = 62
"""Largest synaptic delay in time steps (lava-dl netx and slayer clip delays to 62)."""


def threshold_for(largest_weight: float) -> int:
    """Threshold mantissa that maps the largest normalised weight onto ``MANTISSA_MAX``.

    Weights expressed in units of the threshold (``W / threshold``) are stored as
    ``v_th_mant * W / threshold``; choosing ``v_th_mant = round(254 / max|W / threshold|)``
    uses the whole 8-bit grid. A layer with no non-zero weight gets the largest threshold.
    """
    if largest_weight == 0:
        return MAX_V_TH_MANT
    return int(np.clip(np.round(MANTISSA_MAX / largest_weight), 1, MAX_V_TH_MANT))


def to_mantissa(normalized: np.ndarray, v_th_mant: int) -> np.ndarray:
    """Weights in units of the threshold -> even 8-bit mantissas (slayer's grid), int32."""
    stepped = MANTISSA_STEP * np.round(np.asarray(normalized) * v_th_mant / MANTISSA_STEP)
    return np.clip(stepped, MANTISSA_MIN, MANTISSA_MAX).astype(np.int32)


SDNN_SPIKE_EXP = 6
"""lava-dl netx's ``spike_exp``: fraction bits of a sigma-delta neuron's graded payload."""

SDNN_STATE_EXP = 6
"""lava-dl netx's ``state_exp``: extra fraction bits of a sigma-delta neuron's state."""

SIM_INT_BITS = 32
"""Width of the ``int32`` arrays Lava's fixed-point sigma-delta and graded dense models
compute in (their 24-bit ``precision`` is not enforced by the simulator): sums wrap here."""


def shift_right(values: Any, shift: int) -> Any:
    """Arithmetic shift of integer arrays or tensors by ``shift`` bits to the right (floor
    division by ``2**shift``; a negative ``shift`` shifts left), as the chip scales sums
    by a weight exponent."""
    return values >> shift if shift >= 0 else values << -shift
