"""Channel importance criteria: one score per output channel (higher = keep).

Each criterion is a small callable ``criterion(network, activity) -> {layer: scores}``
over the prunable layers of a :class:`~neuroprune.prune.graph.DependencyGraph`:

- ``l1`` / ``l2``: norm of each output channel's weight mantissas,
- ``rate``: mean spike rate of the channel's neurons,
- ``membrane``: mean |membrane potential| of the channel (SCA's spiking channel activity),
- ``random``: seeded random scores (a control baseline).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from neuroprune.errors import PruneError
from neuroprune.ir import Network
from neuroprune.prune.graph import DependencyGraph
from neuroprune.snn.activity import Activity

__all__ = ["Criterion", "CRITERIA", "get_criterion", "weight_norm", "spike_rate", "membrane", "random_scores"]

Criterion = Callable[[Network, "Activity | None"], dict[int, np.ndarray]]


def _layers(network: Network) -> list[int]:
    return DependencyGraph(network).prunable()


def weight_norm(network: Network, activity: Activity | None = None, p: int = 1) -> dict[int, np.ndarray]:
    """L``p`` norm of each output channel's (masked) weights."""
    scores = {}
    for index in _layers(network):
        weight = network[index].effective_weight.astype(np.float64)
        flat = np.abs(weight.reshape(weight.shape[0], -1))
        scores[index] = flat.sum(axis=1) if p == 1 else np.sqrt((flat ** 2).sum(axis=1))
    return scores


def _need(activity: Activity | None, name: str) -> Activity:
    if activity is None:
        raise PruneError(f"importance criterion {name!r} needs recorded activity (run the model on data first)")
    return activity


def spike_rate(network: Network, activity: Activity | None) -> dict[int, np.ndarray]:
    """Mean spike rate (spikes per neuron per step) of each output channel."""
    activity = _need(activity, "rate")
    return {i: activity.channel_rates(i) for i in _layers(network)}


def membrane(network: Network, activity: Activity | None) -> dict[int, np.ndarray]:
    """Mean |membrane potential| of each output channel (needs ``voltage=True`` recording)."""
    activity = _need(activity, "membrane")
    missing = [i for i in _layers(network) if i not in activity.mean_abs_voltage]
    if missing:
        raise PruneError(f"criterion 'membrane' needs membrane potentials of layers {missing}; record with voltage=True")
    return {i: np.asarray(activity.mean_abs_voltage[i], dtype=np.float64) for i in _layers(network)}


def random_scores(network: Network, activity: Activity | None = None, seed: int = 0) -> dict[int, np.ndarray]:
    """Seeded random scores (same seed, same channels)."""
    rng = np.random.default_rng(seed)
    return {i: rng.random(network.shapes[i][0]) for i in _layers(network)}


CRITERIA: Mapping[str, Criterion] = {
    "l1": lambda net, act: weight_norm(net, act, p=1),
    "l2": lambda net, act: weight_norm(net, act, p=2),
    "rate": spike_rate,
    "membrane": membrane,
    "random": random_scores,
}


def get_criterion(name: str) -> Criterion:
    """The criterion called ``name``; a clear error lists the known ones."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise PruneError(f"unknown importance criterion {name!r}; choose one of {', '.join(CRITERIA)}") from None
