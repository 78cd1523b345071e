"""PruneTask.calibration_samples: keep ratios are calibrated on the first N inputs."""

from __future__ import annotations

import pytest

from neuroprune.errors import PruneError
from neuroprune.prune.base import Measurer, PruneTask, prunable, synops_inputs
from neuroprune.prune.estimate import measured_synops
from neuroprune.prune.importance import weight_norm
from neuroprune.prune.structured import keep_by_ratio, prune_model


def test_measured_synops_uses_the_first_calibration_samples(trained_small) -> None:
    model, data, config = trained_small
    network, graph, layers = prunable(model)
    importance = weight_norm(network)
    ratios = {i: 0.5 for i in layers}
    inputs = synops_inputs(data)
    values = {}
    for n in (None, 7):
        measure = measured_synops(model, PruneTask(data, config, synops_target=0.5, calibration_samples=n), graph,
                                  importance)
        check = Measurer(inputs, config, "val", n)
        expected = check.measure(prune_model(model, keep_by_ratio(graph, ratios, importance), graph)).synops
        values[n] = measure(ratios)
        assert values[n] == pytest.approx(expected / check.measure(model).synops)
    assert values[None] != values[7]  # 7 inputs are not all of them
    with pytest.raises(PruneError, match="calibration_samples 0 must be >= 1"):
        PruneTask(data, config, calibration_samples=0)
