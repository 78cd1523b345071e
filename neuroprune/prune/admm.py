"""ADMM pruning and weight quantization with activity regularisation (Deng et al. 2020).

Training solves ``min L(W) s.t. W in C`` (``C``: at most ``(1 - S) N`` non-zero weights
per layer and/or weights on a k-bit grid) with the alternating direction method of
multipliers. Per synaptic layer, with ``W`` the weights (slayer weight units), ``Z``
the projected copy and ``U`` the scaled dual variable:

.. math::

    \\min_W \\; L(W) + \\frac{\\rho}{2} \\sum_l \\lVert W_l - Z_l + U_l \\rVert^2
          + \\lambda \\, \\bar n_{spikes}

    Z \\leftarrow \\Pi_C(W + U), \\qquad U \\leftarrow U + W - Z
    \\qquad \\text{(every ``update_every`` optimizer steps)}

- ``Pi_C`` keeps the ``(1 - S) N`` largest magnitudes over all layers
  (``scope="global"``, the default) or of every layer (``"layer"``), and puts the kept
  values on the chip grid of :mod:`neuroprune.prune.quantize` (``alpha * q``; fitted
  scale ``alpha = V^T Q / Q^T Q`` snapped to a power of two, kept entries never round
  to 0). Global is the default because the same fraction in every layer starves small
  first layers: on digits (``c16,c32s2,f``, 144 weights in the first conv) 90 % per
  layer gave 81 % test accuracy, one global threshold 95 %;
- ``rho`` (loss units per squared weight unit) grows by ``rho_growth`` at every
  Z/U update, up to ``rho_max``, so ``W`` is drawn ever closer to ``C``;
- activity regularisation: ``n_spikes`` is the spike count per sample summed over all
  neurons and time steps of the synaptic layers (hidden and output), computed from the
  forward outputs so it is differentiable; ``lambda`` is the loss per spike per sample.

Then the **hard projection** ``W = Pi_C(W)`` fixes each layer's mask and scale, and a
fine-tune of ``task.finetune_steps`` keeps both: the optimizer updates latent weights,
the forward pass sees their projection (straight-through, on the slayer synapse's
``pre_hook_fx``), and after every step the latent weights are masked and clipped to
the grid's range (``on_step``). At the end the projection is written into the
weights, so the saved model, ``to_ir`` and the netx export hold exactly the grid: each
layer at most ``2^B`` distinct mantissas and at most ``B`` weight bits on the chip.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from hw_models.cost import required_weight_bits
from neuroprune.errors import PruneError
from neuroprune.options import int_in, nonnegative_float, nonnegative_int, option, positive_float, positive_int
from neuroprune.prune.base import Measurer, PruneResult, PruneTask, check_feasible, finetune_seed, fits
from neuroprune.prune.masks import MaskSet
from neuroprune.prune.quantize import QuantSpec, quantize_tensor
from neuroprune.snn import model as snn_model
from neuroprune.snn.train import fine_tune

__all__ = ["AdmmConfig", "AdmmState", "SpikeCounter", "GridProjection", "admm"]

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class AdmmConfig:
    """ADMM hyper-parameters.

    Attributes
    ----------
    rho : initial penalty weight (loss units per squared weight unit).
    rho_growth : factor applied to ``rho`` at every Z/U update (1: constant).
    rho_max : cap on ``rho``.
    steps : optimizer steps of the ADMM phase.
    update_every : optimizer steps between Z/U updates (``N``).
    lr : peak learning rate of the ADMM phase (default: the task's training lr).
    weight_bits : quantize onto ``B``-bit two's-complement codes (None: no quantization).
    ternary : quantize onto {-alpha, 0, alpha} (2 weight bits).
    activity_reg : ``lambda``, loss per spike per sample (0: off).
    scope : ``"global"`` (one magnitude threshold over all layers) or ``"layer"`` (every
        layer pruned to the target).
    """

    rho: float = field(default=1e-2, metadata=option("--rho", "initial penalty rho", positive_float))
    rho_growth: float = 1.3
    rho_max: float = 1.0
    steps: int = field(default=150, metadata=option("--admm-steps", "steps before the hard projection",
                                                    nonnegative_int))
    update_every: int = field(default=15, metadata=option("--admm-update-every", "steps between Z/U updates",
                                                          positive_int))
    lr: float | None = None
    weight_bits: int | None = field(default=None, metadata=option(
        "--weight-bits", "quantize weights to B bits, 2..8 (e.g. 4)", int_in(2, 8)))
    ternary: bool = field(default=False, metadata=option("--ternary", "ternary weights {-a, 0, a}"))
    activity_reg: float = field(default=0.0, metadata=option(
        "--activity-reg", "loss per spike per sample (lambda, e.g. 1e-4)", nonnegative_float))
    scope: str = field(default="global", metadata=option(
        "--admm-scope", "one magnitude threshold over all layers (global) or per layer", choices=SCOPES))

    def __post_init__(self) -> None:
        if not self.rho > 0 or not self.rho_growth >= 1.0 or not self.rho_max >= self.rho:
            raise PruneError(f"ADMM needs rho > 0, rho_growth >= 1 and rho_max >= rho "
                             f"(got {self.rho}, {self.rho_growth}, {self.rho_max})")
        if self.steps < 0 or self.update_every < 1:
            raise PruneError(f"ADMM steps ({self.steps}) must be >= 0 and update_every ({self.update_every}) >= 1")
        if self.lr is not None and not self.lr > 0:
            raise PruneError(f"ADMM lr = {self.lr} must be > 0")
        if self.activity_reg < 0:
            raise PruneError(f"activity regularisation lambda = {self.activity_reg} must be >= 0")
        if self.scope not in SCOPES:
            raise PruneError(f"unknown ADMM scope {self.scope!r}; use one of {', '.join(SCOPES)}")
        if self.ternary and self.weight_bits not in (None, 2):
            raise PruneError(f"ternary weights take 2 bits, not --weight-bits {self.weight_bits}")

    @property
    def quant_spec(self) -> QuantSpec | None:
        if self.ternary:
            return QuantSpec(bits=2, ternary=True)
        return None if self.weight_bits is None else QuantSpec(bits=self.weight_bits)


# ----------------------------------------------------------------------------- pieces
class SpikeCounter:
    """Differentiable spike count of a model's synaptic layers (context manager).

    Forward hooks on the neurons of the conv/dense blocks keep their spike outputs
    while gradients are enabled; :meth:`take` returns the mean over the batch of the
    summed spikes (all neurons, all time steps) and forgets them.
    """

    def __init__(self, model: snn_model.SNN) -> None:
        self.model = model
        self._outputs: list[torch.Tensor] = []
        self._handles: list[Any] = []

    def _hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled():
            self._outputs.append(output[0] if isinstance(output, tuple) else output)

    def __enter__(self) -> "SpikeCounter":
        for block in self.model.synaptic_blocks().values():
            self._handles.append(block.neuron.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._outputs = [], []

    def take(self) -> torch.Tensor:
        """Spikes per sample of the last forward pass (a scalar tensor with gradient)."""
        if not self._outputs:
            raise PruneError("no spikes recorded: the activity regulariser saw no forward pass")
        if getattr(self.model, "neuron_kind", "cuba") == "cuba":
            total = sum(out.sum() / out.shape[0] for out in self._outputs)
        else:  # graded messages (sigma-delta): their magnitude, whatever their sign
            total = sum(out.abs().sum() / out.shape[0] for out in self._outputs)
        self._outputs = []
        return total


def project(weights: dict[int, torch.Tensor], sparsity: float | None, spec: QuantSpec | None,
            scope: str = "global") -> tuple[dict[int, torch.Tensor], MaskSet | None, dict[int, Any]]:
    """``Pi_C``: keep the largest magnitudes (``sparsity``), then put the kept values on
    ``spec``'s chip grid. Returns the projected tensors, the masks (None without
    pruning) and each layer's :class:`~neuroprune.prune.quantize.Quantized` (when quantizing)."""
    masks: MaskSet | None = None
    if sparsity:
        masks = _magnitude(weights, sparsity, scope)
    projected: dict[int, torch.Tensor] = {}
    grids: dict[int, Any] = {}
    for index, weight in weights.items():
        mask = None if masks is None else masks.masks[index]
        if spec is not None:
            grids[index] = quantize_tensor(weight, spec, mask)
            projected[index] = grids[index].values
        else:
            projected[index] = weight * mask.to(weight.dtype) if mask is not None else weight.clone()
    return projected, masks, grids


