"""Delivery: remove the chosen channels for real, fine-tune, measure, and tighten until
the measured SynOps meet the target. Every structured method ends here.

:func:`deliver_selection` takes kept channel counts and the method's own channel
choice; :func:`deliver` is the common case of keep ratios and an importance score.
SynOps are checked on the validation and test inputs together (they need no labels;
the reported numbers come from these inputs), against the dense net on the same inputs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from neuroprune.errors import PruneError
from neuroprune.prune.base import Measurer, PruneTask, finetune, finetune_seed, synops_inputs
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.structured import keep_count, prune_model
from neuroprune.snn import model as snn_model

__all__ = ["Selection", "shrink_counts", "deliver_selection", "counts_estimate", "deliver", "top_k_selection"]

Selection = Callable[[dict[int, int]], dict[int, np.ndarray]]


def shrink_counts(counts: dict[int, int], channels: dict[int, int], estimate: Callable[[dict[int, int]], float],
                  factor: float) -> dict[int, int]:
    """Smaller kept counts whose estimated SynOps are at most ``factor`` times those of
    ``counts``: one channel at a time leaves the layer with the largest kept fraction
    (keeping the allocation close to uniform; ties: the lower layer index). Stops when
    every layer is down to one channel."""
    goal = estimate(counts) * factor
    current = dict(counts)
    while estimate(current) > goal:
        shrinkable = [i for i in sorted(current) if current[i] > 1]
        if not shrinkable:
            break
        layer = max(shrinkable, key=lambda i: (current[i] / channels[i], -i))
        current[layer] -= 1
    return current


def deliver_selection(source: snn_model.SNN, task: PruneTask, counts: dict[int, int], select: Selection, *,
                      dense_synops: float, estimate: Callable[[dict[int, int]], float] | None = None,
                      max_tighten: int = 6, log: Callable[[str], None] | None = None,
                      ) -> tuple[snn_model.SNN, list[dict[str, Any]]]:
    """Remove channels for real, fine-tune, and shrink until the measured SynOps fit.

    ``select(counts)`` returns the channels to keep per layer for kept ``counts``
    (layers keeping all channels may be left out); the channels are cut from
    ``source`` with :func:`prune_model`, the result is fine-tuned for
    ``task.finetune_steps`` and measured on the validation and test inputs against
    ``dense_synops`` (SynOps per inference of the dense net on the same inputs). If
    the ratio exceeds ``task.synops_target`` the counts shrink and the delivery repeats
    from ``source``: with a SynOps ``estimate(counts)`` (fraction of dense) until the
    estimate falls by ``target / ratio * 0.99`` (:func:`shrink_counts`), else every
    count is scaled by ``sqrt(target / ratio) * 0.98`` (SynOps of a layer scale with its
    kept inputs times its kept outputs).
    """
    graph = DependencyGraph(snn_model.to_ir(source))
    check = Measurer(synops_inputs(task.dataset), task.train, "val")
    records: list[dict[str, Any]] = []
    current = dict(counts)
    for attempt in range(max_tighten + 1):
        keep = {i: np.asarray(k) for i, k in select(current).items() if len(k) < graph.channels(i)}
        pruned = prune_model(source, keep, graph)
        finetune(pruned, task, task.finetune_steps, seed=finetune_seed(task.seed, attempt))
        measured = check.measure(pruned)
        ratio = measured.synops / dense_synops if dense_synops else 0.0
        records.append({"attempt": attempt, "counts": {str(i): int(c) for i, c in current.items()},
                        "synops_ratio": ratio, "accuracy_val_test": measured.accuracy})
        if log is not None:
            log(f"deliver try {attempt}: counts {dict(current)} SynOps ratio {ratio:.3f}")
        if task.synops_target is None or ratio <= task.synops_target:
            return pruned, records
        if estimate is not None:
            shrunk = shrink_counts(current, {i: graph.channels(i) for i in current}, estimate,
                                   task.synops_target / ratio * 0.99)
        else:
            scale = math.sqrt(task.synops_target / ratio) * 0.98
            shrunk = {i: max(1, min(c - 1, int(math.floor(c * scale)))) if c > 1 else 1 for i, c in current.items()}
        if shrunk == current:
            break
        current = shrunk
    raise PruneError(
        f"could not bring SynOps under the target {task.synops_target:.3f} (reached {records[-1]['synops_ratio']:.3f} "
        f"after {len(records)} tries); give a looser --synops-target or more --finetune-steps"
    )


def counts_estimate(synops_model: Any, graph: DependencyGraph) -> Callable[[dict[int, int]], float]:
    """Estimated SynOps fraction of kept channel counts (a :class:`SynOpsModel` on keep fractions)."""
    return lambda counts: synops_model.ratio({i: c / graph.channels(i) for i, c in counts.items()})


def top_k_selection(importance: dict[int, np.ndarray]) -> Selection:
    """Keep the ``count`` most important channels of each layer (ties: lower index)."""
    def select(counts: dict[int, int]) -> dict[int, np.ndarray]:
        return {i: np.sort(np.argsort(-np.asarray(importance[i], dtype=np.float64), kind="stable")[:c])
                for i, c in counts.items()}
    return select


def deliver(model: snn_model.SNN, task: PruneTask, ratios: dict[int, float], importance: dict[int, np.ndarray],
            *, max_tighten: int = 6, log: Callable[[str], None] | None = None,
            ) -> tuple[snn_model.SNN, list[dict[str, Any]]]:
    """Keep the most important ``round(ratio * channels)`` channels of each layer, then
    :func:`deliver_selection` (tightening one channel at a time on the SynOps estimate)."""
    from neuroprune.prune.estimate import SynOpsModel

    network = snn_model.to_ir(model)
    graph = DependencyGraph(network)
    dense = Measurer(synops_inputs(task.dataset), task.train, "val").measure(model)
    counts = {i: keep_count(graph.channels(i), r) for i, r in ratios.items()}
    return deliver_selection(model, task, counts, top_k_selection(importance), dense_synops=dense.synops,
                             estimate=counts_estimate(SynOpsModel(network, graph, dense.layer_synops), graph),
                             max_tighten=max_tighten, log=log)
