"""Chip descriptions: the presets in ``hw_models/chips/*.toml`` or a user's own file.

Every hardware number lives once, in a chip file, with its public source in a comment;
code reads it by name (``chip.max_neurons_per_core``). A chip file has the tables
``[chip]``, ``[core]``, ``[synapse]``, ``[energy]`` and ``[budget]`` (see
``loihi1.toml``); a missing, unknown, mistyped or out-of-range key raises
:class:`~neuroprune.errors.ChipFileError` naming the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from hw_models.energy import EnergyCoefficients
from neuroprune.errors import ChipFileError

try:  # Python 3.11+
    import tomllib  # type: ignore[import-not-found]
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["Chip", "load_chip", "preset_names", "CHIPS_DIR"]

CHIPS_DIR = Path(__file__).with_name("chips")


@dataclass(frozen=True)
class Chip:
    """A neuromorphic chip: per-core limits, synapse memory format, energy, budgets.

    Units: neurons (compartments), axons, bits; energies in joules. Budgets are the
    user's (``max_chips`` defaults to the chip file's, ``max_cores`` to
    ``max_chips * cores_per_chip``; ``None`` means no budget).
    """

    name: str
    description: str
    cores_per_chip: int
    chips_per_board: int
    mesh_columns: int
    max_neurons_per_core: int
    max_in_axons_per_core: int
    max_out_axons_per_core: int
    max_synapse_bits_per_core: int
    weight_bits: tuple[int, ...]
    index_bits: tuple[int, ...]
    max_delay_bits: int
    tag_bits: int
    synapse_word_bits: int
    synapses_per_group: int
    synapse_group_header_bits: int
    energy: EnergyCoefficients
    max_chips: int
    max_cores: int | None = None
    max_synops_per_step: float | None = None
    max_compartment_cfgs_per_core: int = 32
    max_threshold_cfgs_per_core: int = 16
    max_synapse_cfgs_per_core: int = 16
    compartment_base_limit: int = 256
    population_axon_slots: int = 2
    sparse_index_bits: bool = False
    graded_spikes: bool = False
    programmable_neurons: bool = False
    successor: str | None = None

    @property
    def max_weight_bits(self) -> int:
        return max(self.weight_bits)

    @property
    def core_budget(self) -> int:
        """Cores the budget allows: ``max_cores`` or ``max_chips * cores_per_chip``."""
        return self.max_cores if self.max_cores is not None else self.max_chips * self.cores_per_chip

    def with_budget(
        self,
        *,
        max_cores: int | None = None,
        max_chips: int | None = None,
        max_synops_per_step: float | None = None,
    ) -> "Chip":
        """A copy with the given budgets overridden (``None`` keeps the current one)."""
        changes: dict[str, Any] = {}
        for key, value in (("max_cores", max_cores), ("max_chips", max_chips),
                           ("max_synops_per_step", max_synops_per_step)):
            if value is None:
                continue
            if value <= 0:
                raise ChipFileError(f"budget {key}={value} must be > 0")
            changes[key] = value
        return replace(self, **changes) if changes else self


# --------------------------------------------------------------------------- schema
# Sanity limits of a chip file (not hardware numbers): counts and widths fit a 32-bit
# integer, and energy-table entries (J per event, W, s per step) stay small enough that
# every total the reports multiply out of them is a finite float.
MAX_COUNT = (1 << 31) - 1
MAX_ENERGY_VALUE = 1e3


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_COUNT


def _nonnegative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nonnegative_number(value: Any) -> bool:
    return _finite_number(value) and 0 <= value <= MAX_ENERGY_VALUE


def _positive_number(value: Any) -> bool:
    return _nonnegative_number(value) and value > 0


def _positive_budget(value: Any) -> bool:
    return _finite_number(value) and value > 0


def _bit_list(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(_nonnegative_int(v) and v <= 32 for v in value)
            and value == sorted(set(value)))


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


_RULES: dict[Callable[[Any], bool], str] = {
    _positive_int: f"a positive integer up to {MAX_COUNT}",
    _nonnegative_int: f"an integer in 0..{MAX_COUNT}",
    _nonnegative_number: f"a finite number in [0, {MAX_ENERGY_VALUE:g}]",
    _positive_number: f"a finite number in (0, {MAX_ENERGY_VALUE:g}]",
    _positive_budget: "a finite number > 0",
    _bit_list: "a sorted list of distinct bit widths in 0..32",
    _text: "a non-empty string",
    _flag: "true or false",
}

# table -> key -> (check, Chip field or None, required)
_SCHEMA: dict[str, dict[str, tuple[Callable[[Any], bool], str, bool]]] = {
    "": {
        "name": (_text, "name", True),
        "description": (_text, "description", False),
    },
    "chip": {
        "cores_per_chip": (_positive_int, "cores_per_chip", True),
        "chips_per_board": (_positive_int, "chips_per_board", True),
        "mesh_columns": (_positive_int, "mesh_columns", True),
        "successor": (_text, "successor", False),
    },
    "core": {
        "max_neurons": (_positive_int, "max_neurons_per_core", True),
        "max_in_axons": (_positive_int, "max_in_axons_per_core", True),
        "max_out_axons": (_positive_int, "max_out_axons_per_core", True),
        "max_synapse_bits": (_positive_int, "max_synapse_bits_per_core", True),
        "max_compartment_cfgs": (_positive_int, "max_compartment_cfgs_per_core", False),
        "max_threshold_cfgs": (_positive_int, "max_threshold_cfgs_per_core", False),
        "max_synapse_cfgs": (_positive_int, "max_synapse_cfgs_per_core", False),
        "compartment_base_limit": (_positive_int, "compartment_base_limit", False),
        "graded_spikes": (_flag, "graded_spikes", False),
        "programmable_neurons": (_flag, "programmable_neurons", False),
    },
    "synapse": {
        "weight_bits": (_bit_list, "weight_bits", True),
        "index_bits": (_bit_list, "index_bits", True),
        "max_delay_bits": (_nonnegative_int, "max_delay_bits", True),
        "tag_bits": (_nonnegative_int, "tag_bits", True),
        "word_bits": (_positive_int, "synapse_word_bits", True),
        "synapses_per_group": (_positive_int, "synapses_per_group", True),
        "group_header_bits": (_nonnegative_int, "synapse_group_header_bits", True),
        "population_axon_slots": (_positive_int, "population_axon_slots", False),
        "sparse_index_bits": (_flag, "sparse_index_bits", False),
    },
    "energy": {
        "synop_j": (_nonnegative_number, "synop_j", True),
        "neuron_update_inactive_j": (_nonnegative_number, "neuron_update_inactive_j", True),
        "neuron_update_active_j": (_nonnegative_number, "neuron_update_active_j", True),
        "spike_j": (_nonnegative_number, "spike_j", True),
        "hop_east_west_j": (_nonnegative_number, "hop_east_west_j", True),
        "hop_north_south_j": (_nonnegative_number, "hop_north_south_j", True),
        "static_power_w": (_nonnegative_number, "static_power_w", True),
        "time_step_s": (_positive_number, "time_step_s", True),
        "ac_45nm_j": (_nonnegative_number, "ac_45nm_j", True),
        "mac_45nm_j": (_nonnegative_number, "mac_45nm_j", True),
    },
    "budget": {
        "max_chips": (_positive_int, "max_chips", True),
        "max_cores": (_positive_int, "max_cores", False),
        "max_synops_per_step": (_positive_budget, "max_synops_per_step", False),
    },
}


def _validate(data: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``data`` against the schema; return (chip fields, energy fields)."""
    fields: dict[str, Any] = {}
    energy: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and (key not in _SCHEMA or not key):
            raise ChipFileError(
                f"{source}: unknown table [{key}]; tables: {', '.join(t for t in _SCHEMA if t)}"
            )
        if not isinstance(value, dict) and key not in _SCHEMA[""]:
            raise ChipFileError(
                f"{source}: unknown key {key!r}; top-level keys: {', '.join(_SCHEMA[''])}"
            )
    for table, keys in _SCHEMA.items():
        section = data if not table else data.get(table)
        if table and section is None:
            raise ChipFileError(f"{source}: missing table [{table}] (keys: {', '.join(keys)})")
        if not isinstance(section, dict):
            raise ChipFileError(f"{source}: [{table}] must be a table")
        for key in section:
            if table and key not in keys:
                raise ChipFileError(
                    f"{source}: unknown key '{table}.{key}'; known keys of [{table}]: {', '.join(keys)}"
                )
        for key, (check, field_name, required) in keys.items():
            label = f"{table}.{key}" if table else key
            if key not in section:
                if required:
                    raise ChipFileError(f"{source}: missing key '{label}'")
                continue
            value = section[key]
            if not check(value):
                raise ChipFileError(f"{source}: key '{label}' = {value!r} must be {_RULES[check]}")
            if table == "energy":
                energy[field_name] = float(value)
            else:
                fields[field_name] = tuple(value) if isinstance(value, list) else value
    if not any(bits > 0 for bits in fields["weight_bits"]):
        raise ChipFileError(f"{source}: key 'synapse.weight_bits' must hold a width > 0")
    fields["weight_bits"] = tuple(b for b in fields["weight_bits"] if b > 0)
    fields.setdefault("description", fields["name"])
    return fields, energy


def preset_names() -> list[str]:
    """Names of the chip presets shipped in ``hw_models/chips``."""
    return sorted(path.stem for path in CHIPS_DIR.glob("*.toml"))


def load_chip(name_or_path: str | os.PathLike[str]) -> Chip:
    """Load a preset by name (``"loihi1"``, ``"loihi2"``) or a chip TOML file by path."""
    text = str(name_or_path)
    if text in preset_names():
        path = CHIPS_DIR / f"{text}.toml"
    else:
        path = Path(text)
        if path.suffix != ".toml" and not path.exists():
            raise ChipFileError(
                f"unknown chip {text!r}; presets: {', '.join(preset_names())}, or a path to a .toml file"
            )
    if not path.is_file():
        raise ChipFileError(f"{path}: chip file not found")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ChipFileError(f"{path}: not valid TOML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ChipFileError(f"{path}: cannot read chip file ({err})") from None
    fields, energy = _validate(data, str(path))
    return Chip(energy=EnergyCoefficients(**energy), **fields)
