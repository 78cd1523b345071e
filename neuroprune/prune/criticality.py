"""Criticality-based regeneration: prune past the target, regrow the most critical units.

After Chen et al., "Brain-Inspired Efficient Pruning: Exploiting Criticality in Spiking
Neural Networks" (arXiv 2311.16141; code: MmPple/pruning-criticality).

**Criticality** of a neuron is the surrogate derivative of its spike function at its
membrane potential, averaged over samples and time steps; for the arctan surrogate

``crit = mean_{n,t} 1 / (1 + (pi (v - theta))^2)``   (v, theta in slayer voltage units),

so a neuron whose potential hovers at the threshold scores 1 and a silent or saturated
one scores near 0. A channel's criticality is the mean over its neurons (the reference
code takes the maximum over positions of the time-averaged value; we use the mean, as
:class:`~neuroprune.snn.activity.ActivityMonitor` records it). The scores are taken on
the dense network, on ``score_samples`` training inputs.

With a keep target of ``K`` units in a layer and regeneration ratio ``r`` (default 0.2):

1. **prune past the target**: keep only the ``K - g`` best units by the ordinary
   criterion, ``g = round(r K)``;
2. **regenerate**: of all units pruned in step 1, the ``g`` of highest criticality come
   back with their original weights, so exactly ``K`` units remain.

Two modes, as in the paper:

- **structured** (channels; the task's SynOps target or a channel keep ratio): the
  ordinary criterion is the channel's L1 weight norm (``criterion``; the paper ranks by
  |BN scale| after sparsity training — slayer blocks have no BN); ``K`` follows from a
  common keep ratio whose estimated SynOps fraction meets the target, lowered until the
  structure fits the hardware constraints; channels are removed for real, the net is
  fine-tuned and the measured SynOps checked (tightening re-runs both steps at smaller
  counts, see :func:`neuroprune.prune.delivery.deliver_selection`).
- **unstructured** (synapses; the task's sparsity, counted as the removed fraction of
  the dense net's non-zero synapses, with one ranking over all layers as the paper's
  code does — ``scope="layer"`` applies it to every layer instead; every layer keeps
  its largest weight): the ordinary criterion is |w|; a pruned synapse's regeneration
  score is the criticality of its *postsynaptic* unit (the paper's choice: its code
  broadcasts the channel criticality over the channel's synapses), ties broken by |w|
  (``synapse_score="criticality"``), or the product ``crit x |w|``
  (``"criticality_x_magnitude"``). The masks stay applied during the fine-tune. The
  paper prunes gradually during training and regrows at zero weight; here the cut is
  one-shot before a short fine-tune, so regrown synapses keep their trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from hw_models import resource_use
from neuroprune.errors import PruneError
from neuroprune.options import fraction, open_fraction, option
from neuroprune.prune.base import (Measurer, PruneResult, PruneTask, check_feasible, finetune, finetune_seed, fits,
                                   prunable, require_cuba, synops_inputs)
from neuroprune.prune.importance import get_criterion
from neuroprune.prune.delivery import counts_estimate, deliver_selection
from neuroprune.prune.estimate import SynOpsModel, keep_ratio_for_task, mean_layer_rates
from neuroprune.prune.masks import MaskSet
from neuroprune.prune.sca import clone_model
from neuroprune.prune.structured import keep_count
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import Activity, record_activity

__all__ = [
    "CriticalityConfig",
    "criticality",
    "criticality_scores",
    "regeneration_count",
    "prune_and_regenerate",
    "synapse_scores",
    "synapse_masks",
    "network_synapse_masks",
    "SCOPES",
    "MODES",
    "SYNAPSE_SCORES",
]

MODES = ("auto", "structured", "unstructured")
SYNAPSE_SCORES = ("criticality", "criticality_x_magnitude")
SCOPES = ("global", "layer")


@dataclass(frozen=True)
class CriticalityConfig:
    """Criticality-based regeneration hyper-parameters.

    Attributes
    ----------
    mode : "structured" (channels), "unstructured" (synapses) or "auto" (structured with
        a SynOps target or ``keep_ratio``, unstructured with a sparsity).
    regrow_ratio : r, the share of the kept units first pruned and then regenerated.
    criterion : channel ranking of the pruning step (structured; see
        :mod:`neuroprune.prune.importance`).
    synapse_score : regeneration score of a pruned synapse (unstructured).
    scope : "global" (one ranking over all layers, as the paper; the sparsity holds for
        the whole net) or "layer" (every layer at the sparsity) (unstructured).
    keep_ratio : channel keep ratio when the task has no SynOps target (structured).
    score_samples : training inputs on which criticality is recorded.
    a_min : smallest keep ratio the SynOps target may ask for.
    max_tighten : extra deliveries when the measured SynOps overshoot the target.
    """

    mode: str = "auto"
    regrow_ratio: float = field(default=0.2, metadata=option(
        "--regrow-ratio", "share of the kept units pruned past the target and regrown", fraction))
    criterion: str = field(default="l1", metadata=option("--criterion", "channel importance: l1, l2, rate, membrane, random"))
    synapse_score: str = "criticality"
    scope: str = "global"
    keep_ratio: float | None = field(default=None, metadata=option(
        "--keep-ratio", "channel keep ratio when no SynOps target is given", open_fraction))
    score_samples: int = 256
    a_min: float = 0.05
    max_tighten: int = 6

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PruneError(f"criticality mode {self.mode!r} unknown; choose one of {', '.join(MODES)}")
        if not 0.0 <= self.regrow_ratio < 1.0:
            raise PruneError(f"regrow ratio {self.regrow_ratio} must be in [0, 1) (the paper uses 0.2)")
        if self.synapse_score not in SYNAPSE_SCORES:
            raise PruneError(f"synapse score {self.synapse_score!r} unknown; choose one of {', '.join(SYNAPSE_SCORES)}")
        if self.scope not in SCOPES:
            raise PruneError(f"synapse scope {self.scope!r} unknown; choose one of {', '.join(SCOPES)}")
        if self.keep_ratio is not None and not 0.0 < self.keep_ratio <= 1.0:
            raise PruneError(f"keep ratio {self.keep_ratio} must be in (0, 1]")
        if self.score_samples < 1:
            raise PruneError(f"score_samples {self.score_samples} must be >= 1")


# ----------------------------------------------------------------------------- scores
def criticality_scores(voltage: torch.Tensor, threshold: float) -> torch.Tensor:
    """Criticality per channel (axis 1) of membrane potentials ``voltage`` ``(N, C, ..., T)``:
    ``mean 1 / (1 + (pi (v - theta))^2)`` over every other axis; in (0, 1], 1 at threshold."""
    dims = tuple(d for d in range(voltage.ndim) if d != 1)
    return (1.0 / (1.0 + (torch.pi * (voltage - threshold)) ** 2)).mean(dim=dims)


def regeneration_count(keep: int, ratio: float) -> int:
    """Units pruned past the target and regenerated: ``g = round(ratio * keep)``, at most
    ``keep - 1`` (the pruning step keeps at least one unit)."""
    return max(0, min(keep - 1, int(round(ratio * keep))))


def _order(primary: np.ndarray, secondary: np.ndarray | None = None) -> np.ndarray:
    """Indices by ``primary`` descending, then ``secondary`` descending, then index."""
    keys = [np.arange(len(primary))]
    if secondary is not None:
        keys.insert(0, -np.asarray(secondary, dtype=np.float64))
    keys.insert(0, -np.asarray(primary, dtype=np.float64))
    return np.lexsort(keys[::-1])


def prune_and_regenerate(importance: np.ndarray, criticality: np.ndarray, keep: int,
                         ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channels of one layer to keep: the ``keep - g`` most important, plus the ``g``
    most critical of the rest (``g`` = :func:`regeneration_count`).

    Returns ``(kept, pruned_past, regenerated)`` as sorted index arrays; ``pruned_past``
    are the channels cut in the first step (regenerated ones included).
    """
    importance = np.asarray(importance, dtype=np.float64)
    criticality = np.asarray(criticality, dtype=np.float64)
    channels = importance.shape[0]
    if criticality.shape != importance.shape:
        raise PruneError(f"{criticality.shape[0]} criticality scores for {channels} channels")
    if not 1 <= keep <= channels:
        raise PruneError(f"cannot keep {keep} of {channels} channels")
    grow = regeneration_count(keep, ratio)
    by_importance = _order(importance)
    base, rest = by_importance[:keep - grow], by_importance[keep - grow:]
    regenerated = rest[_order(criticality[rest], importance[rest])[:grow]]
    return np.sort(np.concatenate([base, regenerated])), np.sort(rest), np.sort(regenerated)


