"""Unstructured masks: single synapses pruned (and possibly regrown) in place.

A :class:`MaskSet` maps IR layer indices to boolean masks shaped like the layer's
slayer weight tensor. Methods that prune synapses (Grad R, ADMM, criticality in
unstructured mode, magnitude pruning) keep one and call :meth:`MaskSet.apply` after each
optimizer step. Exported networks then carry zero weights, which the cost model counts
as sparse synapse memory and fewer SynOps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from neuroprune.errors import PruneError

__all__ = ["MaskSet", "magnitude_masks"]


@dataclass
class MaskSet:
    """Boolean masks (True = synapse kept) keyed by IR layer index."""

    masks: dict[int, torch.Tensor]

    @classmethod
    def full(cls, model: torch.nn.Module) -> "MaskSet":
        return cls({i: torch.ones_like(b.synapse.weight, dtype=torch.bool) for i, b in model.synaptic_blocks().items()})

    def apply(self, model: torch.nn.Module) -> None:
        """Zero the masked weights of ``model`` in place."""
        blocks = model.synaptic_blocks()
        with torch.no_grad():
            for index, mask in self.masks.items():
                if index not in blocks:
                    raise PruneError(f"mask for layer {index}, which is not a synaptic layer of the model")
                weight = blocks[index].synapse.weight
                if weight.shape != mask.shape:
                    raise PruneError(f"layer {index}: mask shape {tuple(mask.shape)} differs from weight {tuple(weight.shape)}")
                weight.mul_(mask.to(weight.dtype))

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self.masks.values()))

    def sparsity(self) -> float:
        """Fraction of masked-out synapses over all masked layers."""
        total = self.total()
        return 1.0 - self.kept() / total if total else 0.0

    def layer_sparsity(self) -> dict[int, float]:
        return {i: 1.0 - float(m.float().mean()) for i, m in self.masks.items()}


def magnitude_masks(model: torch.nn.Module, sparsity: float | Mapping[int, float], scope: str = "layer") -> MaskSet:
    """Masks keeping the largest-magnitude weights.

    ``sparsity`` is the fraction removed: one number for every synaptic layer (``scope``
    "layer": per layer; "global": one threshold over all layers) or a mapping per layer.
    """
    blocks = model.synaptic_blocks()
    if isinstance(sparsity, Mapping):
        targets = {int(i): float(s) for i, s in sparsity.items()}
    else:
        targets = {i: float(sparsity) for i in blocks}
    for index, value in targets.items():
        if index not in blocks:
            raise PruneError(f"layer {index} is not a synaptic layer; synaptic layers: {sorted(blocks)}")
        if not 0.0 <= value < 1.0:
            raise PruneError(f"layer {index}: sparsity {value} must be in [0, 1)")
    masks: dict[int, torch.Tensor] = {}
    if scope == "global" and not isinstance(sparsity, Mapping):
        magnitudes = torch.cat([blocks[i].synapse.weight.detach().abs().flatten() for i in targets])
        drop = int(round(float(sparsity) * magnitudes.numel()))
        threshold = torch.kthvalue(magnitudes, drop).values if drop else torch.tensor(-1.0)
        for index in targets:
            masks[index] = blocks[index].synapse.weight.detach().abs() > threshold
        return MaskSet(masks)
    if scope not in ("layer", "global"):
        raise PruneError(f"unknown mask scope {scope!r}; use 'layer' or 'global'")
    for index, value in targets.items():
        weight = blocks[index].synapse.weight.detach().abs()
        drop = int(round(value * weight.numel()))
        mask = torch.ones_like(weight, dtype=torch.bool)
        if drop:
            order = torch.argsort(weight.flatten(), stable=True)
            mask.view(-1)[order[:drop]] = False
        masks[index] = mask
    return MaskSet(masks)
