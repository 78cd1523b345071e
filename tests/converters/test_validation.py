"""Hostile and broken netx files: every one is refused with one line naming the file, the
layer, the value and the limit (exit 2), before anything large is allocated."""

from __future__ import annotations

import resource
import sysconfig
from pathlib import Path

import h5py
import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.ir import MAX_V_TH_MANT, ConvLayer, DenseLayer, InputLayer, Network, Neuron

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=80)


def _small(tmp_path: Path, name: str = "n.net") -> Path:
    net = Network([
        InputLayer(shape=(20,)),
        DenseLayer(weight=(np.arange(320).reshape(16, 20) % 50).astype(np.int32), neuron=NEURON),
        DenseLayer(weight=np.ones((5, 16), np.int32), neuron=NEURON),
    ])
    return netx.write(net, tmp_path / name)


def _refused(path: Path, capsys, *fragments: str) -> str:
    """``fit`` and ``info`` exit 2 with one line naming the file and each fragment."""
    for command in ("fit", "info"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        for fragment in (str(path), *fragments):
            assert fragment in err, (fragment, err)
    return err


def _replace(path: Path, key: str, **dataset) -> None:
    with h5py.File(path, "r+") as handle:
        del handle[key]
        handle.create_dataset(key, **dataset)


# ----------------------------------------------------------------------------- sizes
def test_empty_chunked_weight_declaring_a_billion_values_is_refused_without_allocating(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/1/weight", shape=(100000, 10000), chunks=(100, 100), dtype="f4")
    assert path.stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(path, capsys, "/layer/1/weight", "(100000, 10000)")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing near 4 GB


def test_dataset_whose_chunks_were_never_written_is_refused(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/1/weight", shape=(16, 20), chunks=(4, 4), dtype="f4")
    _refused(path, capsys, "/layer/1/weight", "file holds 0 bytes")


def test_input_layer_declaring_a_billion_neurons(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/0/shape", data=np.array([10**9]))
    _refused(path, capsys, "layer 0", "1000000000")


def test_conv_with_a_huge_spatial_size(tmp_path, capsys):
    net = Network([InputLayer(shape=(1, 3000, 3000)),
                   ConvLayer(weight=np.ones((4, 1, 3, 3), np.int32), neuron=NEURON)])
    path = netx.write(net, tmp_path / "wide.net")
    _refused(path, capsys, "layer 1 (conv)", "(4, 2998, 2998)", "limit")


def test_one_dimensional_weight_with_a_huge_declared_shape(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/2/weight", data=np.ones(80, np.int32))
    _replace(path, "layer/2/shape", data=np.array([2**40]))
    _refused(path, capsys, "layer 2", str(2**40))


def test_one_dimensional_weight_that_does_not_split_into_the_outputs(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/2/weight", data=np.ones(81, np.int32))
    _refused(path, capsys, "layer 2", "81 values", "5 outputs")


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(tmp_path, capsys, bad):
    path = _small(tmp_path)
    weight = np.ones((16, 20), np.float32)
    weight[3, 4] = bad
    _replace(path, "layer/1/weight", data=weight)
    _refused(path, capsys, "layer 1", "weight", "non-finite")


def test_complex_weights_are_refused(tmp_path, capsys):
    path = _small(tmp_path)
    _replace(path, "layer/1/weight", data=np.ones((16, 20), np.complex64))
    _refused(path, capsys, "layer 1", "complex")


def test_missing_weight_says_so(tmp_path, capsys):
    path = _small(tmp_path)
    with h5py.File(path, "r+") as handle:
        del handle["layer/1/weight"]
    err = _refused(path, capsys, "layer 1 has no weight")
    assert "complex" not in err


@pytest.mark.parametrize("key, value, fragment", [
    ("vThMant", np.float64(np.nan), "non-finite"),
    ("iDecay", np.float64(np.inf), "non-finite"),
    ("vThMant", np.int64(2**62), f"outside [0, {MAX_V_TH_MANT}]"),
    ("vDecay", np.int64(5000), "outside [0, 4096]"),
    ("refDelay", np.int64(-1), "outside [0,"),
    ("vThMant", b"80", "text"),
])
def test_neuron_parameters_out_of_type_or_range(tmp_path, capsys, key, value, fragment):
    path = _small(tmp_path)
    _replace(path, f"layer/1/neuron/{key}", data=value)
    _refused(path, capsys, "layer 1", key, fragment)


def test_weights_beyond_the_chip_state_width_are_refused_not_wrapped(tmp_path, capsys):
    path = _small(tmp_path)
    weight = np.ones((16, 20), np.int64)
    weight[0, 0] = 2**40  # an int32 cast would wrap this to 0
    _replace(path, "layer/1/weight", data=weight)
    _refused(path, capsys, "layer 1", "weight", str(2**40), "24-bit")


def test_bias_beyond_the_voltage_width_is_refused(tmp_path, capsys):
    path = _small(tmp_path)
    with h5py.File(path, "r+") as handle:
        handle["layer/1"].create_dataset("bias", data=np.full(16, 2**20))
    _refused(path, capsys, "layer 1", "bias", str(2**20))


def test_non_contiguous_layer_indices_are_refused(tmp_path, capsys):
    path = _small(tmp_path)
    with h5py.File(path, "r+") as handle:
        handle.move("layer/2", "layer/5")
    _refused(path, capsys, "numbered 0..2", "without gaps")


def test_conv_stride_error_names_the_file_and_layer(tmp_path, capsys):
    net = Network([InputLayer(shape=(2, 8, 8)), ConvLayer(weight=np.ones((4, 2, 3, 3), np.int32), neuron=NEURON)])
    path = netx.write(net, tmp_path / "c.net")
    _replace(path, "layer/1/stride", data=np.array([0, 0]))
    _refused(path, capsys, "layer 1", "stride")


def test_corrupt_hdf5_metadata_is_one_line_error(tmp_path, capsys):
    """A flipped byte in the root group's header makes h5py raise RuntimeError mid-read."""
    path = _small(tmp_path)
    data = bytearray(path.read_bytes())
    data[112] = 0xFF
    path.write_bytes(bytes(data))
    _refused(path, capsys)


def test_valid_files_still_read(tmp_path, conv_net):
    path = netx.write(conv_net, tmp_path / "ok.net")
    assert netx.read(path).same_as(conv_net)
    tiny = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/tiny.net"
    if tiny.exists():  # lava-dl ships it with its tests
        assert [layer.kind for layer in netx.read(tiny)] == ["input", "conv", "conv"]
