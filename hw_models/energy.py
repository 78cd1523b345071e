"""Energy per inference from operation counts (a pure function, no report).

.. math::

    E = E_{synop} N_{synop}
      + E_{upd,inactive} (N_{upd} - N_{upd,active}) + E_{upd,active} N_{upd,active}
      + E_{spike} N_{spike} + E_{hop,EW} N_{hop,EW} + E_{hop,NS} N_{hop,NS}
      + P_{static} \\, T \\, t_{step}

with the coefficients of the chip file (Loihi 1: Davies et al. 2018). The paper-style
45 nm comparison is reported beside it: the SNN's SynOps as accumulates
(:math:`0.9\\,pJ \\times N_{synop}`) against the equivalent ANN's multiply-accumulates
(:math:`4.6\\,pJ \\times N_{MAC}`).

Graded spikes (sigma-delta neurons on Loihi 2) are counted as the chip sends them: a
neuron sends a message only when its payload (its delta) is non-zero, and each such
message is one spike and drives one SynOp per non-zero outgoing synapse, whatever its
payload. The chip files hold no energy per payload bit (no source gives one), so a
graded message is charged the energy of a binary spike and a graded SynOp that of a
binary SynOp; none is invented here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hw_models.chip import Chip

__all__ = ["EnergyCoefficients", "EnergyCounts", "EnergyBreakdown", "energy"]


@dataclass(frozen=True)
class EnergyCoefficients:
    """Energy per operation, in joules (power in watts, time in seconds).

    Read from the ``[energy]`` table of a chip file; each value names its source there.
    """

    synop_j: float
    neuron_update_inactive_j: float
    neuron_update_active_j: float
    spike_j: float
    hop_east_west_j: float
    hop_north_south_j: float
    static_power_w: float
    time_step_s: float
    ac_45nm_j: float
    mac_45nm_j: float


@dataclass(frozen=True)
class EnergyCounts:
    """Operation counts of one inference (all counts are totals over ``time_steps``).

    Parameters
    ----------
    synops : synaptic operations (spike, or non-zero graded message, x non-zero outgoing synapse).
    neuron_updates : compartment updates (compartments x time steps).
    active_neuron_updates : updates of neurons that spiked (part of ``neuron_updates``).
    spikes : spike messages sent (a spike to k destination cores counts k; a graded
        spike counts when its payload is non-zero).
    mesh_hops_east_west, mesh_hops_north_south : mesh hops of those messages.
    time_steps : time steps of one inference.
    ann_macs : multiply-accumulates of the equivalent ANN (one pass, dense-equivalent
        synapses), for the 45 nm comparison.
    """

    synops: float = 0.0
    neuron_updates: float = 0.0
    active_neuron_updates: float = 0.0
    spikes: float = 0.0
    mesh_hops_east_west: float = 0.0
    mesh_hops_north_south: float = 0.0
    time_steps: int = 1
    ann_macs: float = 0.0


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one inference per term, in joules."""

    synops_j: float
    neuron_updates_j: float
    spikes_j: float
    mesh_hops_j: float
    static_j: float
    snn_ac_45nm_j: float
    ann_mac_45nm_j: float

    @property
    def total_j(self) -> float:
        """Chip energy per inference (the 45 nm comparison is not included), J."""
        return self.synops_j + self.neuron_updates_j + self.spikes_j + self.mesh_hops_j + self.static_j

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_j"] = self.total_j
        return data


def energy(counts: EnergyCounts, chip: "Chip") -> EnergyBreakdown:
    """Energy of one inference on ``chip`` from operation ``counts`` (joules)."""
    coeff = chip.energy
    inactive = max(counts.neuron_updates - counts.active_neuron_updates, 0.0)
    return EnergyBreakdown(
        synops_j=coeff.synop_j * counts.synops,
        neuron_updates_j=coeff.neuron_update_inactive_j * inactive
        + coeff.neuron_update_active_j * counts.active_neuron_updates,
        spikes_j=coeff.spike_j * counts.spikes,
        mesh_hops_j=coeff.hop_east_west_j * counts.mesh_hops_east_west
        + coeff.hop_north_south_j * counts.mesh_hops_north_south,
        static_j=coeff.static_power_w * coeff.time_step_s * counts.time_steps,
        snn_ac_45nm_j=coeff.ac_45nm_j * counts.synops,
        ann_mac_45nm_j=coeff.mac_45nm_j * counts.ann_macs,
    )
