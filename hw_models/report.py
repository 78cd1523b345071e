"""``fit(network, chip)``: does the network fit, what does it use, and what to change.

The :class:`FitReport` holds totals, one row per layer and every violation (all of them,
not the first) with the limit's name, its budget, the actual value, the layer and a
concrete, computed fix. Its JSON form (:meth:`FitReport.to_dict`) is documented and
stable::

    {"chip", "fits",
     "totals": {"cores", "chips", "neurons", "synapses", "synapse_memory_bits",
                "synops_per_step", "energy_per_inference_j", ...},
     "layers": [{"index", "type", "neurons", "in_axons", "out_axons", "synapses",
                 "synapse_memory_bits", "weight_bits", "cores", "synops_per_step", ...}],
     "violations": [{"limit", "layer", "budget", "actual", "fix", ...}]}

Units: synapse memory in bits, SynOps per time step, energy in joules per inference.
Per-layer ``in_axons``, ``out_axons`` and ``synapse_memory_bits`` are sums over the
layer's cores (each core has its own axons); per-core maxima are reported beside them.
Each layer row also names its neurons (:func:`neuron_facts`): ``neuron_type`` (``-``
without neurons), ``graded`` (spikes carry a payload) and ``payload_bits``, ``recurrent``
(the layer's own spikes feed it back) and ``max_delay`` (largest synaptic delay, steps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import numpy as np

from hw_models.chip import Chip, load_chip
from hw_models.cost import chip_order, neuron_violations
from hw_models.energy import EnergyBreakdown, EnergyCounts, energy
from hw_models.fixes import chips_fix, core_fix, cores_fix, keep_channels, synops_fix
from hw_models.mapper import Allocation, map_network
from neuroprune.errors import FitError, ShapeError
from neuroprune.ir import Layer, Network, RecurrentDenseLayer
from neuroprune.jsonout import finite_json

__all__ = [
    "Activity",
    "DEFAULT_CHIP",
    "DEFAULT_RATE",
    "DEFAULT_TIME_STEPS",
    "FitReport",
    "LayerReport",
    "Totals",
    "Violation",
    "fit",
    "keep_channels",
]

#: Spike rate assumed when no activity is given, spikes per neuron per time step.
DEFAULT_RATE = 0.1
#: Time steps of one inference assumed when none is given (``fit`` and ``energy``).
DEFAULT_TIME_STEPS = 16
#: Chip preset checked when none is given (``fit``, ``energy`` and ``prune``).
DEFAULT_CHIP = "loihi2"

Activity = Mapping[int, Union[float, np.ndarray]]

_LIMIT_WORDS = {
    "max_neurons_per_core": "neurons per core",
    "max_in_axons_per_core": "input axons per core",
    "max_out_axons_per_core": "output axons per core",
    "max_synapse_bits_per_core": "synapse memory bits per core",
    "weight_bits": "weight bits",
    "max_delay_bits": "delay bits",
    "max_cores": "cores",
    "max_chips": "chips",
    "max_synops_per_step": "SynOps per time step",
    "graded_spikes": "graded-spike neuron layers",
    "programmable_neurons": "non-CUBA neuron layers",
}


@dataclass(frozen=True)
class Violation:
    """One broken limit: its name, the budget, the actual value, the layer and a fix."""

    limit: str
    layer: int | None
    budget: float
    actual: float
    fix: str
    layer_name: str = ""

    @property
    def message(self) -> str:
        """nengo-loihi's shape: ``what: <limit> (<actual>) exceeded max (<budget>); fix``."""
        where = f"layer {self.layer} ({self.layer_name})" if self.layer is not None else "network"
        return (f"{where}: {_LIMIT_WORDS.get(self.limit, self.limit)} ({_number(self.actual)}) "
                f"exceeded max ({_number(self.budget)}); fix: {self.fix}")

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "layer": self.layer, "budget": _plain(self.budget),
                "actual": _plain(self.actual), "fix": self.fix, "message": self.message}


@dataclass(frozen=True)
class LayerReport:
    """One row of the per-layer table (see the module docstring for units)."""

    index: int
    type: str
    name: str
    shape: tuple[int, ...]
    neurons: int
    in_axons: int
    out_axons: int
    synapses: int
    synapse_memory_bits: int
    weight_bits: int
    cores: int
    synops_per_step: float
    neurons_per_core: int = 0
    max_in_axons_per_core: int = 0
    max_out_axons_per_core: int = 0
    max_synapse_bits_per_core: int = 0
    encoding: str = "-"
    delay_bits: int = 0
    spikes_per_step: float = 0.0
    activity: str = ""
    neuron_type: str = "-"
    graded: bool = False
    payload_bits: int = 0
    recurrent: bool = False
    max_delay: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in self.__dict__.items()}


