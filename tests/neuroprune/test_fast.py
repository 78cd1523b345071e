"""The fused no-grad forward (neuroprune.snn.fast) gives slayer's spikes exactly."""

from __future__ import annotations

import pytest
import torch

from neuroprune.snn import fast
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import ActivityMonitor
from neuroprune.snn.encoders import direct, rate


def active_model(arch: str, shape: tuple[int, ...], input_neuron: bool = True, shift: float = 0.25,
                 seed: int = 0) -> snn_model.SNN:
    """A model whose every layer fires: weights shifted positive after random init."""
    model = snn_model.build(arch, shape, num_classes=5, input_neuron=input_neuron, seed=seed,
                            neuron=snn_model.NeuronConfig(threshold=1.0, current_decay=0.3, voltage_decay=0.1))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(shift)
    return model.eval()


def both(model: snn_model.SNN, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    with torch.inference_mode():
        model.fast_inference = False
        reference = model.forward_all(x)
        model.fast_inference = True
        assert fast.unsupported(model) is None
        fused = model.forward_all(x)
    return reference, fused


@pytest.mark.parametrize("arch, shape, steps, input_neuron", [
    ("c6,c8s2,c8s2g2,f,d12", (1, 10, 10), 12, True),
    ("c4k5p1,c6s2,f,d9", (2, 9, 7), 7, True),
    ("d16,d8", (30,), 9, True),
    ("c6,c8s2,f,d12", (1, 8, 8), 10, False),
    # many steps and large fan-in: the state bound exceeds int32, the int64 path runs
    ("c48,c64,f,d12", (1, 6, 6), 48, True),
])
def test_fused_forward_gives_slayers_spikes_in_every_layer(arch, shape, steps, input_neuron) -> None:
    model = active_model(arch, shape, input_neuron)
    generator = torch.Generator().manual_seed(1)
    data = torch.rand((24, *shape), generator=generator)
    x = direct(data, steps) if input_neuron else rate(data, steps, generator=generator)
    reference, fused = both(model, x)
    assert len(reference) == len(fused)
    for index, (a, b) in enumerate(zip(reference, fused)):
        assert a.shape == b.shape and a.dtype == b.dtype, index
        assert torch.equal(a, b), f"block {index}: {int((a != b).sum())} spikes differ"
        if index < len(reference) - 1:  # every layer is active, so equality is not vacuous
            assert 0.0 < float(a.mean()) < 1.0, index


def test_activity_monitor_sees_the_same_spikes_and_voltage_recording_falls_back() -> None:
    model = active_model("c6,c8s2,f,d12", (1, 8, 8))
    x = direct(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2)), 10)
    rates = []
    for fused in (False, True):
        model.fast_inference = fused
        with torch.inference_mode(), ActivityMonitor(model) as monitor:
            model(x)
        rates.append(monitor.result().rates)
    assert rates[0].keys() == rates[1].keys()
    for index in rates[0]:
        assert (rates[0][index] == rates[1][index]).all()
        assert rates[0][index].sum() > 0
    # voltage recording patches the neurons' spike function: the fused path steps aside
    model.fast_inference = True
    with ActivityMonitor(model, voltage=True) as monitor:
        assert "spike function is patched" in fast.unsupported(model)
        with torch.inference_mode():
            model(x)
    assert monitor.result().mean_abs_voltage
    assert fast.unsupported(model) is None


def test_gradients_use_slayer() -> None:
    model = active_model("c6,c8s2,f,d12", (1, 8, 8))
    x = direct(torch.rand(4, 1, 8, 8), 8)
    output = model(x)
    assert output.requires_grad  # slayer's autograd path with the surrogate gradient
    output.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_shift_to_zero_matches_slayer(dtype) -> None:
    from lava.lib.dl.slayer.utils.int_utils import right_shift_to_zero

    x = torch.randint(-(2**30), 2**30, (5000,), generator=torch.Generator().manual_seed(3)).to(dtype)
    x[:6] = torch.tensor([0, 1, -1, 4095, -4095, -4096])
    expected = right_shift_to_zero(x.clone(), 12)
    assert torch.equal(fast._shift_to_zero_(x.clone(), torch.empty_like(x)), expected)
