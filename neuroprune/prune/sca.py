"""SCA: spiking-channel-activity pruning with regrowth during training.

After "Towards Efficient Deep Spiking Neural Networks Construction with Spiking
Activity based Pruning" (arXiv 2406.01072). The net is (re)trained; every
``update_every`` optimizer steps, in each prunable layer:

1. **score** every live channel ``c`` by its spiking channel activity, the mean
   membrane potential magnitude over time steps, samples and positions,

   ``A_c = mean_{n,t,h,w} |v_{n,c,h,w}(t)|``   (slayer voltage units, threshold 1.25),

   recorded by :class:`~neuroprune.snn.activity.ActivityMonitor` on the training
   batches since the previous update;
2. **prune** the live channels of lowest ``A_c``: their weight rows are stored and set
   to zero, and kept at zero after every optimizer step (a silent channel, exactly
   equivalent to a removed one);
3. **regrow** the pruned channels whose "equivalent scale" has the largest gradient.
   slayer CUBA blocks have no BatchNorm, so the BN-scale gradient of the paper is
   replaced by the per-output-channel gradient norm of the weight,

   ``G_c = mean over the steps since the last update of || dL/dW_c ||_2``

   (``W_c`` the channel's weight row; a zeroed row still gets a gradient: the loss's
   error at the channel times its inputs). Regrown channels get their stored weights
   back. Channels pruned in this same update are not candidates (as in RigL).

The kept fraction per layer follows a cubic schedule from 1 to the final keep ratio
``k``: ``k_u = k + (1 - k) (1 - u/U)^3`` at update ``u`` of ``U`` (the last update is
at ``prune_until * train_steps``); the regrown count is ``round(f * n_u * (1 +
cos(pi u / U)) / 2)`` of the ``n_u`` live channels, so the last update regrows none.
``k`` is the common keep ratio whose estimated SynOps fraction
(:class:`~neuroprune.prune.estimate.SynOpsModel`) meets ``task.synops_target``, or a given
channel keep ratio, lowered until the structure fits the hardware constraints.

At the end the pruned channels are removed for real (:func:`prune_model`), the net is
fine-tuned, and its SynOps are measured; if they overshoot the target the kept counts
shrink by ``sqrt(target / measured) * 0.98`` (least active channels go first) and the
delivery repeats (:func:`neuroprune.prune.delivery.deliver_selection`).

What is not from the paper: layer allocation (a common keep ratio, as in uniform
pruning), the schedule shapes, and the gradient-norm stand-in for the BN scale.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from neuroprune.errors import PruneError
from neuroprune.options import open_fraction, option, positive_int
from neuroprune.prune.base import (
    Measurer,
    PruneResult,
    PruneTask,
    check_feasible,
    finetune,
    fits,
    prunable,
    require_cuba,
    synops_inputs,
)
from neuroprune.prune.delivery import counts_estimate, deliver_selection
from neuroprune.prune.estimate import SynOpsModel, keep_ratio_for_task, mean_layer_rates
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.structured import keep_count
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import ActivityMonitor

__all__ = [
    "SCAConfig",
    "sca",
    "channel_activity",
    "channel_grad_norm",
    "keep_ratio_schedule",
    "regrow_count",
    "sca_select",
    "ChannelMasks",
]


@dataclass(frozen=True)
class SCAConfig:
    """SCA hyper-parameters.

    Attributes
    ----------
    train_steps : optimizer steps of the prune-and-regrow training (at ``task.lr``).
    update_every : optimizer steps between two prune/regrow updates.
    prune_until : fraction of ``train_steps`` after which the structure stays fixed.
    regrow_fraction : regrown channels per update as a fraction of the live ones, at
        the first update (decays to 0 at the last, cosine).
    keep_ratio : channel keep ratio to end at when the task has no SynOps target.
    a_min : smallest keep ratio the SynOps target may ask for.
    max_tighten : extra deliveries when the measured SynOps overshoot the target.
    """

    train_steps: int = field(default=300, metadata=option("--sca-steps", "steps of pruning while training",
                                                          positive_int))
    update_every: int = field(default=25, metadata=option("--sca-update-every", "steps between prune/regrow updates",
                                                          positive_int))
    prune_until: float = 0.75
    regrow_fraction: float = 0.3
    keep_ratio: float | None = field(default=None, metadata=option(
        "--keep-ratio", "channel keep ratio when no SynOps target is given", open_fraction))
    a_min: float = 0.05
    max_tighten: int = 6

    def __post_init__(self) -> None:
        if self.train_steps < 1 or self.update_every < 1:
            raise PruneError(f"SCA needs train_steps >= 1 and update_every >= 1 (got {self.train_steps}, "
                             f"{self.update_every})")
        if not 0.0 < self.prune_until <= 1.0:
            raise PruneError(f"SCA prune_until {self.prune_until} must be in (0, 1]")
        if self.updates < 1:
            raise PruneError(
                f"SCA: {self.train_steps} steps x prune_until {self.prune_until} leave no update every "
                f"{self.update_every} steps; raise train_steps or lower update_every"
            )
        if not 0.0 <= self.regrow_fraction < 1.0:
            raise PruneError(f"SCA regrow_fraction {self.regrow_fraction} must be in [0, 1)")
        if self.keep_ratio is not None and not 0.0 < self.keep_ratio <= 1.0:
            raise PruneError(f"SCA keep_ratio {self.keep_ratio} must be in (0, 1]")
        if not 0.0 < self.a_min <= 1.0:
            raise PruneError(f"SCA a_min {self.a_min} must be in (0, 1]")

    @property
    def updates(self) -> int:
        """Number of prune/regrow updates ``U``."""
        return int(self.train_steps * self.prune_until) // self.update_every


# ----------------------------------------------------------------------------- scores
def channel_activity(voltage: torch.Tensor) -> torch.Tensor:
    """Spiking channel activity: mean |v| per channel (axis 1) over every other axis.

    ``voltage`` is ``(N, C, ..., T)`` in slayer voltage units; returns ``(C,)``.
    """
    dims = tuple(d for d in range(voltage.ndim) if d != 1)
    return voltage.abs().mean(dim=dims)


def channel_grad_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output channel's weight gradient: ``||dL/dW_c||_2`` over the
    row ``W_c`` (all axes but the first); returns ``(C,)``."""
    return grad.detach().reshape(grad.shape[0], -1).norm(dim=1)


