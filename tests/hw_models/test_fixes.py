"""Every fix the fit report prints, applied, makes its violation go away: each fix is
parsed from the report, applied to the network (or the options), and fit re-run."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from hw_models.chip import load_chip
from hw_models.report import fit, keep_channels
from neuroprune.ir import (ConcatLayer, ConvLayer, ConvTransposeLayer, DenseLayer, FlattenLayer, InputLayer, Network,
                           RecurrentDenseLayer, UnpoolLayer)

from .conftest import NEURON, chip_variant, dense_net, full_weights, small_conv_net

PILOTNET = "tests/lava/lib/dl/netx/gts/pilotnet_lif/network.net"


def _apply(network: Network, chip, budget: dict, fix: str):
    """(network, chip, budgets) after one fix; None for a fix we cannot apply here."""
    if match := re.fullmatch(r"raise --max-(cores|chips) to (\d+)(?: \(.*\))?", fix):
        return network, chip, {**budget, f"max_{match.group(1)}": int(match.group(2))}
    if match := re.fullmatch(r"use (loihi\d) \(needs \d+ cores on \d+ chips?\)", fix):
        return network, load_chip(match.group(1)), budget
    if match := re.search(r"prune (?:it|layer (\d+)) to <= (\d+) output (?:channels|neurons) \(now \d+\)", fix):
        index = int(match.group(1) or re.search(r"fit layer (\d+) in", fix).group(1))
        return keep_channels(network, index, int(match.group(2))), chip, budget
    if match := re.fullmatch(r"prune layer (\d+) to <= (\d+) non-zero inputs per neuron \(now \d+\)", fix):
        index, keep = int(match.group(1)), int(match.group(2))
        layer = network.layers[index]
        weight = layer.weight.copy()  # dense: keep the first `keep` inputs of every neuron
        weight[:, keep:] = 0
        return network.replace(index, dataclasses.replace(layer, weight=weight)), chip, budget
    if match := re.fullmatch(r"quantize (layer (\d+)|every layer) to <= (\d)-bit weights \(now \d\)", fix):
        indices = [int(match.group(2))] if match.group(2) else network.synaptic_indices()
        layers = list(network.layers)
        for index in indices:
            layers[index] = dataclasses.replace(layers[index], weight_bits=int(match.group(3)))
        return network.with_layers(layers), chip, budget
    return None


def _check_every_fix(network: Network, chip, **budget) -> int:
    """Apply each fix of each violation and re-run fit; the violation must be gone."""
    report = fit(network, chip, **budget)
    assert not report.ok
    applied = 0
    for violation in report.violations:
        for fix in re.split(r" or |; ", violation.fix):
            result = _apply(network, chip, budget, fix.strip())
            if result is None:
                continue
            fixed_net, fixed_chip, fixed_budget = result
            again = fit(fixed_net, fixed_chip, **fixed_budget)
            assert not any(v.limit == violation.limit and v.layer == violation.layer for v in again.violations), (
                violation.message, fix)
            applied += 1
    return applied


def test_core_budget_fixes_apply(loihi1):
    assert _check_every_fix(dense_net([full_weights(300, 1000)]), loihi1, max_cores=2) == 3


def test_chip_budget_fixes_apply(loihi1):
    net = Network([InputLayer(shape=(1, 64, 64)),
                   ConvLayer(weight=np.ones((64, 1, 3, 3), dtype=np.int32), neuron=NEURON)], name="big")
    assert _check_every_fix(net, loihi1) == 3  # more chips, loihi2, prune


def test_small_conv_net_fixes_apply(loihi1):
    # 13 cores (conv 1: 9 cores, neuron bound, so quantizing cannot help); 7 cores
    # allow conv 1 21 of its 64 channels (3 cores)
    report = fit(small_conv_net(channels=64), loihi1, max_cores=7)
    assert "prune layer 1 to <= 21 output channels (now 64)" in report.violations[0].fix
    assert _check_every_fix(small_conv_net(channels=64), loihi1, max_cores=7) == 2


def test_output_axon_fix_says_what_the_limit_counts_and_applies(tmp_path):
    # every neuron of layer 1 reaches the 5 cores of layer 2 (2 neurons each): 5 slots,
    # more than 3 even with one neuron per core
    chip = load_chip(chip_variant(tmp_path, max_neurons=2, max_out_axons=3))
    net = dense_net([full_weights(4, 4, 1, 3), full_weights(10, 4, 1, 3)])
    report = fit(net, chip)
    violation = next(v for v in report.violations if v.limit == "max_out_axons_per_core")
    assert violation.layer == 1
    assert "one neuron of layer 1 alone needs 5 output-axon slots: one per core of layer 2" in violation.fix
    assert "fit layer 2 in <= 3 cores: prune it to <= 6 output neurons (now 10)" in violation.fix
    assert _check_every_fix(net, chip) >= 1


def test_synapse_memory_fix_applies(tmp_path):
    chip = load_chip(chip_variant(tmp_path, max_synapse_bits=3000))
    net = dense_net([full_weights(4, 60)])  # 60 axons x 64 = 3840 bits > 3000 even with one neuron
    report = fit(net, chip)
    assert any(v.limit == "max_synapse_bits_per_core" for v in report.violations)
    assert _check_every_fix(net, chip) >= 1


@pytest.mark.slow
def test_pilotnet_fixes_apply(loihi1):
    import site
    from pathlib import Path

    from converters import netx

    path = next(Path(p) / PILOTNET for p in site.getsitepackages() if (Path(p) / PILOTNET).exists())
    assert _check_every_fix(netx.read(path), loihi1) >= 2


def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    weight = rng.integers(-8, 8, size=shape).astype(np.int32)
    weight[weight == 0] = 3
    return weight


def _new_kind_net(kind: str) -> Network:
    """A net with a wide layer of ``kind`` (or, for concat, a wide layer joined by a
    concat): its cores exceed small budgets and its channels can be cut."""
    rng = np.random.default_rng(1)
    head = [InputLayer(shape=(2, 6, 6), neuron=NEURON)]
    tail = [ConvLayer(weight=_weights(rng, 4, 48, 3, 3), stride=2, padding=1, neuron=NEURON), FlattenLayer(),
            DenseLayer(weight=_weights(rng, 5, 4 * 36), neuron=NEURON)]
    if kind == "convT":  # the transposed conv holds 48 channels: cut its axis 1, the conv after it its inputs
        body = [ConvLayer(weight=_weights(rng, 8, 2, 3, 3), padding=1, neuron=NEURON),
                ConvTransposeLayer(weight=_weights(rng, 8, 48, 2, 2), stride=2, neuron=NEURON)]
    elif kind == "unpool":  # the conv's 48 channels pass through the unpool to the conv after it
        body = [ConvLayer(weight=_weights(rng, 48, 2, 3, 3), padding=1, neuron=NEURON),
                UnpoolLayer(kernel=2, weight=40, neuron=NEURON)]
    else:  # layer 1's 32 channels reach layer 2 directly and the conv after the concat through it
        head = [InputLayer(shape=(2, 12, 12), neuron=NEURON)]
        body = [ConvLayer(weight=_weights(rng, 32, 2, 3, 3), padding=1, neuron=NEURON),
                ConvLayer(weight=_weights(rng, 8, 32, 3, 3), padding=1, neuron=NEURON), ConcatLayer(layers=(1,))]
        tail[0] = ConvLayer(weight=_weights(rng, 4, 40, 3, 3), stride=2, padding=1, neuron=NEURON)
    return Network(head + body + tail, name=kind)


@pytest.mark.parametrize("kind,budget,fix", [
    ("convT", 8, "prune layer 2 to <= 28 output channels (now 48)"),
    ("unpool", 5, "prune layer 1 to <= 7 output channels (now 48)"),
    ("concat", 8, "prune layer 1 to <= 21 output channels (now 32)"),
])
def test_channel_fixes_on_nets_with_new_kinds_apply(kind, budget, fix, loihi1, tmp_path):
    from converters import netx

    net = netx.read(netx.write(_new_kind_net(kind), tmp_path / f"{kind}.net"))
    assert kind in [layer.kind for layer in net]
    report = fit(net, loihi1, max_cores=budget)
    assert fix in report.violations[0].fix
    assert _check_every_fix(net, loihi1, max_cores=budget) == 2  # a higher budget, and the cut


def test_channel_fixes_on_a_recurrent_net_apply(loihi1):
    # cutting a recurrent layer's neurons cuts its recurrent matrix's rows and columns too
    rng = np.random.default_rng(0)
    net = Network([InputLayer(shape=(200,)),
                   RecurrentDenseLayer(weight=rng.integers(1, 9, (600, 200)), weight_rec=rng.integers(1, 9, (600, 600)),
                                       neuron=NEURON),
                   DenseLayer(weight=rng.integers(1, 9, (10, 600)), neuron=NEURON)], name="recurrent")
    report = fit(net, loihi1, max_cores=3)
    assert "prune layer 1 to <= 544 output neurons (now 600)" in report.violations[0].fix
    assert _check_every_fix(net, loihi1, max_cores=3) == 3  # a higher budget, the cut, 3-bit weights