def _magnitude(weights: dict[int, torch.Tensor], sparsity: float, scope: str) -> MaskSet:
    """Masks keeping the largest magnitudes: ``sparsity`` of each layer dropped
    (``scope="layer"``) or one threshold over all layers (``"global"``); stable order on ties."""
    masks: dict[int, torch.Tensor] = {}
    if scope == "global":
        magnitudes = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        drop = int(round(sparsity * magnitudes.numel()))
        order = torch.argsort(magnitudes, stable=True)
        keep = torch.ones_like(magnitudes, dtype=torch.bool)
        keep[order[:drop]] = False
        offset = 0
        for index, weight in weights.items():
            masks[index] = keep[offset:offset + weight.numel()].view_as(weight)
            offset += weight.numel()
        return MaskSet(masks)
    for index, weight in weights.items():
        drop = int(round(sparsity * weight.numel()))
        mask = torch.ones_like(weight, dtype=torch.bool)
        mask.view(-1)[torch.argsort(weight.detach().abs().flatten(), stable=True)[:drop]] = False
        masks[index] = mask
    return MaskSet(masks)


class AdmmState:
    """``Z`` and ``U`` of every synaptic layer, and the penalty ``rho/2 ||W - Z + U||^2``."""

    def __init__(self, model: snn_model.SNN, sparsity: float | None, spec: QuantSpec | None,
                 config: AdmmConfig) -> None:
        self.sparsity, self.spec, self.config = sparsity, spec, config
        self.rho = config.rho
        weights = self._weights(model)
        self.z, _, _ = project(weights, sparsity, spec, config.scope)
        self.u = {i: torch.zeros_like(w) for i, w in weights.items()}
        self.updates = 0

    @staticmethod
    def _weights(model: snn_model.SNN) -> dict[int, torch.Tensor]:
        return {i: b.synapse.weight.detach().clone() for i, b in model.synaptic_blocks().items()}

    def penalty(self, model: snn_model.SNN) -> torch.Tensor:
        """``rho/2 * sum_l ||W_l - Z_l + U_l||^2`` (differentiable in ``W``)."""
        blocks = model.synaptic_blocks()
        total = sum(((blocks[i].synapse.weight - self.z[i] + self.u[i]) ** 2).sum() for i in self.z)
        return 0.5 * self.rho * total

    def update(self, model: snn_model.SNN) -> dict[str, float]:
        """``Z = Pi(W + U)``, ``U += W - Z``, ``rho *= growth``; returns the residuals
        ``||W - Z||`` (primal) and ``rho ||Z - Z_old||`` (dual)."""
        weights = self._weights(model)
        z_old = self.z
        self.z, _, _ = project({i: weights[i] + self.u[i] for i in weights}, self.sparsity, self.spec,
                               self.config.scope)
        primal = dual = 0.0
        for index, weight in weights.items():
            self.u[index] += weight - self.z[index]
            primal += float(((weight - self.z[index]) ** 2).sum())
            dual += float(((self.z[index] - z_old[index]) ** 2).sum())
        self.updates += 1
        record = {"rho": self.rho, "primal_residual": primal ** 0.5, "dual_residual": self.rho * dual ** 0.5}
        self.rho = min(self.rho * self.config.rho_growth, self.config.rho_max)
        return record


