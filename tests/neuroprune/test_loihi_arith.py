"""The one home of the chip's arithmetic agrees with Lava's and slayer's own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune import loihi_arith as arith
from neuroprune.snn.model import slayer


def test_constants_match_lavas_bit_accurate_lif():
    from lava.proc.lif.models import PyLifModelBitAcc

    model = PyLifModelBitAcc({})
    assert model.decay_unity == arith.DECAY_UNITY
    assert model.uv_bitwidth == arith.STATE_BITS
    assert model.max_uv_val - 1 == arith.MAX_STATE
    assert model.vth_shift == arith.VTH_SHIFT
    assert model.act_shift == arith.ACT_SHIFT
    # the largest threshold and activation still fit the 24-bit state once shifted
    assert arith.MAX_V_TH_MANT << arith.VTH_SHIFT <= arith.MAX_STATE
    assert (arith.MAX_V_TH_MANT + 1) << arith.VTH_SHIFT > arith.MAX_STATE
    assert arith.MAX_ACTIVATION << arith.ACT_SHIFT <= arith.MAX_STATE


def test_to_mantissa_is_slayers_8bit_quantizer():
    neuron = slayer().neuron.cuba.Neuron(threshold=1.0, current_decay=0.25, voltage_decay=0.03)
    weights = torch.linspace(-5.0, 5.0, 2001, dtype=torch.float64)
    theirs = torch.round(neuron.quantize_8bit(weights) * arith.WEIGHT_SCALE).numpy().astype(np.int64)
    ours = arith.to_mantissa(weights.numpy(), arith.WEIGHT_SCALE)
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, theirs)
    assert ours.min() == arith.MANTISSA_MIN and ours.max() == arith.MANTISSA_MAX
    assert not np.any(ours % arith.MANTISSA_STEP)


@pytest.mark.parametrize("largest, expected", [(0.0, arith.MAX_V_TH_MANT), (1.0, 254), (254.0, 1), (1e9, 1),
                                               (1e-9, arith.MAX_V_TH_MANT), (0.5, 508)])
def test_threshold_for_uses_the_whole_grid_within_the_state(largest, expected):
    assert arith.threshold_for(largest) == expected
