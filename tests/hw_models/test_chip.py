"""Chip presets and chip-file validation (every bad key is named in the error)."""

from __future__ import annotations

import pytest

from hw_models.chip import load_chip, preset_names
from neuroprune.errors import ChipFileError

from .conftest import chip_variant


def test_presets_are_listed():
    assert preset_names() == ["loihi1", "loihi2"]


def test_loihi1_numbers_match_nengo_loihi(loihi1):
    from nengo_loihi import block

    assert loihi1.cores_per_chip == 128
    assert loihi1.max_neurons_per_core == block.MAX_COMPARTMENTS == 1024
    assert loihi1.max_in_axons_per_core == block.MAX_IN_AXONS == 4096
    assert loihi1.max_out_axons_per_core == block.MAX_OUT_AXONS == 4096
    assert loihi1.max_synapse_bits_per_core == block.MAX_SYNAPSE_BITS == 16384 * 64
    assert loihi1.weight_bits == tuple(b for b in block.SynapseConfig.WEIGHT_BITS_MAP if b)
    assert loihi1.index_bits == tuple(block.SynapseConfig.INDEX_BITS_MAP)


def test_loihi1_core_config_limits_are_nengo_loihis(loihi1):
    import inspect
    import re

    from nengo_loihi.builder import validate
    from nengo_loihi.hardware import validate as hardware_validate

    core = inspect.getsource(hardware_validate.validate_core)
    limits = dict(re.findall(r"len\(core\.(\w+)\) <= (\d+)", core))
    assert int(limits["compartment_cfgs"]) == loihi1.max_compartment_cfgs_per_core == 32
    assert int(limits["vth_cfgs"]) == loihi1.max_threshold_cfgs_per_core == 16
    assert int(limits["synapse_cfgs"]) == loihi1.max_synapse_cfgs_per_core == 16
    assert "max_base = 256" in inspect.getsource(validate.validate_synapse)
    assert loihi1.compartment_base_limit == 256
    assert loihi1.population_axon_slots == 2 and not loihi1.sparse_index_bits


def test_older_chip_files_without_the_new_keys_still_load(tmp_path):
    from hw_models.chip import CHIPS_DIR

    text = (CHIPS_DIR / "loihi1.toml").read_text()
    for key in ("max_compartment_cfgs", "max_threshold_cfgs", "max_synapse_cfgs", "compartment_base_limit",
                "population_axon_slots", "sparse_index_bits"):
        text = "\n".join(line for line in text.splitlines() if not line.startswith(key))
    path = tmp_path / "old.toml"
    path.write_text(text)
    chip = load_chip(path)
    assert chip.compartment_base_limit == 256 and chip.population_axon_slots == 2


def test_loihi1_energy_is_davies_2018(loihi1):
    energy = loihi1.energy
    assert (energy.synop_j, energy.neuron_update_inactive_j, energy.neuron_update_active_j) == (
        pytest.approx(23.6e-12), pytest.approx(52e-12), pytest.approx(81e-12))
    assert (energy.spike_j, energy.hop_east_west_j, energy.hop_north_south_j) == (
        pytest.approx(1.7e-12), pytest.approx(3.0e-12), pytest.approx(4.0e-12))
    assert (energy.ac_45nm_j, energy.mac_45nm_j) == (pytest.approx(0.9e-12), pytest.approx(4.6e-12))


def test_loihi2_uses_120_cores_and_marks_estimates(loihi2):
    from hw_models.chip import CHIPS_DIR

    assert loihi2.cores_per_chip == 120
    assert loihi2.max_neurons_per_core == 8192
    lines = (CHIPS_DIR / "loihi2.toml").read_text().splitlines()
    for key in ("max_neurons", "max_in_axons", "max_out_axons", "max_synapse_bits", "synop_j"):
        line = next(line for line in lines if line.startswith(f"{key} ="))
        assert "estimate" in line, line


@pytest.mark.parametrize("name", ["loihi1", "loihi2"])
def test_every_number_names_a_source(name):
    from hw_models.chip import CHIPS_DIR

    for line in (CHIPS_DIR / f"{name}.toml").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "name", "description", "[")):
            assert "#" in line, f"{name}.toml: no source comment on {line!r}"


def test_load_by_path(tmp_path):
    chip = load_chip(chip_variant(tmp_path, max_neurons=16))
    assert chip.max_neurons_per_core == 16


def test_unknown_preset_lists_presets():
    with pytest.raises(ChipFileError, match="unknown chip 'loihi9'.*loihi1, loihi2"):
        load_chip("loihi9")


def test_missing_file(tmp_path):
    with pytest.raises(ChipFileError, match="not found"):
        load_chip(tmp_path / "nope.toml")


def test_missing_key_is_named(tmp_path):
    path = chip_variant(tmp_path)
    path.write_text(path.read_text().replace("max_in_axons = 4096", ""))
    with pytest.raises(ChipFileError, match="missing key 'core.max_in_axons'"):
        load_chip(path)


def test_missing_table_is_named(tmp_path):
    path = chip_variant(tmp_path)
    text = path.read_text()
    path.write_text(text[: text.index("[energy]")])
    with pytest.raises(ChipFileError, match=r"missing table \[energy\]"):
        load_chip(path)


@pytest.mark.parametrize("key, value, label", [
    ("max_neurons", -1024, "core.max_neurons"),
    ("cores_per_chip", 0, "chip.cores_per_chip"),
    ("synop_j", -1e-12, "energy.synop_j"),
    ("max_synapse_bits", '"lots"', "core.max_synapse_bits"),
    ("max_in_axons", 4096.5, "core.max_in_axons"),
    ("weight_bits", "[8, 4]", "synapse.weight_bits"),
])
def test_bad_values_are_named(tmp_path, key, value, label):
    with pytest.raises(ChipFileError, match=rf"key '{label}' = .* must be"):
        load_chip(chip_variant(tmp_path, **{key: value}))


@pytest.mark.parametrize("key, value, label", [
    ("time_step_s", "inf", "energy.time_step_s"),
    ("time_step_s", "nan", "energy.time_step_s"),
    ("time_step_s", "-1e-3", "energy.time_step_s"),
    ("static_power_w", "inf", "energy.static_power_w"),
    ("synop_j", "1e308", "energy.synop_j"),  # finite, but every energy total would overflow
    ("tag_bits", 2**63 - 1, "synapse.tag_bits"),
    ("synapses_per_group", 10**23, "synapse.synapses_per_group"),
])
def test_non_finite_and_out_of_range_numbers_are_refused(tmp_path, key, value, label):
    with pytest.raises(ChipFileError, match=rf"key '{label}' = .* must be .*(finite|up to|in 0\.\.)"):
        load_chip(chip_variant(tmp_path, **{key: value}))


def test_unknown_key_is_named(tmp_path):
    path = chip_variant(tmp_path)
    path.write_text(path.read_text().replace("[core]\n", "[core]\nmax_neuronz = 5\n"))
    with pytest.raises(ChipFileError, match="unknown key 'core.max_neuronz'"):
        load_chip(path)


def test_invalid_toml(tmp_path):
    path = tmp_path / "hw_broken.toml"
    path.write_text("name = 'x'\n[core\n")
    with pytest.raises(ChipFileError, match="not valid TOML"):
        load_chip(path)


def test_budget_override_rejects_non_positive(loihi1):
    assert loihi1.with_budget(max_cores=5).core_budget == 5
    assert loihi1.with_budget(max_chips=2).core_budget == 256
    with pytest.raises(ChipFileError, match="max_cores=0"):
        loihi1.with_budget(max_cores=0)