class GridProjection:
    """Fixed masks and grid scales, applied in the forward pass during the final fine-tune.

    Installs a straight-through projection in front of each synapse's slayer quantizer
    (``pre_hook_fx``): the forward sees ``P(w) = mask * scale * codes(w / scale)``, the
    gradient passes to the latent ``w`` unchanged. :meth:`clip` (for ``on_step``) masks
    the latent weights and keeps them within half a grid step of the grid's range;
    :meth:`write` puts ``P(w)`` into the weights and removes the hooks.
    """

    def __init__(self, model: snn_model.SNN, masks: MaskSet | None, spec: QuantSpec | None,
                 scales: dict[int, float]) -> None:
        self.model, self.masks, self.spec, self.scales = model, masks, spec, scales
        self._originals: dict[int, Callable] = {}

    def projected(self, index: int, weight: torch.Tensor) -> torch.Tensor:
        mask = None if self.masks is None else self.masks.masks[index]
        if self.spec is None:
            return weight if mask is None else weight * mask.to(weight.dtype)
        scale = self.scales[index]
        low, high = self.spec.code_range
        codes = torch.clamp(torch.round(weight / scale), low, high)
        if mask is not None:
            sign = torch.where(weight < 0, -1.0, 1.0).to(weight.dtype)
            codes = torch.where(mask, torch.where(codes == 0, sign, codes), torch.zeros_like(codes))
        return scale * codes

    def _hook(self, index: int, original: Callable) -> Callable:
        def hook(weight: torch.Tensor, descale: bool = False) -> torch.Tensor:
            target = self.projected(index, weight.detach())
            return original(weight + (target - weight).detach(), descale=descale)
        return hook

    def __enter__(self) -> "GridProjection":
        for index, block in self.model.synaptic_blocks().items():
            original = block.synapse.pre_hook_fx
            self._originals[index] = original
            block.synapse.pre_hook_fx = self._hook(index, original)
        return self

    def __exit__(self, *exc: Any) -> None:
        blocks = self.model.synaptic_blocks()
        for index, original in self._originals.items():
            blocks[index].synapse.pre_hook_fx = original
        self._originals = {}

    def clip(self, model: snn_model.SNN, step: int) -> None:
        """``on_step``: zero the masked latent weights and clip the rest to the grid range."""
        with torch.no_grad():
            for index, block in model.synaptic_blocks().items():
                weight = block.synapse.weight
                if self.masks is not None:
                    weight.mul_(self.masks.masks[index].to(weight.dtype))
                if self.spec is not None:
                    low, high = self.spec.code_range
                    scale = self.scales[index]
                    weight.clamp_((low - 0.5) * scale, (high + 0.5) * scale)

    def write(self) -> None:
        """Replace the latent weights with their projection (call after the fine-tune)."""
        with torch.no_grad():
            for index, block in self.model.synaptic_blocks().items():
                weight = block.synapse.weight
                weight.copy_(self.projected(index, weight.detach()))