def keep_ratio_schedule(update: int, updates: int, final: float) -> float:
    """Kept channel fraction after update ``update`` of ``updates``:
    ``k_u = final + (1 - final) * (1 - u / U)^3`` (1 before the first, ``final`` at the last)."""
    if not 0 <= update <= updates or updates < 1:
        raise PruneError(f"update {update} outside 0..{updates}")
    return final + (1.0 - final) * (1.0 - update / updates) ** 3


def regrow_count(live: int, fraction: float, update: int, updates: int) -> int:
    """Channels regrown at update ``u`` with ``live`` channels kept:
    ``round(fraction * live * (1 + cos(pi u / U)) / 2)``, at most ``live - 1``."""
    decay = 0.5 * (1.0 + math.cos(math.pi * update / updates))
    return max(0, min(live - 1, int(round(fraction * live * decay))))


def sca_select(live: np.ndarray, activity: np.ndarray, grad_norm: np.ndarray, count: int,
               regrow: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SCA update of one layer.

    ``live`` (bool per channel) is the current structure, ``activity`` the channel
    activity ``A_c`` and ``grad_norm`` the regrowth score ``G_c``. Afterwards ``count``
    channels are live: the ``count - r`` live channels of highest activity plus the
    ``r = min(regrow, #previously pruned)`` previously pruned channels of largest
    gradient norm. Ties go to the lower channel index.

    Returns ``(new_live, dropped, regrown)`` (bool mask, index arrays).
    """
    live = np.asarray(live, dtype=bool)
    channels = live.shape[0]
    if not 1 <= count <= channels:
        raise PruneError(f"SCA: cannot keep {count} of {channels} channels")
    activity = np.asarray(activity, dtype=np.float64)
    grad_norm = np.asarray(grad_norm, dtype=np.float64)
    live_idx = np.flatnonzero(live)
    dead_idx = np.flatnonzero(~live)
    regrow = min(max(regrow, 0), len(dead_idx), count - 1)
    from_live = min(count - regrow, len(live_idx))
    regrow = count - from_live  # not enough live channels: regrow more
    by_activity = live_idx[np.argsort(-activity[live_idx], kind="stable")]
    kept, dropped = by_activity[:from_live], np.sort(by_activity[from_live:])
    by_gradient = dead_idx[np.argsort(-grad_norm[dead_idx], kind="stable")]
    regrown = np.sort(by_gradient[:regrow])
    new_live = np.zeros(channels, dtype=bool)
    new_live[kept] = True
    new_live[regrown] = True
    return new_live, dropped, regrown


# ----------------------------------------------------------------------------- masks
class ChannelMasks:
    """Live/pruned output channels of a model's prunable layers, with the weight rows
    of pruned channels stored so that regrowth restores them."""

    def __init__(self, model: snn_model.SNN, layers: list[int]) -> None:
        blocks = model.synaptic_blocks()
        missing = [i for i in layers if i not in blocks]
        if missing:
            raise PruneError(f"layers {missing} are not synaptic layers of the model; synaptic: {sorted(blocks)}")
        self.live = {i: np.ones(blocks[i].synapse.weight.shape[0], dtype=bool) for i in layers}
        self.stored: dict[int, dict[int, torch.Tensor]] = {i: {} for i in layers}

    def prune(self, model: snn_model.SNN, layer: int, channels: np.ndarray | list[int]) -> None:
        """Store and zero the weight rows of ``channels`` of ``layer``."""
        weight = model.synaptic_blocks()[layer].synapse.weight
        with torch.no_grad():
            for c in (int(c) for c in channels):
                if not self.live[layer][c]:
                    raise PruneError(f"layer {layer}: channel {c} is already pruned")
                self.stored[layer][c] = weight[c].detach().clone()
                weight[c] = 0
                self.live[layer][c] = False

    def regrow(self, model: snn_model.SNN, layer: int, channels: np.ndarray | list[int]) -> None:
        """Give ``channels`` of ``layer`` their stored weight rows back and mark them live."""
        weight = model.synaptic_blocks()[layer].synapse.weight
        with torch.no_grad():
            for c in (int(c) for c in channels):
                if self.live[layer][c]:
                    raise PruneError(f"layer {layer}: channel {c} is live; only pruned channels regrow")
                weight[c] = self.stored[layer].pop(c)
                self.live[layer][c] = True

    def apply(self, model: snn_model.SNN) -> None:
        """Zero the weight rows of every pruned channel (call after each optimizer step)."""
        blocks = model.synaptic_blocks()
        with torch.no_grad():
            for layer, live in self.live.items():
                if not live.all():
                    blocks[layer].synapse.weight[torch.as_tensor(~live)] = 0

    def counts(self) -> dict[int, int]:
        return {layer: int(live.sum()) for layer, live in self.live.items()}

    def fractions(self) -> dict[int, float]:
        return {layer: float(live.mean()) for layer, live in self.live.items()}


def clone_model(model: snn_model.SNN) -> snn_model.SNN:
    """An independent copy of ``model`` (weights and structure)."""
    return copy.deepcopy(model)


# ----------------------------------------------------------------------------- training
class _Run:
    """State of one SCA training run: the channel masks, the regrowth gradients summed
    since the last update, the activity monitor and one history record per update."""

    def __init__(self, work: snn_model.SNN, graph: DependencyGraph, layers: list[int], config: SCAConfig,
                 final: float, estimate: Any, monitor: ActivityMonitor, log: Callable[[str], None]) -> None:
        self.graph, self.layers, self.config, self.final, self.estimate = graph, layers, config, final, estimate
        self.monitor, self.log = monitor, log
        self.blocks = work.synaptic_blocks()
        self.masks = ChannelMasks(work, layers)
        self.final_counts = {i: keep_count(graph.channels(i), final) for i in layers}
        self.grad_sum = {i: torch.zeros(graph.channels(i)) for i in layers}
        self.grad_steps = 0
        self.history: list[dict[str, Any]] = []
        self.activity: dict[int, np.ndarray] = {}  # channel activity of the latest window

    def on_step(self, net: torch.nn.Module, step: int) -> None:
        """After every optimizer step: add the gradient norms, update every
        ``update_every`` steps during the pruning phase, keep pruned rows at zero."""
        for i in self.layers:
            grad = self.blocks[i].synapse.weight.grad
            if grad is not None:
                self.grad_sum[i] += channel_grad_norm(grad)
        self.grad_steps += 1
        done = step + 1
        if done % self.config.update_every == 0 and done // self.config.update_every <= self.config.updates:
            self.update(net, done // self.config.update_every, done)
        self.masks.apply(net)

    def update(self, net: torch.nn.Module, update: int, step: int) -> None:
        """Prune by activity and regrow by gradient norm, to the scheduled keep ratio."""
        updates = self.config.updates
        activity = self.monitor.result().mean_abs_voltage
        self.monitor.reset()
        ratio = keep_ratio_schedule(update, updates, self.final)
        record: dict[str, Any] = {"update": update, "step": step, "keep_ratio": ratio, "dropped": {}, "regrown": {}}
        for i in self.layers:
            count = self.final_counts[i] if update == updates else keep_count(self.graph.channels(i), ratio)
            count = max(count, self.final_counts[i])
            regrow = regrow_count(count, self.config.regrow_fraction, update, updates)
            scores = (self.grad_sum[i] / max(self.grad_steps, 1)).numpy()
            _, dropped, regrown = sca_select(self.masks.live[i], activity[i], scores, count, regrow)
            self.masks.prune(net, i, dropped)
            self.masks.regrow(net, i, regrown)
            self.activity[i] = np.asarray(activity[i], dtype=np.float64)
            record["dropped"][str(i)] = dropped.tolist()
            record["regrown"][str(i)] = regrown.tolist()
            self.grad_sum[i].zero_()
        self.grad_steps = 0
        record["counts"] = {str(i): c for i, c in self.masks.counts().items()}
        record["synops_estimate"] = self.estimate.ratio(self.masks.fractions())
        self.history.append(record)
        self.log(f"SCA update {update}/{updates} at step {step}: keep {ratio:.3f}, regrown "
                 f"{sum(len(v) for v in record['regrown'].values())}, SynOps estimate {record['synops_estimate']:.3f}")

    def finish(self) -> None:
        """Rank the live channels by the activity of the frozen phase (used if delivery tightens)."""
        if self.monitor.samples:
            self.activity = {i: np.asarray(a, dtype=np.float64)
                             for i, a in self.monitor.result().mean_abs_voltage.items() if i in self.layers}

    def select(self, counts: dict[int, int]) -> dict[int, np.ndarray]:
        """The ``counts[i]`` most active live channels of every layer."""
        keep = {}
        for i, count in counts.items():
            live = np.flatnonzero(self.masks.live[i])
            keep[i] = np.sort(live[np.argsort(-self.activity[i][live], kind="stable")][:count])
        return keep


# ----------------------------------------------------------------------------- entry point
def sca(model: snn_model.SNN, task: PruneTask, config: SCAConfig = SCAConfig(), *,
        progress: bool = True) -> PruneResult:
    """Prune ``model`` with SCA to ``task.synops_target`` (fraction of the dense SynOps)
    or, without a target, to ``config.keep_ratio`` of the channels of every prunable
    layer. ``model`` is left unchanged."""
    from neuroprune.progress import task_progress

    require_cuba(model, "SCA", "it ranks channels by their membrane potential, which sigma-delta neurons do not have")
    if task.synops_target is None and task.sparsity is not None:
        raise PruneError("SCA prunes channels: give a SynOps target (--synops-target) or a --keep-ratio, "
                         "not --sparsity")
    check_feasible(model, task)
    network, graph, layers = prunable(model)
    dense = Measurer(task.dataset, task.train, "val", task.eval_samples).measure(model)
    final = keep_ratio_for_task(network, graph, layers, dense.layer_synops, task, config.keep_ratio, config.a_min,
                                mean_layer_rates(dense.activity.rates))
    work = clone_model(model)
    with task_progress(progress) as bar:
        with ActivityMonitor(work, voltage=True) as monitor:
            run = _Run(work, graph, layers, config, final, SynOpsModel(network, graph, dense.layer_synops), monitor,
                       bar.log)
            bar.log(f"SCA: final keep ratio {final:.3f} on layers {layers} (counts {run.final_counts}), "
                    f"{config.updates} updates every {config.update_every} steps")
            finetune(work, task, config.train_steps, seed=task.seed + 104729, on_step=run.on_step)
            run.finish()
        bar.log(f"SCA: trained {config.train_steps} steps; live channels {run.masks.counts()}")
        dense_synops = Measurer(synops_inputs(task.dataset), task.train, "val").measure(model).synops
        delivered, tries = deliver_selection(work, task, run.masks.counts(), run.select, dense_synops=dense_synops,
                                             estimate=counts_estimate(run.estimate, graph),
                                             max_tighten=config.max_tighten, log=bar.log)
    ok, cores = fits(delivered, task)
    info = {"final_keep_ratio": final, "counts": {str(i): c for i, c in run.final_counts.items()},
            "dense_val_accuracy": dense.accuracy, "delivery": tries, "fits": ok, "cores": cores,
            "synops_ratio": tries[-1]["synops_ratio"]}
    return PruneResult(model=delivered, method="sca", history=run.history, info=info)