def synapse_scores(weight: torch.Tensor, criticality: torch.Tensor | np.ndarray, score: str = "criticality"
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Regeneration score of every synapse of a layer (weight ``(out, in, ...)``) from
    the criticality of its postsynaptic channel: ``(primary, tie_break)``.

    ``"criticality"``: ``crit[out]``, ties broken by |w|; ``"criticality_x_magnitude"``:
    ``crit[out] * |w|``.
    """
    crit = torch.as_tensor(np.asarray(criticality), dtype=torch.float64)
    if crit.shape != (weight.shape[0],):
        raise PruneError(f"{crit.numel()} criticality scores for {weight.shape[0]} output channels")
    magnitude = weight.detach().abs().to(torch.float64)
    broadcast = crit.reshape(-1, *([1] * (weight.ndim - 1))).expand_as(magnitude)
    if score == "criticality":
        return broadcast, magnitude
    if score == "criticality_x_magnitude":
        return broadcast * magnitude, None
    raise PruneError(f"synapse score {score!r} unknown; choose one of {', '.join(SYNAPSE_SCORES)}")


def synapse_masks(weight: torch.Tensor, criticality: torch.Tensor | np.ndarray, keep: int, ratio: float,
                  score: str = "criticality") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synapse mask of one layer keeping ``keep`` synapses: the ``keep - g`` largest |w|,
    plus the ``g`` pruned synapses of highest regeneration score (:func:`synapse_scores`).

    Returns ``(mask, pruned_past, regenerated)``, boolean tensors shaped like ``weight``.
    """
    return network_synapse_masks({0: weight}, {0: criticality}, keep, ratio, score)[0]


def network_synapse_masks(weights: Mapping[int, torch.Tensor], criticality: Mapping[int, torch.Tensor | np.ndarray],
                          keep: int, ratio: float, score: str = "criticality"
                          ) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`synapse_masks` with one ranking over the synapses of all ``weights``
    (the paper's global scope): ``keep`` synapses in total, the largest |w| of every
    layer always among them (no layer is cut off). Weights share slayer's scale, and
    criticality is in (0, 1] everywhere, so both compare across layers.

    Returns ``{layer: (mask, pruned_past, regenerated)}``.
    """
    layers = list(weights)
    sizes = [weights[i].numel() for i in layers]
    offsets = np.cumsum([0, *sizes])
    total = int(offsets[-1])
    if not len(layers) <= keep <= total:
        raise PruneError(f"cannot keep {keep} of {total} synapses in {len(layers)} layer(s); "
                         "keep at least one per layer")
    magnitude = np.concatenate([weights[i].detach().abs().flatten().to(torch.float64).numpy() for i in layers])
    scores = [synapse_scores(weights[i], criticality[i], score) for i in layers]
    primary = np.concatenate([p.flatten().numpy() for p, _ in scores])
    tie = None if scores[0][1] is None else np.concatenate([t.flatten().numpy() for _, t in scores])
    grow = min(regeneration_count(keep, ratio), keep - len(layers))
    forced = np.array([offsets[k] + int(np.argmax(magnitude[offsets[k]:offsets[k + 1]])) for k in range(len(layers))])
    by_magnitude = _order(magnitude)
    by_magnitude = by_magnitude[~np.isin(by_magnitude, forced)]
    free = keep - grow - len(forced)
    base = np.concatenate([forced, by_magnitude[:free]])
    rest = by_magnitude[free:]
    chosen = rest[_order(primary[rest], None if tie is None else tie[rest])[:grow]]

    def as_masks(indices: np.ndarray) -> list[torch.Tensor]:
        flat = torch.zeros(total, dtype=torch.bool)
        flat[torch.as_tensor(indices, dtype=torch.long)] = True
        return [flat[offsets[k]:offsets[k + 1]].reshape(weights[i].shape) for k, i in enumerate(layers)]

    kept, past, regenerated = as_masks(np.concatenate([base, chosen])), as_masks(rest), as_masks(chosen)
    return {i: (kept[k], past[k], regenerated[k]) for k, i in enumerate(layers)}


# ----------------------------------------------------------------------------- helpers
def _score_activity(model: snn_model.SNN, task: PruneTask, samples: int) -> Activity:
    """Criticality (and |v|) of every neuron layer on the first ``samples`` training inputs."""
    from neuroprune.snn.encoders import get_encoder

    x = torch.as_tensor(task.dataset.x_train[:samples])
    encoded = get_encoder(task.train.encoder)(x, task.train.steps,
                                              generator=torch.Generator().manual_seed(task.seed + 3))
    was_training = model.training
    try:
        return record_activity(model, encoded, voltage=True)
    finally:
        model.train(was_training)


def _nonzero(network: Any) -> int:
    """Non-zero synapses (weight mantissas) of an IR network."""
    return sum(int(np.count_nonzero(layer.effective_weight)) for layer in network.layers
               if hasattr(layer, "effective_weight"))


def _mode(task: PruneTask, config: CriticalityConfig) -> str:
    if config.mode != "auto":
        mode = config.mode
    elif task.synops_target is not None and task.sparsity is not None:
        raise PruneError("criticality: give a SynOps target (structured) or a sparsity (unstructured), not both")
    else:
        mode = "unstructured" if task.sparsity is not None else "structured"
    if mode == "unstructured" and task.sparsity is None:
        raise PruneError("unstructured criticality pruning needs a sparsity (e.g. --sparsity 0.75)")
    if mode == "structured" and task.synops_target is None and config.keep_ratio is None:
        raise PruneError("structured criticality pruning needs a SynOps target (--synops-target) or a --keep-ratio")
    return mode


# ----------------------------------------------------------------------------- entry point
def criticality(model: snn_model.SNN, task: PruneTask, config: CriticalityConfig = CriticalityConfig(), *,
                progress: bool = True) -> PruneResult:
    """Prune ``model`` by criticality-based regeneration: structured to
    ``task.synops_target`` (or ``config.keep_ratio``), unstructured to ``task.sparsity``.
    ``model`` is left unchanged."""
    from neuroprune.progress import task_progress

    require_cuba(model, "criticality", "it scores units by how close their membrane potential comes to the "
                 "firing threshold, which sigma-delta neurons do not have")
    mode = _mode(task, config)
    check_feasible(model, task)
    with task_progress(progress) as bar:
        if mode == "structured":
            return _structured(model, task, config, bar.log)
        return _unstructured(model, task, config, bar.log)


def _structured(model: snn_model.SNN, task: PruneTask, config: CriticalityConfig, log: Any) -> PruneResult:
    network, graph, layers = prunable(model)
    dense = Measurer(task.dataset, task.train, "val", task.eval_samples).measure(model)
    ratio = keep_ratio_for_task(network, graph, layers, dense.layer_synops, task, config.keep_ratio, config.a_min,
                                mean_layer_rates(dense.activity.rates))
    counts = {i: keep_count(graph.channels(i), ratio) for i in layers}
    scored = _score_activity(model, task, config.score_samples)
    importance = get_criterion(config.criterion)(network, scored)
    crit = {i: np.asarray(scored.criticality[i], dtype=np.float64) for i in layers}
    history: list[dict[str, Any]] = []

    def select(current: dict[int, int]) -> dict[int, np.ndarray]:
        keep: dict[int, np.ndarray] = {}
        record: dict[str, Any] = {"counts": {str(i): int(c) for i, c in current.items()}, "pruned_past": {},
                                  "regenerated": {}}
        for i, count in current.items():
            kept, past, regenerated = prune_and_regenerate(importance[i], crit[i], count, config.regrow_ratio)
            keep[i] = kept
            record["pruned_past"][str(i)] = past.tolist()
            record["regenerated"][str(i)] = regenerated.tolist()
        history.append(record)
        return keep

    log(f"criticality (structured): keep ratio {ratio:.3f} on layers {layers} (counts {counts}), "
        f"regeneration ratio {config.regrow_ratio}")
    dense_synops = Measurer(synops_inputs(task.dataset), task.train, "val").measure(model).synops
    estimate = counts_estimate(SynOpsModel(network, graph, dense.layer_synops), graph)
    delivered, tries = deliver_selection(model, task, counts, select, dense_synops=dense_synops, estimate=estimate,
                                         max_tighten=config.max_tighten, log=log)
    ok, cores = fits(delivered, task)
    info = {"mode": "structured", "keep_ratio": ratio, "counts": {str(i): c for i, c in counts.items()},
            "criticality": {str(i): c.tolist() for i, c in crit.items()}, "dense_val_accuracy": dense.accuracy,
            "delivery": tries, "fits": ok, "cores": cores, "synops_ratio": tries[-1]["synops_ratio"]}
    return PruneResult(model=delivered, method="criticality", history=history, info=info)


def _unstructured(model: snn_model.SNN, task: PruneTask, config: CriticalityConfig, log: Any) -> PruneResult:
    sparsity = float(task.sparsity)  # checked by _mode
    work = clone_model(model)
    scored = _score_activity(work, task, config.score_samples)
    dense_ir = snn_model.to_ir(work)
    weights = {i: b.synapse.weight.detach() for i, b in work.synaptic_blocks().items()}
    # sparsity = removed fraction of the dense net's non-zero synapses (as the summary counts it)
    nonzero = {i: int(np.count_nonzero(dense_ir[i].effective_weight)) for i in weights}
    if config.scope == "global":
        keep = max(len(weights), int(np.floor((1.0 - sparsity) * sum(nonzero.values()))))
        selected = network_synapse_masks(weights, scored.criticality, keep, config.regrow_ratio, config.synapse_score)
    else:
        selected = {i: synapse_masks(w, scored.criticality[i], max(1, int(np.floor((1.0 - sparsity) * nonzero[i]))),
                                     config.regrow_ratio, config.synapse_score) for i, w in weights.items()}
    masks = {i: mask for i, (mask, _, _) in selected.items()}
    history = [{"layer": i, "nonzero_dense": nonzero[i], "kept": int(mask.sum()), "pruned_past": int(past.sum()),
                "regenerated": int(regenerated.sum())} for i, (mask, past, regenerated) in selected.items()]
    mask_set = MaskSet(masks)
    mask_set.apply(work)
    if task.constraints is not None:
        use = resource_use(snn_model.to_ir(work), task.constraints, mean_layer_rates(scored.rates))
        if not use.ok:
            broken = [name for name, ok in use.within.items() if not ok]
            raise PruneError(
                f"at sparsity {sparsity:.3f} the net still needs {use.cores} cores "
                f"(budget {task.constraints.max_cores}; "
                f"broken: {', '.join(broken)}); synapse pruning keeps every neuron, so prune channels with "
                "--synops-target or raise --max-cores"
            )
    kept, dense_nonzero = sum(h["kept"] for h in history), sum(h["nonzero_dense"] for h in history)
    log(f"criticality (unstructured): keeping {kept} of {dense_nonzero} non-zero synapses "
        f"(sparsity {1 - kept / dense_nonzero:.3f}), {sum(h['regenerated'] for h in history)} of them regenerated; "
        f"fine-tuning {task.finetune_steps} steps")
    finetune(work, task, task.finetune_steps, seed=finetune_seed(task.seed),
             on_step=lambda net, step: mask_set.apply(net))
    nonzero = _nonzero(snn_model.to_ir(work))
    ok, cores = fits(work, task)
    info = {"mode": "unstructured", "sparsity_target": sparsity, "mask_sparsity": mask_set.sparsity(),
            "sparsity": 1.0 - nonzero / dense_nonzero if dense_nonzero else 0.0, "layer_sparsity":
            {str(i): s for i, s in mask_set.layer_sparsity().items()}, "fits": ok, "cores": cores}
    return PruneResult(model=work, method="criticality", history=history, info=info)
