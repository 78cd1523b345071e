import math

import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from hw_models import Constraints
from neuroprune.data import make_synthetic
from neuroprune.errors import PruneError
from neuroprune.prune.base import Measurer, PruneTask, synops_inputs
from neuroprune.prune.criticality import (
    CriticalityConfig,
    criticality,
    criticality_scores,
    prune_and_regenerate,
    regeneration_count,
    network_synapse_masks,
    synapse_masks,
)
from neuroprune.prune.masks import MaskSet
from neuroprune.prune.structured import prune_model
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import ActivityMonitor
from neuroprune.snn.train import TrainConfig

THETA = 1.25  # slayer threshold of the default neuron


def test_criticality_scores_by_hand():
    # 1 / (1 + (pi (v - theta))^2): 1 at the threshold, 1/2 at theta +- 1/pi, 1/10 at theta + 3/pi
    v = torch.tensor([
        [[THETA, THETA + 1 / math.pi]],
        [[THETA - 1 / math.pi, THETA + 3 / math.pi]],
    ]).permute(1, 0, 2)  # (N=1, C=2, T=2)
    assert torch.allclose(criticality_scores(v, THETA), torch.tensor([0.75, 0.3]))
    # a silent neuron (v = 0) scores 1 / (1 + (1.25 pi)^2), about 0.0608
    silent = torch.zeros(2, 1, 3, 3, 4)
    assert criticality_scores(silent, THETA).item() == pytest.approx(1 / (1 + (1.25 * math.pi) ** 2))


def test_monitor_criticality_equals_scores():
    """The criticality the method ranks by (recorded by the ActivityMonitor) is
    criticality_scores of the membrane potentials the neurons really had."""
    model = snn_model.build("c4,c6s2,f,d3", (1, 8, 8), seed=4)
    seen: list[torch.Tensor] = []
    neuron = model.blocks[1].neuron
    original = neuron.spike
    neuron.spike = lambda v: (seen.append(v.detach().clone()), original(v))[1]
    x = torch.rand(4, 1, 8, 8, 1).repeat(1, 1, 1, 1, 10)
    with torch.no_grad(), ActivityMonitor(model, voltage=True) as monitor:
        model(x)
    recorded = monitor.result().criticality[1]
    expected = criticality_scores(seen[0], float(neuron.threshold)).numpy()
    assert np.allclose(recorded, expected, rtol=1e-5) and recorded.std() > 0


def test_regeneration_count():
    assert regeneration_count(5, 0.2) == 1
    assert regeneration_count(10, 0.2) == 2
    assert regeneration_count(1, 0.2) == 0  # the pruning step keeps at least one unit
    assert regeneration_count(3, 0.9) == 2
    assert regeneration_count(7, 0.0) == 0


def test_prune_and_regenerate_by_hand():
    importance = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    crit = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.5])
    # keep 5, r = 0.2: g = 1; the 4 most important stay, channels 4 and 5 are pruned past
    # the target and the more critical of them (4) comes back
    kept, past, regenerated = prune_and_regenerate(importance, crit, keep=5, ratio=0.2)
    assert kept.tolist() == [0, 1, 2, 3, 4] and past.tolist() == [4, 5] and regenerated.tolist() == [4]
    # r = 0.4: g = 2; channel 3 is more important than 5 but less critical, so 5 returns instead
    kept, past, regenerated = prune_and_regenerate(importance, crit, keep=5, ratio=0.4)
    assert kept.tolist() == [0, 1, 2, 4, 5] and past.tolist() == [3, 4, 5] and regenerated.tolist() == [4, 5]
    # r = 0 is plain pruning by importance
    kept, _, regenerated = prune_and_regenerate(importance, crit, keep=3, ratio=0.0)
    assert kept.tolist() == [0, 1, 2] and regenerated.size == 0
    with pytest.raises(PruneError, match="cannot keep 7 of 6"):
        prune_and_regenerate(importance, crit, keep=7, ratio=0.2)


