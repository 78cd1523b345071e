"""Per-layer energy tables from a fit report with measured activity.

:func:`hw_models.fit` maps the network and turns spike rates into SynOps and spikes per
time step per layer; this module splits the energy of one inference over the layers:

    E_layer = E_synop * SynOps_layer + E_update * neurons_layer * T + E_spike * spikes_layer

(neuron updates of spiking neurons use the active-update cost), with SynOps counted at
the *receiving* layer and spikes at the *sending* layer. Mesh hops and static power are
network-wide terms and appear only in the totals (from the fit report's energy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hw_models.energy import EnergyCounts, energy

if TYPE_CHECKING:  # pragma: no cover
    from hw_models.report import FitReport

__all__ = ["LayerEnergy", "EnergyTable", "energy_table"]


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's counts and energy for one inference (counts over all time steps)."""

    index: int
    type: str
    neurons: int
    cores: int
    synops: float
    spikes: float
    neuron_updates: float
    energy_j: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EnergyTable:
    """Per-layer rows and the network totals of one inference."""

    chip: str
    time_steps: int
    layers: tuple[LayerEnergy, ...]
    synops: float
    spikes: float
    neuron_updates: float
    cores: int
    breakdown: dict[str, float]

    @property
    def total_j(self) -> float:
        return self.breakdown["total_j"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chip": self.chip, "time_steps": self.time_steps, "cores": self.cores, "synops": self.synops,
            "spikes": self.spikes, "neuron_updates": self.neuron_updates, "energy_j": self.breakdown,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def energy_table(report: "FitReport") -> EnergyTable:
    """Per-layer energy of one inference from ``report`` (built with measured activity and
    the run's ``time_steps``)."""
    steps = report.totals.time_steps
    rows = []
    for layer in report.layers:
        spikes = layer.spikes_per_step * steps
        updates = float(layer.neurons * steps)
        counts = EnergyCounts(synops=layer.synops_per_step * steps, neuron_updates=updates,
                              active_neuron_updates=min(spikes, updates), spikes=spikes, time_steps=steps)
        parts = energy(counts, report.chip)
        rows.append(LayerEnergy(
            index=layer.index, type=layer.type, neurons=layer.neurons, cores=layer.cores,
            synops=counts.synops, spikes=spikes, neuron_updates=updates,
            energy_j=parts.synops_j + parts.neuron_updates_j + parts.spikes_j,
        ))
    return EnergyTable(
        chip=report.chip.name, time_steps=steps, layers=tuple(rows),
        synops=sum(r.synops for r in rows), spikes=sum(r.spikes for r in rows),
        neuron_updates=sum(r.neuron_updates for r in rows), cores=report.totals.cores,
        breakdown=report.energy.to_dict(),
    )
