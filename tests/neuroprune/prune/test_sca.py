import math

import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from hw_models import Constraints, resource_use
from neuroprune.data import make_synthetic
from neuroprune.errors import PruneError
from neuroprune.prune.base import Measurer, PruneTask, synops_inputs
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.sca import (
    ChannelMasks,
    SCAConfig,
    channel_activity,
    channel_grad_norm,
    keep_ratio_schedule,
    regrow_count,
    sca,
    sca_select,
)
from neuroprune.prune.delivery import shrink_counts
from neuroprune.prune.estimate import target_keep_ratio
from neuroprune.prune.structured import keep_by_ratio, keep_count, prune_model, prune_network
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import ActivityMonitor
from neuroprune.snn.train import TrainConfig


def test_channel_activity_by_hand():
    # (N=2, C=3, T=2): channel 0 mixes signs, channel 1 is constant, channel 2 is silent
    v = torch.tensor([
        [[1.0, -1.0], [0.5, 0.5], [0.0, 0.0]],
        [[2.0, 0.0], [-0.5, 0.5], [0.0, 0.0]],
    ])
    assert torch.allclose(channel_activity(v), torch.tensor([1.0, 0.5, 0.0]))
    # conv layout (N, C, H, W, T): the mean also runs over positions
    conv = torch.zeros(1, 2, 2, 1, 1)
    conv[0, 0, :, 0, 0] = torch.tensor([3.0, -1.0])
    conv[0, 1, :, 0, 0] = torch.tensor([-4.0, 0.0])
    assert torch.allclose(channel_activity(conv), torch.tensor([2.0, 2.0]))


def test_channel_grad_norm_by_hand():
    grad = torch.zeros(3, 2, 1, 1, 1)
    grad[0, :, 0, 0, 0] = torch.tensor([3.0, 4.0])
    grad[2, :, 0, 0, 0] = torch.tensor([-1.0, 0.0])
    assert channel_grad_norm(grad).tolist() == [5.0, 0.0, 1.0]


def test_schedule_and_regrow_count():
    assert keep_ratio_schedule(0, 4, 0.5) == 1.0
    assert keep_ratio_schedule(2, 4, 0.5) == pytest.approx(0.5 + 0.5 * 0.5 ** 3)
    assert keep_ratio_schedule(4, 4, 0.5) == 0.5
    assert regrow_count(10, 0.3, 0, 4) == 3
    assert regrow_count(10, 0.4, 1, 3) == round(4 * 0.5 * (1 + math.cos(math.pi / 3)))  # 3
    assert regrow_count(10, 0.3, 4, 4) == 0  # the last update regrows nothing
    assert regrow_count(2, 0.9, 0, 4) == 1  # at most live - 1
    with pytest.raises(PruneError, match="outside"):
        keep_ratio_schedule(5, 4, 0.5)


def test_sca_select_by_hand():
    live = np.array([True, True, True, False, False, True])
    activity = np.array([0.9, 0.1, 0.5, 0.0, 0.0, 0.3])
    grad = np.array([9.0, 9.0, 9.0, 0.2, 0.7, 9.0])  # live channels' gradients do not matter
    new_live, dropped, regrown = sca_select(live, activity, grad, count=3, regrow=1)
    # the 2 most active live channels stay, the 2 others go, the pruned channel of largest gradient returns
    assert dropped.tolist() == [1, 5] and regrown.tolist() == [4]
    assert np.flatnonzero(new_live).tolist() == [0, 2, 4]
    # no pruned channel yet: pruning by activity only
    new_live, dropped, regrown = sca_select(np.ones(4, bool), [0.4, 0.1, 0.3, 0.2], np.zeros(4), count=2, regrow=1)
    assert np.flatnonzero(new_live).tolist() == [0, 2] and regrown.size == 0 and dropped.tolist() == [1, 3]
    # more regrowth asked than pruned channels exist: limited to those
    new_live, _, regrown = sca_select(np.array([True, True, False]), [0.2, 0.1, 0.0], [0, 0, 1.0], count=2, regrow=2)
    assert regrown.tolist() == [2] and np.flatnonzero(new_live).tolist() == [0, 2]
    with pytest.raises(PruneError, match="cannot keep 0 of 3"):
        sca_select(np.ones(3, bool), np.ones(3), np.ones(3), count=0, regrow=0)