# ----------------------------------------------------------------------------- method
def _layer_report(model: snn_model.SNN) -> dict[int, dict[str, Any]]:
    network = snn_model.to_ir(model)
    report = {}
    for index in model.synaptic_blocks():
        weight = network[index].weight
        report[index] = {"weight_bits": required_weight_bits(weight), "distinct": int(np.unique(weight).size),
                         "sparsity": 1.0 - np.count_nonzero(weight) / weight.size}
    return report


def admm(model: snn_model.SNN, task: PruneTask, config: AdmmConfig = AdmmConfig(), *,
         progress: bool = True) -> PruneResult:
    """Prune (``task.sparsity``) and/or quantize (``config.weight_bits`` / ``ternary``) a
    copy of ``model`` with ADMM and activity regularisation, then hard-project and
    fine-tune with masks and grid kept (see the module docstring).

    ``info`` holds per-layer weight bits, distinct mantissas, sparsity and grid scales
    (fitted and chip), the validation accuracy and SynOps ratio, and whether it fits.
    """
    from neuroprune.progress import task_progress

    spec = config.quant_spec
    sparsity = task.sparsity or None
    if sparsity is None and spec is None:
        raise PruneError("ADMM needs a target: pass --sparsity (e.g. 0.75) and/or --weight-bits (e.g. 4)")
    check_feasible(model, task)
    started = time.perf_counter()
    pruned = copy.deepcopy(model)
    lr = config.lr if config.lr is not None else task.train.lr
    state = AdmmState(pruned, sparsity, spec, config)
    history: list[dict[str, Any]] = []
    lam = config.activity_reg

    counter = SpikeCounter(pruned) if lam else contextlib.nullcontext()
    with counter as spikes, task_progress(progress) as bar:
        def extra_loss(net: snn_model.SNN, output: torch.Tensor) -> torch.Tensor:
            loss = state.penalty(net)
            return loss + lam * spikes.take() if lam else loss

        def on_step(net: snn_model.SNN, step: int) -> None:
            if (step + 1) % config.update_every == 0:
                history.append({"phase": "admm", "step": step + 1, **state.update(net)})

        def activity_only(net: snn_model.SNN, output: torch.Tensor) -> torch.Tensor:
            return lam * spikes.take()

        bar.log(f"ADMM: {config.steps} steps, rho {config.rho:g} (x{config.rho_growth:g} every "
                f"{config.update_every}), sparsity {sparsity}, bits {spec.bits if spec else None}, lambda {lam:g}")
        if config.steps:
            recipe = dataclasses.replace(task.train, seed=task.seed + 104729)
            fine_tune(pruned, task.dataset, config.steps, recipe, on_step=on_step, extra_loss=extra_loss, lr=lr)
        # hard projection: masks and grid scales fixed from W itself
        weights = {i: b.synapse.weight.detach().clone() for i, b in pruned.synaptic_blocks().items()}
        projected, masks, grids = project(weights, sparsity, spec, config.scope)
        with torch.no_grad():
            for index, block in pruned.synaptic_blocks().items():
                block.synapse.weight.copy_(projected[index])
        scales = {i: g.scale for i, g in grids.items()}
        grid = GridProjection(pruned, masks, spec, scales)
        if task.finetune_steps:
            bar.log(f"ADMM: hard projection, fine-tune {task.finetune_steps} steps with masks and grid kept")
            with grid:
                recipe = dataclasses.replace(task.train, seed=finetune_seed(task.seed))
                fine_tune(pruned, task.dataset, task.finetune_steps, recipe, on_step=grid.clip,
                          extra_loss=activity_only if lam else None, lr=task.lr)
        grid.write()

    layers = _layer_report(pruned)
    for index, grid_info in grids.items():
        layers[index].update({"scale": grid_info.scale, "fitted_scale": grid_info.fitted_scale,
                              "exponent": grid_info.exponent})
    total = sum(b.synapse.weight.numel() for b in pruned.synaptic_blocks().values())
    zeros = sum(layers[i]["sparsity"] * pruned.synaptic_blocks()[i].synapse.weight.numel() for i in layers)
    measurer = Measurer(task.dataset, task.train, "val", task.eval_samples)
    dense, after = measurer.measure(model), measurer.measure(pruned)
    ok, cores = fits(pruned, task, after.activity)
    info: dict[str, Any] = {
        "rho": config.rho, "rho_final": state.rho, "admm_steps": config.steps, "update_every": config.update_every,
        "weight_bits": spec.bits if spec else None, "ternary": config.ternary, "activity_reg": lam,
        "scope": config.scope, "sparsity": zeros / total if total else 0.0,
        "layers": {str(i): v for i, v in layers.items()},
        "val_accuracy_dense": dense.accuracy, "val_accuracy": after.accuracy,
        "val_synops_ratio": after.synops / dense.synops if dense.synops else 0.0,
        "fits": ok, "cores": cores, "seconds": time.perf_counter() - started,
    }
    return PruneResult(model=pruned, method="admm", history=history, info=info)