def neuron_facts(layer: Layer) -> dict[str, Any]:
    """The per-layer neuron facts of a fit report: neuron type (``-`` without neurons),
    graded spikes and their payload bits, recurrent synapses, largest synaptic delay."""
    neuron = getattr(layer, "neuron", None)
    delay = getattr(layer, "delay", None)
    return {
        "neuron_type": neuron.kind if neuron is not None else "-",
        "graded": bool(neuron is not None and neuron.sends_graded),
        "payload_bits": int(neuron.payload_bits) if neuron is not None else 0,
        "recurrent": isinstance(layer, RecurrentDenseLayer),
        "max_delay": int(np.asarray(delay).max()) if delay is not None and np.asarray(delay).size else 0,
    }


@dataclass(frozen=True)
class Totals:
    """Network totals: cores and chips used, budgets, counts per step and energy."""

    cores: int
    chips: int
    neurons: int
    synapses: int
    synapse_memory_bits: int
    synops_per_step: float
    energy_per_inference_j: float
    cores_available: int
    chips_available: int
    spikes_per_step: float
    macs_per_step: float
    time_steps: int
    activity_source: str

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class FitReport:
    """Result of :func:`fit`. ``ok`` is True when no limit or budget is broken."""

    chip: Chip
    network_name: str
    totals: Totals
    layers: tuple[LayerReport, ...]
    violations: tuple[Violation, ...]
    energy: EnergyBreakdown
    allocation: Allocation = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.violations

    def raise_if_invalid(self) -> None:
        """Raise :class:`FitError` listing every violation (message, budget, fix)."""
        if self.violations:
            lines = "; ".join(v.message for v in self.violations)
            raise FitError(
                f"{self.network_name} does not fit {self.chip.name} "
                f"({len(self.violations)} violation{'s' if len(self.violations) > 1 else ''}): {lines}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "chip": self.chip.name,
            "network": self.network_name,
            "fits": self.ok,
            "totals": self.totals.to_dict(),
            "energy": {key: _plain(value) for key, value in self.energy.to_dict().items()},
            "layers": [layer.to_dict() for layer in self.layers],
            "violations": [violation.to_dict() for violation in self.violations],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return finite_json(self.to_dict(), indent=indent)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value
    return value


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.4g}"


# ----------------------------------------------------------------------------- activity
def _rates(network: Network, activity: Activity | None, default_rate: float) -> tuple[dict[int, np.ndarray], str]:
    """Per-neuron spike rates (flattened) of every neuron-bearing layer, and their source."""
    activity = dict(activity or {})
    joins = [i for i in network.source_indices() if network.layers[i].kind == "concat"]
    bearing = [i for i in network.source_indices() if i not in joins]
    for key in activity:
        if key not in bearing:
            raise ShapeError(
                f"activity given for layer {key}, which has no neurons; neuron-bearing layers: "
                f"{', '.join(str(i) for i in bearing)}"
            )
    rates: dict[int, np.ndarray] = {}
    measured = []
    for index in bearing:
        size = int(np.prod(network.shapes[index]))
        if index not in activity:
            rates[index] = np.full(size, float(default_rate))
            continue
        value = np.asarray(activity[index], dtype=np.float64)
        if value.ndim == 0:
            value = np.full(size, float(value))
        elif value.size != size or value.shape not in (network.shapes[index], (size,)):
            raise ShapeError(
                f"activity of layer {index} has shape {value.shape}, expected {network.shapes[index]} "
                "(spikes per neuron per time step)"
            )
        if np.any(value < 0) or not np.all(np.isfinite(value)):
            raise ShapeError(f"activity of layer {index} must be finite rates >= 0 (spikes per neuron per step)")
        rates[index] = value.reshape(-1)
        measured.append(index)
    for index in joins:  # a concat's spikes are its sources' spikes (C, H, W order: sources one after another)
        rates[index] = np.concatenate([
            rates[network.producer_of(source) if network.layers[source].passthrough else source]  # type: ignore[index]
            for source in network.sources_of(index)])
    if not measured:
        source = f"assumed {default_rate:g}"
    elif len(measured) == len(bearing):
        source = "measured"
    else:
        source = f"measured (layers {', '.join(map(str, measured))}), assumed {default_rate:g} elsewhere"
    return rates, source


