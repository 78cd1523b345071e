"""Weight quantization onto k-bit sets that Loihi's synapse memory holds exactly.

slayer's CUBA blocks already quantize weights to Loihi's 8-bit mantissa: a weight ``w``
(slayer units) is sent to the chip as the even integer ``m = 64 w`` in [-256, 254]
(step 2/64 in weight units). The chip stores a layer's mantissas with ``B`` weight bits
after moving their common trailing zero bits into the shared weight exponent
(:func:`hw_models.cost.required_weight_bits`). So a layer needs at most ``B`` bits when

.. math:: m = q \\cdot 2^e, \\qquad q \\in [-2^{B-1},\\, 2^{B-1} - 1] \\cap \\mathbb{Z},
          \\qquad e \\ge 1,

i.e. its weights lie on the grid ``w = alpha * q`` with the scale ``alpha = 2^e / 64``
a power of two (a layer then holds at most ``2^B`` distinct mantissas).

Quantizing a layer's weights ``V`` onto that grid (:func:`quantize_tensor`):

1. **Fitted scale** (Deng et al. 2020; ternary-weight style): alternate
   ``Q = clip(round(V / alpha))`` and ``alpha = V^T Q / Q^T Q`` (the least-squares scale
   for fixed codes) until the codes stop changing. This is the paper's scale; it is
   reported as ``fitted_scale``.
2. **Chip scale**: the chip holds only power-of-two scales, so every allowed
   ``alpha_e = 2^e / 64`` (``e`` from 1 while ``q * 2^e`` stays in [-256, 254]) is
   tried with its own rounded codes and the one with the least squared error
   ``||V - alpha_e Q_e||^2`` is kept (``scale``, ``exponent``).

With a pruning ``mask`` the pruned entries are 0 and every kept entry gets a non-zero
code (``|q| >= 1``, the sign of ``V``), so quantization never changes the sparsity the
mask sets. ``ternary`` restricts codes to {-1, 0, 1} (2 weight bits).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from neuroprune.errors import PruneError
from neuroprune.loihi_arith import MANTISSA_MAX, MANTISSA_MIN, MANTISSA_STEP, MAX_WEIGHT_BITS, WEIGHT_SCALE

__all__ = [
    "QuantSpec",
    "Quantized",
    "MANTISSA_MIN",
    "MANTISSA_MAX",
    "MANTISSA_STEP",
    "chip_exponents",
    "fit_scale",
    "quantize_tensor",
    "quantize_model",
    "distinct_mantissas",
]


@dataclass(frozen=True)
class QuantSpec:
    """Target weight set: ``bits`` two's-complement bits per weight (2..8), or ternary.

    Codes ``q`` lie in ``[-2^(bits-1), 2^(bits-1) - 1]``; ``ternary`` narrows them to
    {-1, 0, 1} (and needs only 2 bits).
    """

    bits: int
    ternary: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 2 <= self.bits <= MAX_WEIGHT_BITS:
            raise PruneError(
                f"weight bits {self.bits!r} not supported; give 2..{MAX_WEIGHT_BITS} "
                "(mixed-sign weights need a sign bit, slayer holds 8)"
            )

    @property
    def code_range(self) -> tuple[int, int]:
        """Smallest and largest code ``q``."""
        if self.ternary:
            return -1, 1
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1

    @property
    def levels(self) -> int:
        """Number of distinct codes (at most ``2^bits``)."""
        low, high = self.code_range
        return high - low + 1


@dataclass(frozen=True)
class Quantized:
    """One tensor on a chip grid: ``values = scale * codes`` (weight units).

    ``mantissas = codes << exponent`` are the integers the chip receives; ``fitted_scale``
    is the least-squares scale ``V^T Q / Q^T Q`` before snapping to a power of two;
    ``error`` and ``fitted_error`` are the squared errors ``||V - values||^2`` of the
    chip scale and of the fitted scale.
    """

    values: torch.Tensor
    codes: torch.Tensor
    scale: float
    exponent: int
    fitted_scale: float
    error: float
    fitted_error: float

    @property
    def mantissas(self) -> torch.Tensor:
        return self.codes * (1 << self.exponent)


def chip_exponents(spec: QuantSpec) -> list[int]:
    """Exponents ``e`` whose grid ``q * 2^e`` stays inside slayer's mantissa range.

    ``e >= 1`` because slayer's mantissas are even (step 2).
    """
    low, high = spec.code_range
    exponents = [e for e in range(1, 9) if low * (1 << e) >= MANTISSA_MIN and high * (1 << e) <= MANTISSA_MAX]
    if not exponents:  # pragma: no cover - every spec of 2..8 bits has e = 1
        raise PruneError(f"no power-of-two scale holds {spec.bits}-bit codes in [{MANTISSA_MIN}, {MANTISSA_MAX}]")
    return exponents


def _codes(values: torch.Tensor, scale: float, spec: QuantSpec, mask: torch.Tensor | None) -> torch.Tensor:
    """Nearest codes of ``values / scale``; kept entries of ``mask`` never round to 0."""
    low, high = spec.code_range
    codes = torch.clamp(torch.round(values / scale), low, high)
    if mask is not None:
        sign = torch.where(values < 0, -1.0, 1.0).to(values.dtype)
        nonzero = torch.where(codes == 0, sign, codes)
        codes = torch.where(mask, nonzero, torch.zeros_like(codes))
    return codes


def fit_scale(values: torch.Tensor, spec: QuantSpec, mask: torch.Tensor | None = None,
              iterations: int = 20) -> tuple[float, torch.Tensor]:
    """Least-squares scale and codes: alternate ``Q = clip(round(V/alpha))`` and
    ``alpha = V^T Q / Q^T Q`` (weight units) from ``alpha = max|V| / max|q|``.

    Returns ``(alpha, Q)``; ``alpha`` is 0 when ``V`` (or the kept part) is all zero.
    """
    values = values.detach().double()
    kept = values if mask is None else values[mask]
    peak = float(kept.abs().max()) if kept.numel() else 0.0
    if peak == 0.0:
        return 0.0, torch.zeros_like(values)
    low, high = spec.code_range
    scale = peak / max(-low, high)
    codes = _codes(values, scale, spec, mask)
    for _ in range(iterations):
        denominator = float((codes * codes).sum())
        if denominator == 0.0:
            break
        scale = float((values * codes).sum()) / denominator
        if scale <= 0.0:  # pragma: no cover - codes follow the sign of V, so V^T Q > 0
            break
        new_codes = _codes(values, scale, spec, mask)
        if torch.equal(new_codes, codes):
            break
        codes = new_codes
    return scale, codes


def quantize_tensor(values: torch.Tensor, spec: QuantSpec, mask: torch.Tensor | None = None) -> Quantized:
    """Project ``values`` (weight units) onto the chip grid of ``spec`` (see the module
    docstring): fitted scale first, then the power-of-two scale with the least error.

    ``mask`` (bool, same shape; True = kept) zeroes pruned entries and keeps every other
    entry non-zero.
    """
    if mask is not None and mask.shape != values.shape:
        raise PruneError(f"mask shape {tuple(mask.shape)} differs from the weights' {tuple(values.shape)}")
    target = values.detach().double()
    fitted, fitted_codes = fit_scale(target, spec, mask)
    fitted_error = float(((target - fitted * fitted_codes) ** 2).sum())
    best: tuple[float, int, torch.Tensor] | None = None
    for exponent in chip_exponents(spec):
        scale = (1 << exponent) / WEIGHT_SCALE
        codes = _codes(target, scale, spec, mask)
        error = float(((target - scale * codes) ** 2).sum())
        if best is None or error < best[0] - 1e-12:
            best = (error, exponent, codes)
    assert best is not None
    error, exponent, codes = best
    scale = (1 << exponent) / WEIGHT_SCALE
    return Quantized(
        values=(scale * codes).to(values.dtype),
        codes=codes.to(torch.int64),
        scale=scale,
        exponent=exponent,
        fitted_scale=fitted,
        error=error,
        fitted_error=fitted_error,
    )


def quantize_model(model: torch.nn.Module, spec: QuantSpec,
                   masks: Mapping[int, torch.Tensor] | None = None) -> tuple[torch.nn.Module, dict[int, Quantized]]:
    """A copy of ``model`` with every synaptic layer's weights on the chip grid of ``spec``.

    ``masks`` (IR layer index -> bool mask shaped like the slayer weight) prune at the
    same time (see :func:`quantize_tensor`). Returns the copy and each layer's
    :class:`Quantized`. After :func:`neuroprune.snn.model.to_ir` every layer holds at
    most ``spec.levels`` distinct mantissas and needs at most ``spec.bits`` weight bits.
    """
    quantized_model = copy.deepcopy(model)
    blocks = quantized_model.synaptic_blocks()
    masks = dict(masks or {})
    unknown = sorted(set(masks) - set(blocks))
    if unknown:
        raise PruneError(f"masks for layers {unknown}, which are not synaptic layers; synaptic layers: {sorted(blocks)}")
    results: dict[int, Quantized] = {}
    with torch.no_grad():
        for index, block in blocks.items():
            weight = block.synapse.weight
            result = quantize_tensor(weight, spec, masks.get(index))
            weight.copy_(result.values)
            results[index] = result
    return quantized_model, results


def distinct_mantissas(network: object) -> dict[int, int]:
    """Distinct integer weights per synaptic layer of an IR network (index -> count)."""
    counts: dict[int, int] = {}
    for index, layer in enumerate(getattr(network, "layers")):
        weight = getattr(layer, "weight", None)
        if isinstance(weight, np.ndarray) and weight.ndim >= 2:
            counts[index] = int(np.unique(weight).size)
    return counts

