import numpy as np
import pytest
import torch

from hw_models import fit
from hw_models.cost import required_weight_bits
from neuroprune.errors import PruneError
from neuroprune.prune.masks import magnitude_masks
from neuroprune.prune.quantize import (
    QuantSpec,
    chip_exponents,
    distinct_mantissas,
    fit_scale,
    quantize_model,
    quantize_tensor,
)
from neuroprune.snn import model as snn_model


def test_fitted_scale_is_least_squares_for_its_codes():
    values = torch.tensor([0.9, -1.1, 0.05, 2.0, -0.4], dtype=torch.float64)
    scale, codes = fit_scale(values, QuantSpec(bits=2, ternary=True))
    # converged: codes are the rounding of V / alpha and alpha = V^T Q / Q^T Q
    assert torch.equal(codes, torch.clamp(torch.round(values / scale), -1, 1))
    assert scale == pytest.approx(float(values @ codes) / float(codes @ codes))
    assert codes.tolist() == [1.0, -1.0, 0.0, 1.0, 0.0]
    assert scale == pytest.approx((0.9 + 1.1 + 2.0) / 3)


def test_chip_scale_is_the_best_power_of_two():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(200, generator=gen, dtype=torch.float64) * 0.7
    spec = QuantSpec(bits=4)
    result = quantize_tensor(values, spec)
    errors = {}
    for exponent in range(1, 9):
        scale = (1 << exponent) / 64
        if -8 * (1 << exponent) < -256 or 7 * (1 << exponent) > 254:
            continue
        codes = torch.clamp(torch.round(values / scale), -8, 7)
        errors[exponent] = float(((values - scale * codes) ** 2).sum())
    assert chip_exponents(spec) == sorted(errors)
    assert result.exponent == min(errors, key=errors.get)
    assert result.error == pytest.approx(min(errors.values()))
    # the fitted (non power-of-two) scale can only do better, never worse
    assert result.fitted_error <= result.error + 1e-9
    assert torch.allclose(result.values.double(), result.scale * result.codes.double())


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_mantissas_fit_the_requested_bits(bits):
    gen = torch.Generator().manual_seed(bits)
    values = torch.randn(64, 30, generator=gen) * 0.5
    result = quantize_tensor(values, QuantSpec(bits=bits))
    mantissas = (result.values * 64).round().to(torch.int64).numpy()
    assert np.array_equal(mantissas, result.mantissas.numpy())
    assert np.unique(mantissas).size <= 2 ** bits
    assert required_weight_bits(mantissas) <= bits
    assert mantissas.min() >= -256 and mantissas.max() <= 254 and np.all(mantissas % 2 == 0)


def test_mask_sets_the_zeros_and_keeps_the_rest_nonzero():
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(40, 40, generator=gen) * 0.3
    mask = values.abs() > 0.25
    result = quantize_tensor(values, QuantSpec(bits=2, ternary=True), mask)
    assert torch.equal(result.codes != 0, mask)
    assert set(result.codes.unique().tolist()) <= {-1, 0, 1}
    assert torch.equal(torch.sign(result.codes[mask]).float(), torch.sign(values[mask]))
    with pytest.raises(PruneError, match="mask shape"):
        quantize_tensor(values, QuantSpec(bits=4), mask[:3])


def test_bad_bit_widths_are_refused():
    with pytest.raises(PruneError, match="weight bits 1"):
        QuantSpec(bits=1)
    with pytest.raises(PruneError, match="weight bits 9"):
        QuantSpec(bits=9)


def _wide_model() -> snn_model.SNN:
    """A model whose 8-bit mantissas use the full range (as trained nets do)."""
    model = snn_model.build("c8,c8s2,f", (1, 8, 8), num_classes=10, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.synaptic_blocks().values():
            weight = block.synapse.weight
            weight.copy_(torch.randn(weight.shape, generator=gen) * 1.5)
    return model


def test_quantized_model_shrinks_synapse_memory_on_loihi1():
    model = _wide_model()
    masks = magnitude_masks(model, 0.5)
    pruned = _wide_model()
    masks.apply(pruned)
    quantized, layers = quantize_model(model, QuantSpec(bits=4), masks.masks)
    # the source model is not touched
    assert not torch.equal(model.blocks[1].synapse.weight, quantized.blocks[1].synapse.weight)
    network = snn_model.to_ir(quantized)
    for index, count in distinct_mantissas(network).items():
        assert count <= 16, index
        assert np.count_nonzero(network[index].weight) == int(masks.masks[index].sum())
    before = fit(snn_model.to_ir(pruned), "loihi1", suggest_fixes=False)
    after = fit(network, "loihi1", suggest_fixes=False)
    for layer_before, layer_after in zip(before.layers, after.layers):
        if layer_after.synapses:
            assert layer_after.weight_bits <= 4 < layer_before.weight_bits
            assert layer_after.synapse_memory_bits < layer_before.synapse_memory_bits
    assert after.totals.synapse_memory_bits < 0.8 * before.totals.synapse_memory_bits
    assert set(layers) == set(model.synaptic_blocks())
