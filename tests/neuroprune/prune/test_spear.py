import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from hw_models import Constraints, fit
from neuroprune.errors import PruneError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron
from neuroprune.prune.base import Measurer, PruneTask, synops_inputs
from neuroprune.prune.ddpg import DDPGAgent, DDPGConfig
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.lre import LinearSynOpsEstimator
from neuroprune.prune.estimate import SynOpsModel
from neuroprune.prune.spear import SpearConfig, spear
from neuroprune.snn import model as snn_model

FAST = SpearConfig(episodes=6, warmup=3, lre_samples=4, lre_finetune_steps=8, recovery_steps=2, hidden=32)


def _chain() -> Network:
    neuron = Neuron()
    return Network([
        InputLayer(shape=(1, 4, 4), neuron=neuron),
        ConvLayer(weight=np.ones((4, 1, 3, 3), dtype=np.int32), neuron=neuron, padding=1),
        ConvLayer(weight=np.ones((6, 4, 3, 3), dtype=np.int32), neuron=neuron, padding=1),
        FlattenLayer(),
        DenseLayer(weight=np.ones((2, 96), dtype=np.int32), neuron=neuron),
    ])


def test_synops_model_is_bilinear_in_keep_ratios():
    net = _chain()
    model = SynOpsModel(net, DependencyGraph(net), {1: 100.0, 2: 300.0, 4: 600.0})
    assert model.ratio({}) == pytest.approx(1.0)
    # layer 1 keeps half: its own synops halve, layer 2 loses half its input spikes
    assert model.ratio({1: 0.5}) == pytest.approx((50 + 150 + 600) / 1000)
    # layer 2 keeps a third: its synops and the dense layer's inputs shrink
    assert model.ratio({1: 0.5, 2: 1 / 3}) == pytest.approx((50 + 50 + 200) / 1000)
    assert model.layer_share(2) == pytest.approx(0.9)


def test_lre_recovers_a_linear_relation_and_reports_holdout_error():
    lre = LinearSynOpsEstimator()
    rng = np.random.default_rng(0)
    for before in rng.uniform(0.2, 1.0, 12):
        lre.add(before, 0.9 * before + 0.05 + rng.normal(0, 1e-3))
    stats = lre.fit()
    assert stats.weight == pytest.approx(0.9, abs=0.01) and stats.bias == pytest.approx(0.05, abs=0.01)
    assert stats.r2 > 0.99 and stats.holdout_samples == 3 and stats.holdout_mean_rel_error < 0.01
    assert lre.predict(0.5) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(PruneError, match="at least 3 samples"):
        LinearSynOpsEstimator().fit()


def test_ddpg_actions_stay_in_range_and_state_round_trips():
    agent = DDPGAgent(5, DDPGConfig(hidden=16, warmup=2, a_min=0.3, batch_size=4), seed=0)
    rng = np.random.default_rng(0)
    state = np.ones(5, dtype=np.float32)
    actions = [agent.act(state, episode, rng) for episode in range(6)]
    assert all(0.3 <= a <= 1.0 for a in actions)
    for episode in range(6):
        agent.end_episode([(state, 0.5, state, True)] * 3, reward=float(episode), episode=episode, rng=rng)
    assert agent.sigma == pytest.approx(0.5 * 0.95 ** 4)
    clone = DDPGAgent(5, DDPGConfig(hidden=16, warmup=2, a_min=0.3, batch_size=4), seed=1)
    clone.load_state_dict(agent.state_dict())
    assert clone.policy(state) == agent.policy(state) and clone.baseline == agent.baseline


def test_spear_refuses_missing_target(trained_small):
    model, data, config = trained_small
    with pytest.raises(PruneError, match="needs a SynOps target"):
        spear(model, PruneTask(dataset=data, train=config), FAST, progress=False)


def _measured_ratio(model, pruned, data, config) -> float:
    check = Measurer(synops_inputs(data), config, "val")
    return check.measure(pruned).synops / check.measure(model).synops


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_spear_delivers_under_target(trained_small, seed):
    model, data, config = trained_small
    task = PruneTask(dataset=data, train=config, synops_target=0.5, finetune_steps=15, eval_samples=128, seed=seed)
    result = spear(model, task, FAST, progress=False)
    assert result.info["complete"] and len(result.history) == FAST.episodes
    measured = _measured_ratio(model, result.model, data, config)
    print("measured SynOps ratio", measured, result.info["final_choice"])
    assert measured <= 0.5
    assert result.info["lre"]["samples"] == FAST.lre_samples
    assert snn_model.to_ir(result.model).num_params < snn_model.to_ir(model).num_params