def test_synapse_masks_by_hand():
    weight = torch.tensor([[0.9, 0.1, 0.05], [0.8, 0.3, 0.2]])
    # keep 3, r = 0.34: g = 1; |w| keeps (0,0) and (1,0); the regenerated synapse goes to
    # the most critical postsynaptic unit (0), its largest pruned weight first: (0,1)
    mask, past, regenerated = synapse_masks(weight, np.array([0.5, 0.4]), keep=3, ratio=0.34)
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert regenerated.tolist() == [[False, True, False], [False, False, False]]
    assert int(past.sum()) == 4
    # the product score crit * |w| prefers (1,1): 0.4 * 0.3 = 0.12 > 0.5 * 0.1
    mask, _, regenerated = synapse_masks(weight, np.array([0.5, 0.4]), keep=3, ratio=0.34,
                                         score="criticality_x_magnitude")
    assert regenerated.tolist() == [[False, False, False], [False, True, False]]
    with pytest.raises(PruneError, match="3 criticality scores for 2 output channels"):
        synapse_masks(weight, np.ones(3), keep=3, ratio=0.2)


def test_network_synapse_masks_rank_across_layers_by_hand():
    weights = {1: torch.tensor([[0.1, 0.2], [0.05, 0.02]]), 2: torch.tensor([[0.9, 0.8, 0.7]])}
    crit = {1: np.array([0.2, 0.9]), 2: np.array([0.5])}
    # keep 4 of 7, r = 0.25: g = 1. Each layer's largest weight is kept (0.2 and 0.9), then the
    # next largest overall (0.8); the most critical postsynaptic unit among the rest is layer 1's
    # unit 1 (0.9), and its larger pruned weight (0.05) comes back, beating the 0.7 of layer 2
    masks = network_synapse_masks(weights, crit, keep=4, ratio=0.25)
    assert masks[1][0].tolist() == [[False, True], [True, False]]
    assert masks[2][0].tolist() == [[True, True, False]]
    assert masks[1][2].tolist() == [[False, False], [True, False]] and not masks[2][2].any()
    assert int(masks[1][1].sum() + masks[2][1].sum()) == 4  # pruned past the target: 7 - 3
    with pytest.raises(PruneError, match="keep at least one per layer"):
        network_synapse_masks(weights, crit, keep=1, ratio=0.2)


def test_regenerated_units_return_with_their_weights():
    model = snn_model.build("c6,c8s2,f,d4", (1, 8, 8), seed=7)
    original = model.blocks[1].synapse.weight.detach().clone()
    importance = original.abs().flatten(1).sum(dim=1).numpy()
    crit = np.zeros(6)
    weakest = int(np.argmin(importance))
    crit[weakest] = 1.0  # the least important channel is the most critical one
    kept, past, regenerated = prune_and_regenerate(importance, crit, keep=3, ratio=0.34)
    assert regenerated.tolist() == [weakest] and len(kept) == 3 and weakest in past
    smaller = prune_model(model, {1: kept})
    row = kept.tolist().index(weakest)
    assert torch.equal(smaller.blocks[1].synapse.weight[row], original[weakest])
    assert smaller.blocks[1].synapse.weight[row].abs().sum() > 0
    # synapses: the regenerated ones keep their trained (non-zero) weights after masking
    weight = model.blocks[2].synapse.weight.detach().clone()
    keep = weight.numel() // 4
    mask, _, regenerated = synapse_masks(weight, np.linspace(0, 1, 8), keep=keep, ratio=0.2)
    MaskSet({2: mask}).apply(model)
    after = model.blocks[2].synapse.weight.detach()
    assert int(regenerated.sum()) == regeneration_count(keep, 0.2) and int(mask.sum()) == keep
    assert torch.equal(after[regenerated], weight[regenerated]) and (after[regenerated] != 0).all()
    assert (after[~mask] == 0).all()


def test_mode_and_config_errors():
    data = make_synthetic(num_classes=2, n_per_class=10, seed=0)
    model = snn_model.build("c4,f", data.input_shape, num_classes=2, seed=0)
    config = TrainConfig(steps=4)
    with pytest.raises(PruneError, match="not both"):
        criticality(model, PruneTask(dataset=data, train=config, synops_target=0.5, sparsity=0.5), progress=False)
    with pytest.raises(PruneError, match="needs a sparsity"):
        criticality(model, PruneTask(dataset=data, train=config, synops_target=0.5),
                    CriticalityConfig(mode="unstructured"), progress=False)
    with pytest.raises(PruneError, match="needs a SynOps target"):
        criticality(model, PruneTask(dataset=data, train=config), progress=False)
    with pytest.raises(PruneError, match="regrow ratio 1.0"):
        CriticalityConfig(regrow_ratio=1.0)
    with pytest.raises(PruneError, match="mode 'channels' unknown"):
        CriticalityConfig(mode="channels")


