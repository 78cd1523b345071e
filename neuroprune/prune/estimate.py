"""SynOps of a pruned structure, estimated from the dense net's per-layer SynOps, and
the common keep ratios that meet a SynOps target or a hardware budget.

Removing output channels of a layer removes their spikes (SynOps of the next synaptic
layer) and their incoming synapses (SynOps of the layer itself), so for keep fractions
``k`` the SynOps of synaptic layer ``j`` scale as ``S_j * k_pre(j) * k_j``
(:class:`SynOpsModel`). Firing rates move when channels go and during fine-tuning, so
methods check the estimate by measurement (:mod:`neuroprune.prune.delivery`).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from hw_models import Constraints, resource_use
from neuroprune.errors import PruneError
from neuroprune.ir import Network
from neuroprune.prune.base import PruneTask
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.structured import keep_by_ratio, prune_network

__all__ = ["SynOpsModel", "uniform_ratio_for", "mean_layer_rates", "target_keep_ratio", "keep_ratio_for_task",
           "measured_synops", "calibrate_scale"]


class SynOpsModel:
    """Analytic SynOps of a pruned structure from the dense per-layer SynOps:
    ``sum_j S_j * k_pre(j) * k_j / S_total`` (fraction of the dense SynOps)."""

    def __init__(self, network: Network, graph: DependencyGraph, layer_synops: dict[int, float]) -> None:
        prunable = set(graph.prunable())
        root: dict[int, int | None] = {}
        producer: int | None = None
        self.terms: list[tuple[float, int | None, int | None]] = []
        for index, layer in enumerate(network.layers):
            if not layer.synaptic:
                continue
            passthrough = producer is not None and graph.graph.has_edge(producer, index) \
                and graph.graph.edges[producer, index]["passthrough"]
            root[index] = index if index in prunable else (root.get(producer) if passthrough else None)
            pre = root.get(producer) if producer is not None else None
            self.terms.append((float(layer_synops.get(index, 0.0)), pre, root[index]))
            producer = index
        self.total = sum(t[0] for t in self.terms) or 1.0

    def ratio(self, keep: dict[int, float]) -> float:
        """Estimated SynOps fraction for keep ratios ``keep`` (missing layers keep all)."""
        value = 0.0
        for synops, pre, own in self.terms:
            value += synops * (keep.get(pre, 1.0) if pre is not None else 1.0) * \
                (keep.get(own, 1.0) if own is not None else 1.0)
        return value / self.total

    def layer_share(self, index: int) -> float:
        """Fraction of dense SynOps that involve layer ``index``'s channels."""
        return sum(s for s, pre, own in self.terms if index in (pre, own)) / self.total


def uniform_ratio_for(synops_model: SynOpsModel, layers: list[int], target: float, a_min: float) -> float:
    """Largest common keep ratio whose estimated SynOps fraction is at most ``target``."""
    return largest_passing(lambda r: synops_model.ratio({i: r for i in layers}) <= target, a_min, 1.0, 40)


def mean_layer_rates(activity_rates: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Mean spike rate (spikes per neuron per step) of every layer."""
    return {i: float(np.mean(r)) for i, r in activity_rates.items()}


def target_keep_ratio(network: Network, graph: DependencyGraph, layers: list[int], ratio: float,
                      constraints: Constraints | None, rates: Mapping[int, float] | None = None) -> float:
    """Largest common keep ratio ``<= ratio`` whose pruned structure fits ``constraints``
    (bisection; :func:`check_feasible` guarantees one channel per layer fits)."""
    if constraints is None:
        return ratio

    def ok(r: float) -> bool:
        candidate = prune_network(network, keep_by_ratio(graph, {i: r for i in layers}), graph)
        activity = None if rates is None else {i: rates.get(i, 0.1) for i in [0, *candidate.synaptic_indices()]}
        return resource_use(candidate, constraints, activity).ok

    return largest_passing(ok, 1e-6, ratio, 24)


def keep_ratio_for_task(network: Network, graph: DependencyGraph, layers: list[int], layer_synops: dict[int, float],
                        task: PruneTask, keep_ratio: float | None, a_min: float, rates: Mapping[int, float]) -> float:
    """Common keep ratio of the prunable ``layers``: the largest whose estimated SynOps
    fraction meets ``task.synops_target`` (else ``keep_ratio``), lowered until the
    structure fits ``task.constraints``."""
    if task.synops_target is not None:
        ratio = uniform_ratio_for(SynOpsModel(network, graph, layer_synops), layers, task.synops_target, a_min)
    elif keep_ratio is not None:
        ratio = keep_ratio
    else:
        raise PruneError("this method needs a SynOps target or a channel keep ratio (--synops-target or --keep-ratio)")
    return target_keep_ratio(network, graph, layers, ratio, task.constraints, rates)


def measured_synops(model, task: PruneTask, graph: DependencyGraph,  # type: ignore[no-untyped-def]
                    importance: Mapping[int, np.ndarray]) -> Callable[[dict[int, float]], float]:
    """``measure(ratios)``: SynOps fraction of the dense ``model`` measured on the inputs
    the delivery is checked on (the first ``task.calibration_samples`` of them), after
    keeping the most important ``ratios`` of each layer's channels (no fine-tuning)."""
    from neuroprune.prune.base import Measurer, synops_inputs
    from neuroprune.prune.structured import prune_model

    check = Measurer(synops_inputs(task.dataset), task.train, "val", task.calibration_samples)
    dense = check.measure(model).synops or 1.0

    def measure(ratios: dict[int, float]) -> float:
        pruned = prune_model(model, keep_by_ratio(graph, ratios, dict(importance)), graph)
        return check.measure(pruned).synops / dense

    return measure


def calibrate_scale(measure: Callable[[dict[int, float]], float], shape: Mapping[int, float], target: float,
                    low: float, high: float, iterations: int = 8,
                    accept: Callable[[dict[int, float]], bool] | None = None) -> float:
    """Largest scale ``s`` in ``[low, high]`` whose keep ratios ``min(1, shape_i * s)`` have
    measured SynOps (``measure``) at most ``target`` and pass ``accept`` (e.g. a hardware
    budget); bisection, ``low`` when nothing larger passes. SynOps grow with ``s``."""
    def ok(scale: float) -> bool:
        ratios = {i: min(1.0, r * scale) for i, r in shape.items()}
        return (accept is None or accept(ratios)) and measure(ratios) <= target

    return largest_passing(ok, low, high, iterations)


def largest_passing(ok: Callable[[float], bool], low: float, high: float, iterations: int) -> float:
    """Bisection for the largest value in ``[low, high]`` passing ``ok`` (monotone: passes
    below a threshold, fails above): ``high`` if it passes, else the last passing
    midpoint, else ``low``."""
    if ok(high):
        return high
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        if ok(mid):
            low = mid
        else:
            high = mid
    return low