@pytest.mark.slow
def test_resumed_search_equals_uninterrupted(trained_small, tmp_path):
    model, data, config = trained_small
    task = PruneTask(dataset=data, train=config, synops_target=0.6, finetune_steps=10, eval_samples=96, seed=3)
    full = spear(model, task, FAST, checkpoint=tmp_path / "full.search", progress=False)
    partial = spear(model, task, FAST, checkpoint=tmp_path / "part.search", progress=False, stop_after=2)
    assert not partial.info["complete"] and partial.info["episodes_done"] == 2
    resumed = spear(model, task, FAST, checkpoint=tmp_path / "part.search", resume=True, progress=False)
    assert [h["reward"] for h in resumed.history] == [h["reward"] for h in full.history]
    assert [h["ratios"] for h in resumed.history] == [h["ratios"] for h in full.history]
    assert resumed.info["best"] == full.info["best"]
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_core_budget_is_met_and_result_verifies_in_lava(trained_small, tmp_path):
    model, data, config = trained_small
    dense = fit(snn_model.to_ir(model), "loihi1")
    # squeeze the neurons per core so the dense net needs more cores than the budget
    chip = dense.chip
    small_chip = type(chip)(**{**chip.__dict__, "max_neurons_per_core": 128})
    dense_small = fit(snn_model.to_ir(model), small_chip)
    budget = dense_small.totals.cores - 2
    constraints = Constraints.from_chip(small_chip, max_cores=budget)
    task = PruneTask(dataset=data, train=config, synops_target=0.9, constraints=constraints, finetune_steps=10,
                     eval_samples=96, seed=0)
    result = spear(model, task, FAST, progress=False)
    network = snn_model.to_ir(result.model)
    report = fit(network, small_chip, max_cores=budget)
    assert report.ok and report.totals.cores <= budget < dense_small.totals.cores
    path = netx.write(network, tmp_path / "spear.net")
    verified = lava_verify.verify(path, steps=32, seed=1)
    assert verified.exact


def test_calibrate_scale_finds_the_largest_scale_under_target_and_budget():
    from neuroprune.prune.estimate import calibrate_scale

    def measure(ratios):  # SynOps fraction: mean keep ratio
        return float(np.mean(list(ratios.values())))

    shape = {1: 0.5, 2: 0.25}
    scale = calibrate_scale(measure, shape, 0.6, 1.0, 4.0, iterations=12)
    assert scale == pytest.approx(1.6, abs=3 / 2 ** 12) and measure({i: r * scale for i, r in shape.items()}) <= 0.6
    # past 2 the first layer is capped at 1: 0.5 * (1 + 0.25 s) = 0.9 -> s = 3.2
    assert calibrate_scale(measure, shape, 0.9, 1.0, 4.0, iterations=12) == pytest.approx(3.2, abs=3 / 2 ** 12)
    # a budget that refuses layer 2 above 0.3 keeps the scale at 1.2
    capped = calibrate_scale(measure, shape, 0.9, 1.0, 4.0, iterations=12, accept=lambda r: r[2] <= 0.3)
    assert capped == pytest.approx(1.2, abs=3 / 2 ** 12) and capped <= 1.2
    # nothing passes: the lower end
    assert calibrate_scale(measure, shape, 0.1, 1.0, 4.0) == 1.0


def test_paired_z_counts_only_the_samples_the_two_disagree_on():
    from neuroprune.prune.spear import paired_z

    reference = [1, 1, 0, 0, 1, 0, 1, 0]
    assert paired_z(reference, reference) == 0.0
    # right where the reference is wrong on samples 2, 3, 5 and 7, wrong where it is right on 6:
    # (4 - 1) / sqrt(4 + 1)
    assert paired_z([1, 1, 1, 1, 1, 1, 0, 1], reference) == pytest.approx(3 / np.sqrt(5))
    assert paired_z([0, 1, 0, 0, 1, 0, 1, 0], reference) == pytest.approx(-1.0)
    with pytest.raises(PruneError, match="evidence"):
        SpearConfig(evidence=-1)


@pytest.mark.slow
def test_without_evidence_the_uniform_policy_is_delivered(trained_small):
    model, data, config = trained_small
    task = PruneTask(dataset=data, train=config, synops_target=0.5, finetune_steps=10, eval_samples=96, seed=0)
    result = spear(model, task, SpearConfig(**{**FAST.__dict__, "evidence": 1e9}), progress=False)
    assert len(set(result.info["final_choice"].values())) == 1
    assert _measured_ratio(model, result.model, data, config) <= 0.5