def test_shrink_counts_by_hand():
    # estimate: layer 1 carries 60 % of the SynOps, layer 2 40 %, linear in the kept fraction
    channels = {1: 10, 2: 20}
    estimate = lambda counts: 0.6 * counts[1] / 10 + 0.4 * counts[2] / 20  # noqa: E731
    start = {1: 8, 2: 16}  # estimate 0.8
    # a 3 % cut: one channel from layer 1 (fractions tie at 0.8; the lower index goes first) -> 0.74
    assert shrink_counts(start, channels, estimate, 0.97) == {1: 7, 2: 16}
    # to at most 0.7: layer 1 (0.7 < 0.8 now), then layer 2 twice (0.8, 0.75 > 0.7) -> 0.70
    assert shrink_counts(start, channels, estimate, 0.875) == {1: 7, 2: 14}
    # an impossible factor stops at one channel per layer
    assert shrink_counts(start, channels, estimate, 0.0) == {1: 1, 2: 1}


def test_channel_masks_prune_regrow_and_apply():
    model = snn_model.build("c6,c8s2,f,d4", (1, 8, 8), seed=3)
    original = model.blocks[1].synapse.weight.detach().clone()
    masks = ChannelMasks(model, [1, 2])
    masks.prune(model, 1, [1, 3, 4])
    weight = model.blocks[1].synapse.weight
    assert weight[[1, 3, 4]].abs().sum() == 0 and masks.counts() == {1: 3, 2: 8}
    # a zeroed channel is a removed channel: same outputs as the really smaller model
    smaller = prune_model(model, {1: [0, 2, 5]})
    x = torch.rand(3, 1, 8, 8, 1).repeat(1, 1, 1, 1, 16)
    with torch.no_grad():
        assert torch.equal(model(x), smaller(x))
    masks.regrow(model, 1, [3, 4])
    assert masks.counts()[1] == 5 and masks.live[1].tolist() == [True, False, True, True, True, True]
    assert torch.equal(weight[[3, 4]], original[[3, 4]]) and weight[[3, 4]].abs().sum() > 0
    with torch.no_grad():  # an optimizer step moves every row; apply() silences the pruned one again
        weight.add_(0.01)
    masks.apply(model)
    assert weight[1].abs().sum() == 0 and (weight[[0, 2, 3, 4, 5]] != 0).all()
    with pytest.raises(PruneError, match="channel 0 is live"):
        masks.regrow(model, 1, [0])
    with pytest.raises(PruneError, match="channel 1 is already pruned"):
        masks.prune(model, 1, [1])


def test_monitor_voltage_equals_channel_activity():
    """The activity SCA ranks by (the monitor's mean |v|) is channel_activity of the
    membrane potentials the neurons really had."""
    model = snn_model.build("c4,c6s2,f,d3", (1, 8, 8), seed=2)
    seen: list[torch.Tensor] = []
    neuron = model.blocks[2].neuron
    original = neuron.spike
    neuron.spike = lambda v: (seen.append(v.detach().clone()), original(v))[1]
    x = torch.rand(5, 1, 8, 8, 1).repeat(1, 1, 1, 1, 12)
    with torch.no_grad(), ActivityMonitor(model, voltage=True) as monitor:
        model(x)  # the monitor wraps our capturing wrapper and removes both on exit
    recorded = monitor.result().mean_abs_voltage[2]
    assert recorded.max() > 0
    assert np.allclose(recorded, channel_activity(seen[0]).numpy(), rtol=1e-5)


