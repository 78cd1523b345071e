"""Hardware models: chip presets, per-layer costs, core mapping, fit reports, energy.

No torch or Lava import on this path (``neuroprune fit`` must start fast).

>>> from hw_models import fit, load_chip
>>> report = fit(network, "loihi2")            # doctest: +SKIP
>>> report.ok, report.totals.cores             # doctest: +SKIP
"""

from hw_models.chip import Chip, load_chip, preset_names
from hw_models.constraints import Constraints, ResourceUse, resource_use
from hw_models.energy import EnergyBreakdown, EnergyCoefficients, EnergyCounts, energy
from hw_models.mapper import Allocation, CoreBlock, LayerAllocation, map_network
from hw_models.report import DEFAULT_CHIP, DEFAULT_RATE, DEFAULT_TIME_STEPS, FitReport, LayerReport, Totals, Violation, fit

__all__ = [
    "Allocation",
    "Chip",
    "Constraints",
    "CoreBlock",
    "DEFAULT_RATE",
    "DEFAULT_TIME_STEPS",
    "DEFAULT_CHIP",
    "EnergyBreakdown",
    "EnergyCoefficients",
    "EnergyCounts",
    "FitReport",
    "LayerAllocation",
    "LayerReport",
    "ResourceUse",
    "Totals",
    "Violation",
    "energy",
    "fit",
    "load_chip",
    "map_network",
    "preset_names",
    "resource_use",
]
