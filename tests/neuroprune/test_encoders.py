"""Tests of neuroprune.snn.encoders with exact expected spike trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune.errors import NeuropruneError
from neuroprune.snn import encoders


def test_direct_repeats_value_time_last() -> None:
    x = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    out = encoders.direct(x, 3)
    assert out.shape == (2, 2, 3) and out.dtype == torch.float32
    expected = torch.tensor(
        [[[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]], [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]]
    )
    assert torch.equal(out, expected)
    img = np.random.default_rng(0).random((2, 1, 3, 3)).astype(np.float32)
    out_img = encoders.direct(img, 4)
    assert out_img.shape == (2, 1, 3, 3, 4)
    for t in range(4):
        assert torch.equal(out_img[..., t], torch.from_numpy(img))


def test_rate_extremes_and_exact_draw() -> None:
    x = torch.tensor([[0.0, 1.0, 0.3]])
    g = torch.Generator().manual_seed(123)
    out = encoders.rate(x, 5, generator=g)
    assert out.shape == (1, 3, 5)
    assert torch.equal(out[0, 0], torch.zeros(5))
    assert torch.equal(out[0, 1], torch.ones(5))
    # exactly u < p on the generator's uniform draw of shape (*x.shape, T)
    u = torch.rand((1, 3, 5), generator=torch.Generator().manual_seed(123))
    assert torch.equal(out[0, 2], (u[0, 2] < 0.3).float())
    # values outside [0, 1] are clipped to probabilities
    out2 = encoders.rate(torch.tensor([-1.0, 2.0]), 4, torch.Generator().manual_seed(0))
    assert torch.equal(out2, torch.tensor([[0.0] * 4, [1.0] * 4]))


def test_rate_is_deterministic_and_has_expected_rate() -> None:
    x = torch.full((2000,), 0.3)
    a = encoders.rate(x, 10, torch.Generator().manual_seed(1))
    b = encoders.rate(x, 10, torch.Generator().manual_seed(1))
    c = encoders.rate(x, 10, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    # 20000 Bernoulli(0.3) draws: std of the mean ~0.0032
    assert abs(a.mean().item() - 0.3) < 0.015


def test_delta_exact_on_ramp() -> None:
    # ramp for x=0.5, T=4: 0.125, 0.25, 0.375, 0.5; threshold 0.2 (strictly more)
    # t0: 0.125-0 no; t1: 0.25-0 yes (ref 0.25); t2: 0.125 no; t3: 0.25 yes
    x = torch.tensor([0.5, 1.0, 0.2, 0.0])
    out = encoders.delta(x, 4, threshold=0.2)
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],  # ramp 0.25, 0.5, 0.75, 1.0: every step > 0.2 change
            [0.0, 0.0, 0.0, 0.0],  # never exceeds the threshold
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert torch.equal(out, expected)


def test_send_on_delta_tracks_reference_and_ignores_decreases() -> None:
    signal = torch.tensor([0.0, 0.3, 0.35, 0.7, 0.2, 0.6])
    # ref 0 -> 0.3 spike (ref .3), .35 no, .7 spike (ref .7), .2 no (decrease), .6 no
    out = encoders.send_on_delta(signal, 0.25)
    assert torch.equal(out, torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0]))
    with pytest.raises(NeuropruneError, match="threshold must be > 0"):
        encoders.send_on_delta(signal, 0.0)


def test_delta_count_scales_with_intensity() -> None:
    x = torch.linspace(0, 1, 11)
    counts = encoders.delta(x, 32, threshold=0.1).sum(-1)
    assert torch.all(counts[1:] >= counts[:-1])  # monotone in intensity
    assert counts[0] == 0 and 8 <= counts[-1] <= 10  # ~ x / threshold


def test_get_encoder_registry_and_options() -> None:
    assert encoders.get_encoder("rate") is encoders.rate
    enc = encoders.get_encoder("delta", threshold=0.2)
    assert torch.equal(enc(torch.tensor([0.5]), 4), torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    with pytest.raises(NeuropruneError, match="unknown encoder 'poisson'.*delta, direct, rate"):
        encoders.get_encoder("poisson")
    with pytest.raises(NeuropruneError, match="does not take option"):
        encoders.get_encoder("direct", threshold=0.1)


@pytest.mark.parametrize("steps", [0, -1, 2.5])
def test_bad_steps_raise(steps) -> None:
    with pytest.raises(NeuropruneError, match="steps"):
        encoders.direct(torch.zeros(2), steps)
