"""Fine-tune seeds of delivery attempts: distinct across run seeds and attempts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuroprune.errors import PruneError
from neuroprune.prune import delivery
from neuroprune.prune.base import PruneTask, finetune_seed
from neuroprune.prune.delivery import deliver_selection, top_k_selection
from neuroprune.prune.graph import DependencyGraph
from neuroprune.snn import model as snn_model

SEEDS = [*range(64), 1000, 2**31, 2**32 - 9000, 2**32 - 2]
ATTEMPTS = range(7)  # delivery's default max_tighten is 6: attempts 0..6


def test_attempt_zero_is_the_seed_every_earlier_result_used():
    for seed in SEEDS:
        assert finetune_seed(seed) == finetune_seed(seed, 0) == seed + 7919


def test_no_two_seed_attempt_pairs_share_a_fine_tune_seed():
    seeds = {(s, a): finetune_seed(s, a) for s, a in itertools.product(SEEDS, ATTEMPTS)}
    assert len(set(seeds.values())) == len(seeds)
    # the fine-tune also draws from seed + 1: different attempts never lie one apart either
    for (s, a), (t, b) in itertools.combinations(seeds, 2):
        if a != b:
            assert abs(seeds[(s, a)] - seeds[(t, b)]) > 1, ((s, a), (t, b))


def test_seeds_fit_torch_and_negative_inputs_are_refused():
    import torch

    torch.Generator().manual_seed(finetune_seed(2**32 - 2, max(ATTEMPTS)) + 1)
    with pytest.raises(ValueError, match="non-negative"):
        finetune_seed(-1)
    with pytest.raises(ValueError, match="non-negative"):
        finetune_seed(0, -1)


def test_delivery_fine_tunes_each_attempt_with_its_own_seed(trained_small, monkeypatch):
    model, data, config = trained_small
    task = PruneTask(dataset=data, train=config, synops_target=0.05, finetune_steps=1, seed=3)
    used = []
    real = delivery.finetune

    def recording(net, task_, steps, seed, on_step=None):
        used.append(seed)
        real(net, task_, steps, seed, on_step)

    monkeypatch.setattr(delivery, "finetune", recording)
    graph = DependencyGraph(snn_model.to_ir(model))
    rng = np.random.default_rng(0)
    importance = {i: rng.random(graph.channels(i)) for i in graph.prunable()}
    counts = {i: graph.channels(i) for i in graph.prunable()}
    # a dense count far below any net's makes every try miss the target: delivery tightens
    # until every layer keeps one channel, fine-tuning each try
    with pytest.raises(PruneError, match="could not bring SynOps under the target"):
        deliver_selection(model, task, counts, top_k_selection(importance), dense_synops=1e-9, max_tighten=4)
    assert len(used) >= 2
    assert used == [finetune_seed(3, a) for a in range(len(used))]
    assert used[1] != finetune_seed(4, 0)  # run seed 3's retry is not run seed 4's first try
