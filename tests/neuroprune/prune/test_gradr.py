import math

import numpy as np
import pytest
import torch

from neuroprune.errors import PruneError
from neuroprune.prune.base import PruneTask
from neuroprune.prune.gradr import (
    GradRConfig,
    GradRewiring,
    calibrated_alpha,
    chip_sparsity,
    gradr,
    prior_center,
)
from neuroprune.prune.masks import MaskSet
from neuroprune.snn import model as snn_model
from neuroprune.snn.train import TrainConfig, fine_tune

RECIPE = TrainConfig(epochs=4, batch_size=32, lr=1e-2, steps=8, validate=False)


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_prior_center_puts_the_target_mass_below_zero():
    for sparsity in (0.2, 0.5, 0.75, 0.95):
        alpha = 3.0
        mu = prior_center(sparsity, alpha)
        # Laplace(mu, 1/alpha) CDF at 0
        below = 0.5 * math.exp(alpha * (0 - mu)) if mu > 0 else 1.0 - 0.5 * math.exp(-alpha * (0 - mu))
        assert below == pytest.approx(sparsity)
    with pytest.raises(PruneError, match="target sparsity"):
        prior_center(1.0, 1.0)


def test_step_moves_theta_by_the_optimizer_step_and_the_prior(trained_c4):
    model = _copy(trained_c4)
    rewiring = GradRewiring(model, alpha=2.0, mu=-0.5, lr=0.01, planned=10, schedule="constant")
    index, block = next(iter(model.synaptic_blocks().items()))
    weight = block.synapse.weight
    theta0 = rewiring.theta[index].clone()
    sign = rewiring.sign[index]
    assert torch.equal(sign * torch.relu(theta0), weight.detach())
    delta = torch.full_like(weight, 0.003)
    with torch.no_grad():
        weight.add_(delta)  # what an optimizer step would do
    rewiring.on_step(model, 0)
    expected = theta0 + sign * delta
    expected = expected - 0.01 * 2.0 * torch.sign(expected + 0.5)
    assert torch.allclose(rewiring.theta[index], expected, atol=1e-7)
    assert torch.allclose(weight.detach(), sign * torch.relu(expected), atol=1e-7)


def test_cosine_schedule_scales_the_prior(trained_c4):
    model = _copy(trained_c4)
    rewiring = GradRewiring(model, alpha=1.0, mu=-10.0, lr=0.02, planned=4, schedule="cosine")
    index = next(iter(model.synaptic_blocks()))
    before = rewiring.theta[index].clone()
    rewiring.on_step(model, 2)  # lr at step 2 of 4: 0.02 * 0.5 * (1 + cos(pi / 2)) = 0.01
    assert torch.allclose(before - rewiring.theta[index], torch.full_like(before, 0.01), atol=1e-7)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_calibrated_alpha_makes_the_prior_alone_reach_the_target(trained_c4, schedule):
    model = _copy(trained_c4)
    alpha = calibrated_alpha(model, 0.6, lr=0.01, steps=20, schedule=schedule)
    rewiring = GradRewiring(model, alpha, prior_center(0.6, alpha), lr=0.01, planned=20, schedule=schedule)
    for step in range(20):  # no optimizer: only the prior acts
        rewiring.on_step(model, step)
    assert rewiring.hidden_sparsity() == pytest.approx(0.6, abs=0.01)
    assert rewiring.crossings_up == 0 and rewiring.regrown(model) == 0


