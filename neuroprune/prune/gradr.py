"""Grad R: pruning by gradient rewiring (Chen et al., IJCAI 2021).

Every synapse gets a hidden strength ``theta`` and a fixed sign ``s`` (the sign of its
trained weight; +1 for a weight that is exactly zero), and

.. math:: w = s \\cdot \\mathrm{ReLU}(\\theta)

so a synapse is pruned while ``theta <= 0``. The gradient reaches ``theta`` as if the
ReLU were the identity, ``dL/dtheta = s * dL/dw`` (evaluated at the pruned weight 0), so
a pruned synapse whose gradient keeps pushing it up **regrows** once ``theta`` crosses
0. A Laplacian prior ``p(theta) ~ exp(-alpha |theta - mu|)`` pulls every strength
towards ``mu``; after each optimizer step

.. math:: \\theta \\leftarrow \\theta - \\eta_t \\, \\alpha \\, \\mathrm{sign}(\\theta - \\mu)

with ``eta_t`` the optimizer's learning rate at that step (the reference code applies
the prior with Adam's step size, outside Adam's normalisation). ``mu`` is the prior
centre whose probability mass below 0 is the target sparsity ``S``:

.. math:: \\mu = \\ln(2(1 - S)) / \\alpha \\;\\; (S \\ge 1/2), \\qquad
          \\mu = -\\ln(2 S) / \\alpha \\;\\; (S < 1/2).

``alpha`` is in 1 / weight units (slayer's, where the chip mantissa is ``64 w``): the
prior moves a strength by ``eta * alpha`` weight units per step, so a larger ``alpha``
prunes faster and further. Over a short run every strength above ``mu`` just drifts
down by ``alpha * sum_t eta_t``; the default (``alpha=None``) calibrates ``alpha`` so
that this drift equals the target quantile of the trained magnitudes,

.. math:: \\alpha = q_S(|w|) / \\sum_t \\eta_t ,

i.e. the prior alone would prune the fraction ``S`` by the end of the run; synapses
the loss needs resist (or regrow), the others go.

How it runs on slayer blocks: the optimizer of :func:`neuroprune.snn.train.train`
keeps updating ``synapse.weight`` (so Adam, schedules, ``to_ir`` and export are
untouched); after each step :class:`GradRewiring` moves ``theta`` by exactly the step
the optimizer made, ``theta += s * (w_new - w_written)`` (equal to an Adam step on
``theta`` with gradient ``s * dL/dw``, since Adam acts elementwise and is odd in the
gradient), applies the prior and writes ``w = s * ReLU(theta)`` back.

Landing on the requested sparsity: the prior alone reaches a sparsity that depends on
``alpha`` and the run length (``natural_sparsity`` in the result). With ``land`` (the
default) a final magnitude step keeps exactly the ``(1 - S) N`` synapses of largest
``theta`` over all layers (each layer keeps at least ``min_layer_keep`` of its
synapses), and a masked fine-tune of ``task.finetune_steps`` recovers accuracy. Kept
weights that the 8-bit quantizer rounds to 0 make the delivered net slightly sparser
than asked, never denser.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroprune.errors import PruneError
from neuroprune.options import nonnegative_int, option, positive_float
from neuroprune.prune.base import Measurer, PruneResult, PruneTask, check_feasible, finetune, finetune_seed, fits
from neuroprune.prune.masks import MaskSet
from neuroprune.snn import model as snn_model
from neuroprune.snn.train import TrainConfig, fine_tune

__all__ = ["GradRConfig", "GradRewiring", "gradr", "prior_center", "calibrated_alpha", "chip_sparsity"]


@dataclass(frozen=True)
class GradRConfig:
    """Grad R hyper-parameters.

    Attributes
    ----------
    alpha : prior strength (1 / weight units); the sparsity the rewiring reaches grows
        with it. None: calibrated to the target (see the module docstring).
    steps : optimizer steps of the rewiring phase.
    lr : peak learning rate of the rewiring phase (default: the training lr of the task).
    land : finish with a magnitude step to exactly the target sparsity and a masked
        fine-tune (``task.finetune_steps``); off: deliver what the prior reached.
    min_layer_keep : fraction of each layer's synapses the landing step always keeps.
    log_every : steps between history records.
    """

    alpha: float | None = field(default=None, metadata=option(
        "--alpha", "prior strength, larger prunes more (default: calibrated to the target)", positive_float))
    steps: int = field(default=150, metadata=option("--gradr-steps", "rewiring steps before the landing",
                                                    nonnegative_int))
    lr: float | None = None
    land: bool = True
    min_layer_keep: float = 0.02
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.alpha is not None and not self.alpha > 0:
            raise PruneError(f"Grad R prior strength alpha = {self.alpha} must be > 0")
        if self.steps < 0:
            raise PruneError(f"Grad R steps = {self.steps} must be >= 0")
        if self.lr is not None and not self.lr > 0:
            raise PruneError(f"Grad R lr = {self.lr} must be > 0")
        if not 0.0 <= self.min_layer_keep < 1.0:
            raise PruneError(f"Grad R min_layer_keep = {self.min_layer_keep} must be in [0, 1)")


def prior_center(sparsity: float, alpha: float) -> float:
    """Centre ``mu`` (weight units) of the Laplace prior with scale ``1/alpha`` whose mass
    below 0 is ``sparsity`` (see the module docstring)."""
    if not 0.0 < sparsity < 1.0:
        raise PruneError(f"Grad R target sparsity {sparsity} must be in (0, 1)")
    if sparsity >= 0.5:
        return math.log(2.0 * (1.0 - sparsity)) / alpha
    return -math.log(2.0 * sparsity) / alpha


def chip_sparsity(model: snn_model.SNN) -> float:
    """Fraction of synapses whose chip mantissa is 0 (after slayer's 8-bit quantizer)."""
    total = zeros = 0
    with torch.no_grad():
        for block in model.synaptic_blocks().values():
            mantissa = torch.round(block.synapse.pre_hook_fx(block.synapse.weight, descale=True))
            total += mantissa.numel()
            zeros += int((mantissa == 0).sum())
    return zeros / total if total else 0.0


def _lr_at(step: int, lr: float, planned: int, schedule: str) -> float:
    """Learning rate the optimizer used at ``step`` (0-based) of ``planned`` steps."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(planned, 1)))
    return lr


def calibrated_alpha(model: snn_model.SNN, sparsity: float, lr: float, steps: int, schedule: str) -> float:
    """``alpha = q_S(|w|) / sum_t eta_t``: the prior's drift over the run reaches the
    ``sparsity`` quantile of the model's weight magnitudes (weight units)."""
    magnitudes = torch.cat([b.synapse.weight.detach().abs().flatten() for b in model.synaptic_blocks().values()])
    quantile = float(torch.quantile(magnitudes.double(), sparsity))
    drift = sum(_lr_at(t, lr, steps, schedule) for t in range(steps))
    if drift <= 0 or quantile <= 0:
        raise PruneError(f"cannot calibrate Grad R's alpha (drift {drift:g}, weight quantile {quantile:g}); "
                         "give --alpha and --gradr-steps > 0")
    return quantile / drift


class GradRewiring:
    """Hidden strengths ``theta`` and fixed signs of a model's synaptic layers.

    Create it on a model (``theta = |w|``, ``s = sign(w)``), pass :meth:`on_step` to
    :func:`neuroprune.snn.train.train` / ``fine_tune`` with the same ``lr``,
    ``planned`` steps and ``schedule``; the model's weights then always equal
    ``s * ReLU(theta)``.
    """

    def __init__(self, model: snn_model.SNN, alpha: float, mu: float, lr: float, planned: int,
                 schedule: str = "cosine") -> None:
        self.alpha, self.mu, self.lr, self.planned, self.schedule = alpha, mu, lr, planned, schedule
        self.sign: dict[int, torch.Tensor] = {}
        self.theta: dict[int, torch.Tensor] = {}
        self.written: dict[int, torch.Tensor] = {}
        self.crossings_up = 0  # times a theta crossed from <= 0 to > 0, over the run
        self.crossings_down = 0  # times a theta crossed from > 0 to <= 0, over the run
        self.ever_pruned: dict[int, torch.Tensor] = {}  # theta <= 0 at some step
        with torch.no_grad():
            for index, block in model.synaptic_blocks().items():
                weight = block.synapse.weight.detach()
                self.sign[index] = torch.where(weight < 0, -1.0, 1.0).to(weight.dtype)
                self.theta[index] = weight.abs().clone()
                self.written[index] = weight.clone()
                self.ever_pruned[index] = self.theta[index] <= 0

    def on_step(self, model: snn_model.SNN, step: int) -> None:
        """Move ``theta`` by the optimizer's step, apply the prior, write the weights."""
        eta = _lr_at(step, self.lr, self.planned, self.schedule)
        blocks = model.synaptic_blocks()
        with torch.no_grad():
            for index, theta in self.theta.items():
                weight = blocks[index].synapse.weight
                sign = self.sign[index]
                before = theta > 0
                theta.add_(sign * (weight - self.written[index]))  # the optimizer's step, on theta
                theta.sub_(eta * self.alpha * torch.sign(theta - self.mu))  # Laplace prior
                after = theta > 0
                self.crossings_up += int((after & ~before).sum())
                self.crossings_down += int((before & ~after).sum())
                self.ever_pruned[index] |= ~after
                new = sign * torch.relu(theta)
                weight.copy_(new)
                self.written[index] = new.clone()

    def regrown(self, model: snn_model.SNN) -> int:
        """Synapses that were pruned (``theta <= 0``) at some step and now carry a
        non-zero chip weight (jitter of ``theta`` around 0 does not count)."""
        count = 0
        with torch.no_grad():
            for index, block in model.synaptic_blocks().items():
                mantissa = torch.round(block.synapse.pre_hook_fx(block.synapse.weight, descale=True))
                count += int((self.ever_pruned[index] & (mantissa != 0)).sum())
        return count

    def hidden_sparsity(self) -> float:
        """Fraction of synapses with ``theta <= 0``."""
        total = sum(t.numel() for t in self.theta.values())
        return sum(int((t <= 0).sum()) for t in self.theta.values()) / total if total else 0.0

    def landing_masks(self, sparsity: float, min_layer_keep: float = 0.0) -> MaskSet:
        """Keep exactly ``round((1 - sparsity) N)`` synapses, those of largest ``theta``
        over all layers, with at least ``min_layer_keep`` of every layer kept."""
        total = sum(t.numel() for t in self.theta.values())
        keep_total = int(round((1.0 - sparsity) * total))
        masks = {i: torch.zeros_like(t, dtype=torch.bool) for i, t in self.theta.items()}
        reserved = 0
        for index, theta in self.theta.items():  # the per-layer floor first
            floor = min(theta.numel(), int(math.ceil(min_layer_keep * theta.numel())))
            if floor:
                order = torch.argsort(theta.flatten(), descending=True, stable=True)
                masks[index].view(-1)[order[:floor]] = True
                reserved += floor
        rest = max(keep_total - reserved, 0)
        if rest:
            indices = list(self.theta)
            flat = torch.cat([self.theta[i].flatten() for i in indices])
            taken = torch.cat([masks[i].flatten() for i in indices])
            flat = torch.where(taken, torch.full_like(flat, -math.inf), flat)
            order = torch.argsort(flat, descending=True, stable=True)[:rest]
            chosen = torch.zeros_like(taken)
            chosen[order] = True
            offset = 0
            for index in indices:
                size = masks[index].numel()
                masks[index] |= chosen[offset:offset + size].view_as(masks[index])
                offset += size
        return MaskSet(masks)


def gradr(model: snn_model.SNN, task: PruneTask, config: GradRConfig = GradRConfig(), *,
          progress: bool = True) -> PruneResult:
    """Prune ``model`` (a copy) to ``task.sparsity`` with gradient rewiring.

    Rewiring phase: ``config.steps`` optimizer steps of the task's recipe (peak lr
    ``config.lr``) with the Grad R update; then, with ``config.land``, a magnitude step
    on ``theta`` to exactly the target and a masked fine-tune. Returns the pruned model;
    ``info`` holds the natural sparsity the prior reached, the delivered sparsity,
    regrowth counts, validation accuracy and SynOps ratio, and whether it fits.
    """
    import copy

    from neuroprune.progress import task_progress

    if task.sparsity is None or task.sparsity <= 0.0:
        raise PruneError("Grad R needs a target sparsity in (0, 1); pass --sparsity, e.g. 0.75")
    check_feasible(model, task)
    started = time.perf_counter()
    pruned = copy.deepcopy(model)
    lr = config.lr if config.lr is not None else task.train.lr
    alpha = config.alpha
    if alpha is None:
        alpha = calibrated_alpha(model, task.sparsity, lr, config.steps, task.train.schedule) if config.steps else 1.0
    mu = prior_center(task.sparsity, alpha)
    rewiring = GradRewiring(pruned, alpha, mu, lr, config.steps, task.train.schedule)
    history: list[dict[str, Any]] = []

    def on_step(net: snn_model.SNN, step: int) -> None:
        rewiring.on_step(net, step)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            history.append({"phase": "rewire", "step": step + 1, "hidden_sparsity": rewiring.hidden_sparsity(),
                            "sparsity": chip_sparsity(net), "regrown": rewiring.regrown(net),
                            "crossings_up": rewiring.crossings_up, "crossings_down": rewiring.crossings_down})

    with task_progress(progress) as bar:
        bar.log(f"Grad R: alpha {alpha:g}, mu {mu:.4f}, {config.steps} rewiring steps at lr {lr:g}")
        if config.steps:
            recipe: TrainConfig = dataclasses.replace(task.train, seed=task.seed + 104729)
            fine_tune(pruned, task.dataset, config.steps, recipe, on_step=on_step, lr=lr)
        natural = chip_sparsity(pruned)
        info: dict[str, Any] = {"alpha": alpha, "alpha_calibrated": config.alpha is None, "mu": mu,
                                "rewire_steps": config.steps, "rewire_lr": lr,
                                "natural_sparsity": natural, "hidden_sparsity": rewiring.hidden_sparsity(),
                                "regrown": rewiring.regrown(pruned), "crossings_up": rewiring.crossings_up,
                                "crossings_down": rewiring.crossings_down}
        bar.log(f"Grad R: prior reached sparsity {natural:.3f} ({info['regrown']} synapses regrown)")
        if config.land:
            masks = rewiring.landing_masks(task.sparsity, config.min_layer_keep)
            masks.apply(pruned)
            finetune(pruned, task, task.finetune_steps, seed=finetune_seed(task.seed),
                     on_step=lambda net, step: masks.apply(net))
            info["mask_sparsity"] = masks.sparsity()
            info["layer_sparsity"] = masks.layer_sparsity()
    info["sparsity"] = chip_sparsity(pruned)
    measurer = Measurer(task.dataset, task.train, "val", task.eval_samples)
    dense, after = measurer.measure(model), measurer.measure(pruned)
    ok, cores = fits(pruned, task, after.activity)
    info.update({"val_accuracy_dense": dense.accuracy, "val_accuracy": after.accuracy,
                 "val_synops_ratio": after.synops / dense.synops if dense.synops else 0.0,
                 "fits": ok, "cores": cores, "seconds": time.perf_counter() - started})
    return PruneResult(model=pruned, method="gradr", history=history, info=info)