def test_target_keep_ratio_respects_core_budget():
    model = snn_model.build("c32,c16s2,f,d4", (1, 8, 8), seed=0)
    network = snn_model.to_ir(model)
    graph = DependencyGraph(network)
    constraints = Constraints.from_chip("loihi1", max_cores=4)
    assert not resource_use(network, constraints).ok  # the dense net needs 5 cores
    ratio = target_keep_ratio(network, graph, graph.prunable(), 1.0, constraints)
    fitted = prune_network(network, keep_by_ratio(graph, {1: ratio, 2: ratio}), graph)
    assert resource_use(fitted, constraints).ok
    # one more channel in the 32-channel layer breaks the budget: the ratio is the largest that fits
    more = keep_count(32, ratio) + 1
    bigger = prune_network(network, keep_by_ratio(graph, {1: more / 32, 2: ratio}), graph)
    assert not resource_use(bigger, constraints).ok
    assert target_keep_ratio(network, graph, graph.prunable(), 0.3, None) == 0.3


def test_config_and_task_errors():
    with pytest.raises(PruneError, match="leave no update"):
        SCAConfig(train_steps=10, update_every=25)
    with pytest.raises(PruneError, match="regrow_fraction"):
        SCAConfig(regrow_fraction=1.0)
    data = make_synthetic(num_classes=2, n_per_class=10, seed=0)
    model = snn_model.build("c4,f", data.input_shape, num_classes=2, seed=0)
    with pytest.raises(PruneError, match="not --sparsity"):
        sca(model, PruneTask(dataset=data, train=TrainConfig(steps=4), sparsity=0.5), progress=False)
    with pytest.raises(PruneError, match="needs a SynOps target or a channel keep ratio"):
        sca(model, PruneTask(dataset=data, train=TrainConfig(steps=4)), progress=False)
    big = snn_model.build("c32,c16s2,f", data.input_shape, num_classes=2, seed=0)  # 5 cores on Loihi 1
    impossible = PruneTask(dataset=data, train=TrainConfig(steps=4), synops_target=0.5,
                           constraints=Constraints.from_chip("loihi1", max_cores=2))
    with pytest.raises(PruneError, match="impossible hardware budget.*raise --max-cores"):
        sca(big, impossible, progress=False)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_sca_reaches_target_regrows_and_verifies_in_lava(trained_three_class, tmp_path):
    model, data, config = trained_three_class
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = PruneTask(dataset=data, train=config, synops_target=0.5, finetune_steps=10, eval_samples=64, seed=0)
    sca_config = SCAConfig(train_steps=40, update_every=10, regrow_fraction=0.5)
    result = sca(model, task, sca_config, progress=False)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # schedule: 3 updates, the structure ends at the final counts
    assert [h["update"] for h in result.history] == [1, 2, 3]
    final = {int(k): v for k, v in result.info["counts"].items()}
    assert {int(k): v for k, v in result.history[-1]["counts"].items()} == final
    # regrowth happened where pruned channels existed, with the scheduled count
    second = result.history[1]
    channels = {"1": 8, "2": 12}
    for layer, regrown in second["regrown"].items():
        pruned_before = channels[layer] - result.history[0]["counts"][layer]
        expected = min(regrow_count(second["counts"][layer], 0.5, 2, 3), pruned_before)
        assert len(regrown) == expected
        assert not set(regrown) & set(second["dropped"][layer])
    assert sum(len(r) for r in second["regrown"].values()) > 0
    # target reached, measured on the inputs delivery checks and independently on the test split
    assert result.info["synops_ratio"] <= 0.5
    check = Measurer(synops_inputs(data), config, "val")
    assert check.measure(result.model).synops / check.measure(model).synops <= 0.5 + 1e-9
    shapes = [s.out for s in result.model.specs() if s.kind == "conv"]
    assert shapes[0] <= final[1] and shapes[1] <= final[2]
    # same seed, same result
    again = sca(model, task, sca_config, progress=False)
    assert again.history == result.history
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 result.model.state_dict().values()))
    # exports to netx and is spike-exact in Lava
    path = netx.write(snn_model.to_ir(result.model), tmp_path / "sca.net")
    verified = lava_verify.verify(path, steps=32, samples=1, seed=1)
    assert verified.exact and verified.layers[-1].lava_spikes > 0