def test_pruned_synapse_regrows_when_its_gradient_pushes_it_up(trained_c4, synthetic_6x6):
    """A synapse with theta <= 0 (weight exactly 0) comes back, with its old sign, when
    the loss keeps asking for it; a plain mask keeps it at 0 under the same loss."""
    model = _copy(trained_c4)
    index, block = next(iter(model.synaptic_blocks().items()))
    target = (0, 0, 1, 1, 0)  # one kernel tap of output channel 0
    rewiring = GradRewiring(model, alpha=0.1, mu=-1.0, lr=1e-2, planned=30, schedule="constant")
    sign = float(rewiring.sign[index][target])
    with torch.no_grad():
        rewiring.theta[index][target] = -0.02  # pruned
        block.synapse.weight[target] = 0.0
        rewiring.written[index][target] = 0.0
    assert snn_model.to_ir(model)[index].weight[target[:4]] == 0

    def want_it_bigger(net, output):  # d/dw of -sign * w pushes |w| up
        return -sign * net.synaptic_blocks()[index].synapse.weight[target]

    trace = []

    def on_step(net, step):
        rewiring.on_step(net, step)
        trace.append(float(rewiring.theta[index][target]))

    config = TrainConfig(batch_size=32, lr=1e-2, steps=8, schedule="constant", validate=False)
    fine_tune(model, synthetic_6x6, 30, config, on_step=on_step, extra_loss=want_it_bigger)
    assert trace[0] < 0 < trace[-1]  # crossed zero: regrown
    assert rewiring.crossings_up >= 1 and rewiring.regrown(model) >= 1
    mantissa = snn_model.to_ir(model)[index].weight[target[:4]]
    assert mantissa != 0 and np.sign(mantissa) == sign

    masked = _copy(trained_c4)
    mask = MaskSet.full(masked)
    mask.masks[index][target] = False
    mask.apply(masked)
    fine_tune(masked, synthetic_6x6, 30, config, on_step=lambda net, step: mask.apply(net), extra_loss=want_it_bigger)
    assert snn_model.to_ir(masked)[index].weight[target[:4]] == 0


def test_landing_masks_keep_exactly_the_largest_strengths(trained_c4):
    model = _copy(trained_c4)
    rewiring = GradRewiring(model, alpha=1.0, mu=0.0, lr=0.01, planned=1)
    masks = rewiring.landing_masks(0.8, min_layer_keep=0.1)
    total = sum(t.numel() for t in rewiring.theta.values())
    assert masks.kept() == round(0.2 * total)
    for index, theta in rewiring.theta.items():
        assert masks.masks[index].float().mean() >= 0.1
    # apart from the per-layer floor, nothing dropped is stronger than anything kept
    small = min(t.numel() for t in rewiring.theta.values())
    kept = torch.cat([rewiring.theta[i][masks.masks[i]] for i in rewiring.theta])
    dropped = torch.cat([rewiring.theta[i][~masks.masks[i]] for i in rewiring.theta])
    assert (kept >= dropped.max()).sum() >= masks.kept() - math.ceil(0.1 * small)


def test_gradr_needs_a_sparsity(trained_c4, synthetic_6x6):
    with pytest.raises(PruneError, match="needs a target sparsity"):
        gradr(trained_c4, PruneTask(dataset=synthetic_6x6, train=RECIPE), GradRConfig(steps=1), progress=False)
    with pytest.raises(PruneError, match="alpha"):
        GradRConfig(alpha=0.0)


@pytest.mark.slow
def test_gradr_lands_on_the_target_and_is_deterministic(trained_c4, synthetic_6x6):
    task = PruneTask(dataset=synthetic_6x6, train=RECIPE, sparsity=0.7, finetune_steps=15, eval_samples=40, seed=3)
    config = GradRConfig(alpha=0.5, steps=30, log_every=10)
    first = gradr(trained_c4, task, config, progress=False)
    second = gradr(trained_c4, task, config, progress=False)
    assert first.info["mask_sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert chip_sparsity(first.model) >= 0.7 - 1e-3
    assert first.info["sparsity"] == pytest.approx(chip_sparsity(first.model))
    assert [h["step"] for h in first.history] == [10, 20, 30]
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    # the source model is not modified, and the result exports
    assert chip_sparsity(trained_c4) < 0.2
    network = snn_model.to_ir(first.model)
    nonzero = sum(np.count_nonzero(network[i].weight) for i in first.model.synaptic_blocks())
    total = sum(network[i].weight.size for i in first.model.synaptic_blocks())
    assert 1 - nonzero / total == pytest.approx(first.info["sparsity"])
    assert first.info["fits"] and 0 < first.info["val_synops_ratio"] < 1
