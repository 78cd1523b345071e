import copy
import dataclasses
import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from hw_models import fit
from hw_models.cost import required_weight_bits
from neuroprune.data import load_digits
from neuroprune.errors import PruneError
from neuroprune.prune.admm import AdmmConfig, AdmmState, SpikeCounter, admm, project
from neuroprune.prune.base import PruneTask
from neuroprune.prune.quantize import QuantSpec, distinct_mantissas
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import ActivityMonitor
from neuroprune.snn.train import TrainConfig, train

RECIPE = TrainConfig(epochs=4, batch_size=32, lr=1e-2, steps=8, validate=False)


def _as_8bit(network):
    """The same synapses stored with 8-bit weights (the width slayer's quantizer gives)."""
    for index, layer in enumerate(network.layers):
        if getattr(layer, "synaptic", False):
            network = network.replace(index, dataclasses.replace(layer, weight_bits=8))
    return network


def _weights(model):
    return {i: b.synapse.weight.detach().clone() for i, b in model.synaptic_blocks().items()}


def test_projection_prunes_each_layer_and_lands_on_the_grid(trained_c4):
    weights = _weights(trained_c4)
    projected, masks, grids = project(weights, 0.6, QuantSpec(bits=3), "layer")
    for index, weight in projected.items():
        kept = masks.masks[index]
        assert int(kept.sum()) == weight.numel() - round(0.6 * weight.numel())
        assert torch.equal(weight != 0, kept)
        assert torch.unique(weight).numel() <= 8
        # the kept ones are the largest magnitudes
        assert weights[index].abs()[kept].min() >= weights[index].abs()[~kept].max()
        assert torch.allclose(weight, grids[index].scale * grids[index].codes.to(weight.dtype))
    projected, masks, grids = project(weights, 0.6, None, "global")
    assert not grids and masks.sparsity() == pytest.approx(0.6, abs=1e-3)
    kept_all = torch.cat([weights[i].abs()[masks.masks[i]] for i in weights])
    dropped_all = torch.cat([weights[i].abs()[~masks.masks[i]] for i in weights])
    assert kept_all.min() >= dropped_all.max()


def test_z_and_u_updates_follow_admm(trained_c4):
    model = copy.deepcopy(trained_c4)
    config = AdmmConfig(rho=0.1, rho_growth=2.0, rho_max=0.3)
    state = AdmmState(model, 0.5, None, config)
    with torch.no_grad():
        for block in model.synaptic_blocks().values():
            block.synapse.weight.mul_(1.1)
    weights = _weights(model)
    u_old = {i: u.clone() for i, u in state.u.items()}
    record = state.update(model)
    expected_z, _, _ = project({i: weights[i] + u_old[i] for i in weights}, 0.5, None)
    for index in weights:
        assert torch.equal(state.z[index], expected_z[index])
        assert torch.allclose(state.u[index], u_old[index] + weights[index] - expected_z[index])
    assert record["rho"] == 0.1 and state.rho == pytest.approx(0.2)
    state.update(model)
    assert state.rho == pytest.approx(0.3)  # capped at rho_max
    # penalty = rho/2 * ||W - Z + U||^2, differentiable in W
    penalty = state.penalty(model)
    direct = 0.5 * state.rho * sum(float(((weights[i] - state.z[i] + state.u[i]) ** 2).sum()) for i in weights)
    assert float(penalty) == pytest.approx(direct, rel=1e-5)
    penalty.backward()
    assert all(b.synapse.weight.grad is not None for b in model.synaptic_blocks().values())