def test_hardware_budgets_refused_with_a_fix():
    data = make_synthetic(num_classes=2, n_per_class=10, seed=0)
    model = snn_model.build("c32,c16s2,f", data.input_shape, num_classes=2, seed=0)  # 5 cores on Loihi 1
    config = TrainConfig(steps=4)
    impossible = PruneTask(dataset=data, train=config, synops_target=0.5,
                           constraints=Constraints.from_chip("loihi1", max_cores=2))
    with pytest.raises(PruneError, match="impossible hardware budget"):
        criticality(model, impossible, progress=False)
    # synapse pruning keeps all 2048 neurons of the first layer: 4 cores cannot be met that way
    sparse = PruneTask(dataset=data, train=config, sparsity=0.5, constraints=Constraints.from_chip("loihi1", max_cores=4))
    with pytest.raises(PruneError, match="synapse pruning keeps every neuron, so prune channels with --synops-target"):
        criticality(model, sparse, progress=False)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_structured_reaches_synops_target_and_verifies_in_lava(trained_three_class, tmp_path):
    model, data, config = trained_three_class
    task = PruneTask(dataset=data, train=config, synops_target=0.5, finetune_steps=10, eval_samples=64, seed=0)
    result = criticality(model, task, progress=False)
    assert result.info["mode"] == "structured"
    first = result.history[0]  # the selection at the target counts
    for layer, count in first["counts"].items():
        assert len(first["regenerated"][layer]) == regeneration_count(count, 0.2)
        assert set(first["regenerated"][layer]) <= set(first["pruned_past"][layer])
    check = Measurer(synops_inputs(data), config, "val")
    ratio = check.measure(result.model).synops / check.measure(model).synops
    assert ratio <= 0.5 + 1e-9 and result.info["synops_ratio"] == pytest.approx(ratio)
    again = criticality(model, task, progress=False)
    assert again.history == result.history
    path = netx.write(snn_model.to_ir(result.model), tmp_path / "crit.net")
    verified = lava_verify.verify(path, steps=32, samples=1, seed=2)
    assert verified.exact and verified.layers[-1].lava_spikes > 0


@pytest.mark.slow
def test_structured_meets_a_core_budget(tmp_path):
    data = make_synthetic(num_classes=3, n_per_class=20, seed=2)
    config = TrainConfig(epochs=1, batch_size=16, steps=6, seed=0, validate=False)
    model = snn_model.build("c32,c16s2,f", data.input_shape, num_classes=3, seed=0)
    constraints = Constraints.from_chip("loihi1", max_cores=4)  # the dense net needs 5
    task = PruneTask(dataset=data, train=config, synops_target=0.95, constraints=constraints, finetune_steps=2,
                     eval_samples=32, seed=0)
    result = criticality(model, task, progress=False)
    assert result.info["fits"] and result.info["cores"] <= 4
    assert result.model.specs()[1].out == 16  # the largest count that fits: 16 of 32


@pytest.mark.slow
def test_unstructured_reaches_sparsity_and_verifies_in_lava(trained_three_class, tmp_path):
    model, data, config = trained_three_class
    task = PruneTask(dataset=data, train=config, sparsity=0.6, finetune_steps=10, eval_samples=64, seed=0)
    result = criticality(model, task, progress=False)
    assert result.info["mode"] == "unstructured"
    assert sum(h["regenerated"] for h in result.history) > 0
    dense = Measurer(data, config, "test").measure(model)
    pruned = Measurer(data, config, "test").measure(result.model)
    assert 1.0 - pruned.nonzero / dense.nonzero >= 0.6  # as the prune summary counts it
    assert pruned.params == dense.params  # synapses go, neurons stay
    path = netx.write(snn_model.to_ir(result.model), tmp_path / "crit_sparse.net")
    verified = lava_verify.verify(path, steps=32, samples=1, seed=2)
    assert verified.exact and verified.layers[-1].lava_spikes > 0