def _unit_rates(network: Network, producer: int, rates: dict[int, np.ndarray], unit_size: int) -> np.ndarray:
    """Spike rates of a producer's axon units (neurons or pixels) in its on-chip order."""
    order = chip_order(network.shapes[producer])
    values = rates[producer] if order is None else rates[producer][order]
    return values.reshape(-1, unit_size).sum(axis=1)


def _concat_inputs(network: Network, concat: int, pairs: Any,
                   rates: dict[int, np.ndarray]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """A consumer's input pairs from a concat, split by the concat's sources: (spiking
    source, its first neuron of each pair's unit in its on-chip order, messages per step,
    consumer blocks). Each source sends its own axons (a population axon per pixel)."""
    shape, start, parts = network.shapes[concat], 0, []
    for source in network.sources_of(concat):
        spiking = network.producer_of(source) if network.layers[source].passthrough else source
        width = network.shapes[source][0]
        neuron_rates = _unit_rates(network, spiking, rates, 1)  # type: ignore[arg-type]
        if pairs.unit_size > 1:  # pixels
            pixel_rates = neuron_rates.reshape(-1, width).sum(axis=1)
            parts.append((spiking, pairs.units * width, pixel_rates[pairs.units] * pairs.share, pairs.blocks))
        else:
            units = pairs.units
            if len(shape) == 3:  # H, W, C order: the source's channels of each pixel
                pixel, channel = np.divmod(units, shape[0])
                mine = (channel >= start) & (channel < start + width)
                neuron = pixel[mine] * width + channel[mine] - start
            else:  # a slice of the vector, in the source's torch order
                mine = (units >= start) & (units < start + width)
                neuron = units[mine] - start
                order = chip_order(network.shapes[spiking])  # type: ignore[index]
                if order is not None:
                    position = np.empty_like(order)
                    position[order] = np.arange(len(order))
                    neuron = position[neuron]
            parts.append((spiking, neuron, neuron_rates[neuron] * pairs.share[mine], pairs.blocks[mine]))  # type: ignore[arg-type]
        start += width
    return parts


def _traffic(network: Network, allocation: Allocation, rates: dict[int, np.ndarray],
             chip: Chip) -> tuple[float, float, float]:
    """Spike messages per step into cores (one per input axon a spike uses), and the
    east-west and north-south mesh hops they travel.

    Cores are laid out row-major, ``mesh_columns`` wide, on each chip; hops between
    chips are not counted. Each input axon's messages travel from the core holding the
    first neuron of its unit to the core of its block (through a concat: from each source).
    A recurrent layer's own spikes count too: one message per own neuron and own block it
    reaches, from the core holding the neuron to that block's core.
    """
    by_index = {layer.index: layer for layer in allocation.layers}
    messages = east_west = north_south = 0.0

    def travel(source: Any, first_neuron: np.ndarray, weight: np.ndarray, consumer: Any,
               blocks: np.ndarray) -> tuple[float, float]:
        starts = np.array([block.neuron_start for block in source.blocks])
        src_block = np.searchsorted(starts, first_neuron, side="right") - 1
        src = (source.blocks[0].core + src_block) % chip.cores_per_chip
        dst = (consumer.blocks[0].core + blocks) % chip.cores_per_chip
        return (float(weight @ np.abs(dst % chip.mesh_columns - src % chip.mesh_columns)),
                float(weight @ np.abs(dst // chip.mesh_columns - src // chip.mesh_columns)))

    for consumer in allocation.layers:
        own = consumer.recurrent_inputs
        if own is not None:  # the layer's own spikes back into its own blocks (1-D: on-chip = index order)
            weight = rates[consumer.index][own.units] * own.share
            messages += float(weight.sum())
            hops = travel(consumer, own.units, weight, consumer, own.blocks)
            east_west, north_south = east_west + hops[0], north_south + hops[1]
        pairs = consumer.inputs
        if pairs is None:
            continue
        unit_rates = _unit_rates(network, consumer.producer, rates, pairs.unit_size)
        weight = unit_rates[pairs.units] * pairs.share
        messages += float(weight.sum())
        if network.layers[consumer.producer].kind == "concat":
            parts = _concat_inputs(network, consumer.producer, pairs, rates)
        else:
            parts = [(consumer.producer, pairs.units * pairs.unit_size, weight, pairs.blocks)]
        for producer, first_neuron, part_weight, blocks in parts:
            source = by_index.get(producer)
            if source is None:  # spikes from the host
                continue
            hops = travel(source, first_neuron, part_weight, consumer, blocks)
            east_west, north_south = east_west + hops[0], north_south + hops[1]
    return messages, east_west, north_south


def _violations(network: Network, chip: Chip, allocation: Allocation, synops: dict[int, float],
                suggest_fixes: bool) -> list[Violation]:
    found: list[Violation] = []
    names = {i: layer.name for i, layer in enumerate(network.layers)}

    def add(limit: str, layer: int | None, budget: float, actual: float, fix: str) -> None:
        found.append(Violation(limit, layer, budget, actual, fix, names.get(layer, "") if layer is not None else ""))

    for index, limit, fix in neuron_violations(network, chip):
        add(limit, index, 0, 1, fix)
    for layer in allocation.layers:
        if layer.required_weight_bits > chip.max_weight_bits:
            add("weight_bits", layer.index, chip.max_weight_bits, layer.required_weight_bits,
                f"quantize layer {layer.index} to <= {chip.max_weight_bits}-bit weights")
        if layer.delay_bits > chip.max_delay_bits:
            add("max_delay_bits", layer.index, chip.max_delay_bits, layer.delay_bits,
                f"limit layer {layer.index}'s delays to <= {2 ** chip.max_delay_bits - 1} time steps")
        for limit, actual, budget in layer.over_limits:
            fix = core_fix(network, chip, allocation, layer, limit, actual, budget) if suggest_fixes else ""
            add(limit, layer.index, budget, actual, fix)

    cores, chips = allocation.cores, allocation.chips
    if chip.max_cores is not None and cores > chip.max_cores:
        fix = cores_fix(network, chip, allocation) if suggest_fixes else ""
        add("max_cores", None, chip.max_cores, cores, fix)
    if chips > chip.max_chips:
        fix = chips_fix(network, chip, allocation) if suggest_fixes else ""
        add("max_chips", None, chip.max_chips, chips, fix)
    total = sum(synops.values())
    if chip.max_synops_per_step is not None and total > chip.max_synops_per_step * (1 + 1e-9):  # float noise
        fix = synops_fix(chip, synops) if suggest_fixes and synops else ""
        add("max_synops_per_step", None, chip.max_synops_per_step, total, fix)
    return found


# ----------------------------------------------------------------------------- fit
def fit(
    network: Network,
    chip: Chip | str | os.PathLike[str],
    activity: Activity | None = None,
    *,
    time_steps: int | None = None,
    default_rate: float = DEFAULT_RATE,
    max_cores: int | None = None,
    max_chips: int | None = None,
    max_synops_per_step: float | None = None,
    graded_input: bool = False,
    suggest_fixes: bool = True,
) -> FitReport:
    """Check whether ``network`` fits ``chip`` (a :class:`Chip`, preset name or TOML path).

    Parameters
    ----------
    activity : spike rates per neuron-bearing layer index (the input layer included),
        in spikes per neuron per time step: a float (uniform) or an array of the
        layer's shape. Layers without an entry get ``default_rate`` (the report says
        ``activity_source: "assumed 0.1"``; all given: ``"measured"``).
    time_steps : time steps of one inference, for energy (default
        :data:`DEFAULT_TIME_STEPS`).
    max_cores, max_chips, max_synops_per_step : budgets overriding the chip file's.
    graded_input : the input layer sends graded values (no input neurons): the first
        layer's operations are counted as MACs (``macs_per_step``), not SynOps.
    suggest_fixes : compute fixes for violations (a few extra mappings; switch off in
        tight loops).

    SynOps per step of synaptic layer i = sum over presynaptic neurons of rate x that
    neuron's non-zero outgoing synapses in layer i. For neurons that send graded spikes
    (sigma-delta), the rate is that of non-zero payloads: the messages the chip sends.
    """
    if not isinstance(chip, Chip):
        chip = load_chip(chip)
    chip = chip.with_budget(max_cores=max_cores, max_chips=max_chips, max_synops_per_step=max_synops_per_step)
    steps = DEFAULT_TIME_STEPS if time_steps is None else int(time_steps)
    if steps < 1:
        raise ShapeError(f"time_steps={time_steps} must be >= 1")
    if default_rate < 0:
        raise ShapeError(f"default_rate={default_rate} must be >= 0 (spikes per neuron per step)")
    rates, source = _rates(network, activity, default_rate)
    allocation = map_network(network, chip)
    by_index = {layer.index: layer for layer in allocation.layers}

    synops: dict[int, float] = {}
    macs = 0.0
    for layer in allocation.layers:
        if layer.fanout_synapses is None or layer.producer is None:
            continue
        pre_rates = rates[layer.producer]
        ops = float(pre_rates @ layer.fanout_synapses)
        if layer.recurrent_fanout is not None:  # the layer's own spikes reach its recurrent synapses
            ops += float(rates[layer.index] @ layer.recurrent_fanout)
        if graded_input and layer.producer == 0 and by_index.get(0) is None:
            macs += float(layer.fanout_synapses.sum())
            synops[layer.index] = 0.0
        else:
            synops[layer.index] = ops

    rows = []
    for index, (layer, shape) in enumerate(zip(network.layers, network.shapes)):
        placed = by_index.get(index)
        spikes = float(rates[index].sum()) if index in rates else 0.0
        if placed is None:
            rows.append(LayerReport(index=index, type=layer.kind, name=layer.name, shape=shape, neurons=0,
                                    in_axons=0, out_axons=0, synapses=0, synapse_memory_bits=0, weight_bits=0,
                                    cores=0, synops_per_step=0.0, spikes_per_step=spikes,
                                    activity=_layer_source(index, rates, activity, default_rate),
                                    **neuron_facts(layer)))
            continue
        rows.append(LayerReport(
            index=index, type=layer.kind, name=layer.name, shape=shape, neurons=placed.neurons,
            in_axons=placed.in_axons, out_axons=placed.out_axons, synapses=placed.synapses,
            synapse_memory_bits=placed.synapse_bits, weight_bits=placed.weight_bits, cores=placed.cores,
            synops_per_step=synops.get(index, 0.0), neurons_per_core=placed.neurons_per_core,
            max_in_axons_per_core=placed.max_per_core("in_axons"),
            max_out_axons_per_core=placed.max_per_core("out_axons"),
            max_synapse_bits_per_core=placed.max_per_core("synapse_bits"), encoding=placed.encoding,
            delay_bits=placed.delay_bits, spikes_per_step=spikes,
            activity=_layer_source(index, rates, activity, default_rate), **neuron_facts(layer),
        ))

    on_chip_spikes = sum(float(rates[layer.index].sum()) for layer in allocation.layers)
    messages, hops_ew, hops_ns = _traffic(network, allocation, rates, chip)
    neurons = sum(layer.neurons for layer in allocation.layers)
    synapses = sum(layer.synapses for layer in allocation.layers)
    breakdown = energy(EnergyCounts(
        synops=sum(synops.values()) * steps, neuron_updates=neurons * steps,
        active_neuron_updates=on_chip_spikes * steps, spikes=messages * steps,
        mesh_hops_east_west=hops_ew * steps, mesh_hops_north_south=hops_ns * steps,
        time_steps=steps, ann_macs=float(synapses),
    ), chip)
    totals = Totals(
        cores=allocation.cores, chips=allocation.chips, neurons=neurons, synapses=synapses,
        synapse_memory_bits=sum(layer.synapse_bits for layer in allocation.layers),
        synops_per_step=sum(synops.values()), energy_per_inference_j=breakdown.total_j,
        cores_available=chip.core_budget, chips_available=chip.max_chips,
        spikes_per_step=sum(float(r.sum()) for i, r in rates.items() if network.layers[i].kind != "concat"),
        macs_per_step=macs,
        time_steps=steps, activity_source=source,
    )
    violations = _violations(network, chip, allocation, synops, suggest_fixes)
    return FitReport(chip=chip, network_name=network.name, totals=totals, layers=tuple(rows),
                     violations=tuple(violations), energy=breakdown, allocation=allocation)


def _layer_source(index: int, rates: dict[int, np.ndarray], activity: Activity | None, default_rate: float) -> str:
    if index not in rates:
        return "-"
    return "measured" if activity and index in activity else f"assumed {default_rate:g}"
