"""Hardware budgets for the pruning search: a frozen :class:`Constraints` and a cheap
:func:`resource_use` check that can run thousands of times in a search loop.

>>> constraints = Constraints.from_chip("loihi1", max_cores=8)
>>> use = resource_use(network, constraints)      # doctest: +SKIP
>>> use.ok, use.cores, use.within["max_cores"]    # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from hw_models.chip import Chip, load_chip
from hw_models.report import DEFAULT_RATE, Activity, fit
from neuroprune.ir import Network

__all__ = ["Constraints", "ResourceUse", "resource_use"]


@dataclass(frozen=True)
class Constraints:
    """A chip with the search's budgets (``None`` = the chip file's budget / no budget).

    Units: cores, chips, SynOps per time step (at the given or assumed activity).
    """

    chip: Chip

    @classmethod
    def from_chip(
        cls,
        chip: Chip | str | os.PathLike[str],
        *,
        max_cores: int | None = None,
        max_chips: int | None = None,
        max_synops_per_step: float | None = None,
    ) -> "Constraints":
        """Constraints from a chip (object, preset name or TOML path) and budget overrides."""
        base = chip if isinstance(chip, Chip) else load_chip(chip)
        return cls(base.with_budget(max_cores=max_cores, max_chips=max_chips,
                                    max_synops_per_step=max_synops_per_step))

    @property
    def max_cores(self) -> int:
        return self.chip.core_budget

    @property
    def max_chips(self) -> int:
        return self.chip.max_chips

    @property
    def max_synops_per_step(self) -> float | None:
        return self.chip.max_synops_per_step


@dataclass(frozen=True)
class ResourceUse:
    """What a network uses on the chip and whether each budget holds.

    ``within`` maps every checked limit name (``max_cores``, ``max_chips``,
    ``max_synops_per_step``, ``per_core_limits``, ``weight_bits``, ``max_delay_bits``)
    to True when it holds.
    """

    cores: int
    chips: int
    synapse_memory_bits: int
    max_neurons_per_core: int
    synops_per_step: float
    within: Mapping[str, bool]

    @property
    def ok(self) -> bool:
        return all(self.within.values())


_PER_CORE = {"max_neurons_per_core", "max_in_axons_per_core", "max_out_axons_per_core",
             "max_synapse_bits_per_core"}


def resource_use(network: Network, constraints: Constraints, activity: Activity | None = None,
                 *, default_rate: float = DEFAULT_RATE) -> ResourceUse:
    """Resource use of ``network`` under ``constraints`` (no fixes computed; fast).

    ``activity`` is as for :func:`hw_models.fit` (spikes per neuron per step).
    """
    report = fit(network, constraints.chip, activity, default_rate=default_rate, suggest_fixes=False)
    broken = {violation.limit for violation in report.violations}
    within = {
        "max_cores": "max_cores" not in broken and report.totals.cores <= constraints.max_cores,
        "max_chips": "max_chips" not in broken,
        "max_synops_per_step": "max_synops_per_step" not in broken,
        "per_core_limits": not (broken & _PER_CORE),
        "weight_bits": "weight_bits" not in broken,
        "max_delay_bits": "max_delay_bits" not in broken,
    }
    return ResourceUse(
        cores=report.totals.cores,
        chips=report.totals.chips,
        synapse_memory_bits=report.totals.synapse_memory_bits,
        max_neurons_per_core=max((layer.neurons_per_core for layer in report.layers), default=0),
        synops_per_step=report.totals.synops_per_step,
        within=MappingProxyType(within),
    )