def test_spike_count_is_the_monitors_count_and_has_a_gradient(trained_c4, synthetic_6x6):
    model = copy.deepcopy(trained_c4)
    x = torch.as_tensor(synthetic_6x6.x_train[:16]).unsqueeze(-1).repeat(1, 1, 1, 1, 8)
    with SpikeCounter(model) as counter:
        model(x)
        count = counter.take()
    count.backward()
    grads = [b.synapse.weight.grad for b in model.synaptic_blocks().values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad(), ActivityMonitor(model) as monitor:
        model(x)
    activity = monitor.result()
    expected = sum(activity.spikes_per_inference(i) for i in model.synaptic_blocks())
    assert float(count) == pytest.approx(expected, rel=1e-5) and expected > 0
    with torch.no_grad(), SpikeCounter(model) as counter:  # evaluation passes are not kept
        model(x)
        with pytest.raises(PruneError, match="no spikes recorded"):
            counter.take()


def test_bad_configs_and_missing_targets_are_refused(trained_c4, synthetic_6x6):
    with pytest.raises(PruneError, match="ternary weights take 2 bits"):
        AdmmConfig(ternary=True, weight_bits=4)
    with pytest.raises(PruneError, match="scope"):
        AdmmConfig(scope="row")
    with pytest.raises(PruneError, match="lambda"):
        AdmmConfig(activity_reg=-1.0)
    with pytest.raises(PruneError, match="ADMM needs a target"):
        admm(trained_c4, PruneTask(dataset=synthetic_6x6, train=RECIPE, sparsity=0.0), AdmmConfig(steps=1), progress=False)


@pytest.mark.slow
def test_admm_ternary_pruned_net_fits_fewer_bits_and_is_deterministic(trained_c4, synthetic_6x6):
    task = PruneTask(dataset=synthetic_6x6, train=RECIPE, sparsity=0.5, finetune_steps=10, eval_samples=40, seed=1)
    config = AdmmConfig(steps=20, update_every=5, ternary=True, scope="layer")
    result = admm(trained_c4, task, config, progress=False)
    again = admm(trained_c4, task, config, progress=False)
    for a, b in zip(result.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
    network = snn_model.to_ir(result.model)
    for index, count in distinct_mantissas(network).items():
        weight = network[index].weight
        assert count <= 3 and required_weight_bits(weight) <= 2
        assert set(np.unique(np.sign(weight))) == {-1, 0, 1}
        assert 1 - np.count_nonzero(weight) / weight.size == pytest.approx(0.5, abs=0.01)
    # the slayer quantizer hooks are back (the grid lives in the weights themselves)
    for block in result.model.synaptic_blocks().values():
        assert block.synapse.pre_hook_fx == block.neuron.quantize_8bit
    before = fit(_as_8bit(network), "loihi1", suggest_fixes=False)  # same synapses, 8-bit weights
    after = fit(network, "loihi1", suggest_fixes=False)
    for old, new in zip(before.layers, after.layers):
        if new.synapses:
            assert new.weight_bits <= 2 < old.weight_bits
            # 64-bit words: a 4-neuron layer's axon rows round up to one word either way
            assert new.synapse_memory_bits <= old.synapse_memory_bits
    assert after.totals.synapse_memory_bits < before.totals.synapse_memory_bits
    assert [h["step"] for h in result.history] == [5, 10, 15, 20]
    assert result.info["layers"]["1"]["weight_bits"] <= 2 and result.info["fits"]


@pytest.mark.slow
def test_activity_regularisation_lowers_the_spike_count(trained_c4, synthetic_6x6):
    task = PruneTask(dataset=synthetic_6x6, train=RECIPE, sparsity=0.3, finetune_steps=0, eval_samples=60, seed=0)
    x = torch.as_tensor(synthetic_6x6.x_val[:60]).unsqueeze(-1).repeat(1, 1, 1, 1, 8)

    def spikes(model):
        with torch.no_grad(), ActivityMonitor(model) as monitor:
            model(x)
        activity = monitor.result()
        return sum(activity.spikes_per_inference(i) for i in model.synaptic_blocks())

    plain = admm(trained_c4, task, AdmmConfig(steps=30, update_every=10), progress=False)
    quiet = admm(trained_c4, task, AdmmConfig(steps=30, update_every=10, activity_reg=0.05), progress=False)
    assert spikes(quiet.model) < 0.8 * spikes(plain.model)
    assert quiet.info["activity_reg"] == 0.05


@pytest.mark.slow
def test_admm_4bit_digits_export_is_smaller_and_spike_exact_in_lava(tmp_path):
    """4-bit ADMM on digits: the netx file holds <= 16 values per layer, fits in 4
    bits on loihi1 with less synapse memory than 8-bit weights at the same sparsity,
    and Lava (fixed point) agrees spike for spike."""
    torch.set_num_threads(1)
    digits = load_digits(seed=0)
    recipe = TrainConfig(epochs=1, batch_size=64, lr=1e-2, steps=16, validate=False, max_steps=8)
    model = snn_model.build("c4,c8s2,f", (1, 8, 8), num_classes=10, seed=0)
    train(model, digits, recipe, progress=False)
    task = PruneTask(dataset=digits, train=recipe, sparsity=0.5, finetune_steps=4, eval_samples=32)
    result = admm(model, task, AdmmConfig(steps=8, update_every=4, weight_bits=4), progress=False)
    path = netx.write(snn_model.to_ir(result.model), tmp_path / "admm4.net")
    network = netx.read(path)
    for index, count in distinct_mantissas(network).items():
        assert count <= 16
    report = fit(network, "loihi1", suggest_fixes=False)
    assert all(layer.weight_bits <= 4 for layer in report.layers if layer.synapses)
    eight_bit = fit(_as_8bit(network), "loihi1", suggest_fixes=False)  # same synapses, 8-bit weights
    for old, new in zip(eight_bit.layers, report.layers):
        if new.synapses:
            assert old.weight_bits == 8 and new.synapse_memory_bits < old.synapse_memory_bits
    # convs store an index (6+ bits) beside each shared weight, so halving the weight
    # width saves less than half: measured 16 % here
    assert report.totals.synapse_memory_bits < 0.9 * eight_bit.totals.synapse_memory_bits
    x = torch.as_tensor(digits.x_test[:1]).unsqueeze(-1).repeat(1, 1, 1, 1, 32)
    verdict = lava_verify.verify(path, x=result.model.chip_input(x).numpy())
    assert verdict.exact, [(m.index, m.percent, m.first_mismatch) for m in verdict.layers]
    assert all(m.lava_spikes > 0 for m in verdict.layers), [(m.index, m.lava_spikes) for m in verdict.layers]
