"""Hostile and broken netx files: every one is refused with one line naming the file, the
layer, the value and the limit (exit 2), before anything large is allocated."""

from __future__ import annotations

import json
import resource
import sysconfig
from pathlib import Path

import h5py
import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.errors import FormatError
from neuroprune.ir import MAX_V_TH_MANT, ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron

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


# ----------------------------------------------------------------------------- NIR
def _nir_file(tmp_path: Path) -> Path:
    from converters import nir

    net = Network([
        InputLayer(shape=(12,)),
        DenseLayer(weight=np.full((8, 12), 4, np.int32), neuron=NEURON),
        DenseLayer(weight=np.full((4, 8), 2, np.int32), neuron=NEURON),
    ])
    return nir.write(net, tmp_path / "g.nir")


def _nir_refused(path: Path, *fragments: str) -> str:
    from converters import nir

    with pytest.raises(FormatError) as info:
        nir.read(path)
    text = str(info.value)
    assert "\n" not in text
    for fragment in (str(path), *fragments):
        assert fragment in text, (fragment, text)
    return text


@pytest.mark.parametrize("key, value, fragment", [
    ("dense1/weight", np.full((8, 12), np.nan), "weight"),
    ("dense1/weight", np.full((8, 12), np.inf), "weight"),
    ("dense1.lif/v_threshold", np.full(8, np.nan), "v_threshold"),
    ("dense2.lif/v_leak", np.full(4, -np.inf), "v_leak"),
])
def test_nir_non_finite_parameters_are_refused(tmp_path, key, value, fragment):
    path = _nir_file(tmp_path)
    _replace(path, f"node/nodes/{key}", data=value)
    _nir_refused(path, fragment, "non-finite")


def test_nir_string_typed_parameter_is_refused(tmp_path):
    path = _nir_file(tmp_path)
    _replace(path, "node/nodes/dense1.lif/v_threshold", data=np.array([b"80"] * 8))
    _nir_refused(path, "v_threshold", "text")


def test_nir_declared_huge_dataset_is_refused_before_nir_reads_it(tmp_path):
    path = _nir_file(tmp_path)
    _replace(path, "node/nodes/dense1/weight", shape=(100000, 100000), chunks=(10, 10), dtype="f4")
    _nir_refused(path, "dense1/weight", "(100000, 100000)")


def test_nir_input_declaring_a_billion_neurons(tmp_path):
    path = _nir_file(tmp_path)
    _replace(path, "node/nodes/input0/shape", data=np.array([10**9]))
    _nir_refused(path, "1000000000", "limit")


def test_nir_graph_shape_error_names_the_file(tmp_path):
    path = _nir_file(tmp_path)
    _replace(path, "node/nodes/dense2/weight", data=np.full((4, 9), 2.0, np.float32))
    from converters import nir

    with pytest.raises(Exception) as info:
        nir.read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- ONNX
def _onnx_file(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 6), str(path), input_names=["x"], output_names=["y"], opset_version=17)
    return path


def _edit_onnx(path: Path, edit) -> None:
    import onnx

    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))


def _onnx_refused(path: Path, *fragments: str) -> None:
    from converters import onnx as onnx_converter

    with pytest.raises(FormatError) as info:
        onnx_converter.read_ann(path)
    text = str(info.value)
    for fragment in (str(path), *fragments):
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_onnx_non_finite_weights_are_refused(tmp_path, bad):
    import onnx

    path = _onnx_file(tmp_path)

    def edit(model):
        init = model.graph.initializer[0]
        array = onnx.numpy_helper.to_array(init).copy()
        array.reshape(-1)[0] = bad
        init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))

    _edit_onnx(path, edit)
    _onnx_refused(path, "non-finite")


def test_onnx_complex_weights_are_refused(tmp_path):
    import onnx

    path = _onnx_file(tmp_path)

    def edit(model):
        init = model.graph.initializer[0]
        array = onnx.numpy_helper.to_array(init).astype(np.complex64)
        init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))

    _edit_onnx(path, edit)
    _onnx_refused(path, "COMPLEX64")


def test_onnx_weight_declaring_more_values_than_it_holds(tmp_path):
    path = _onnx_file(tmp_path)
    _edit_onnx(path, lambda model: model.graph.initializer[0].dims.__setitem__(0, 2**31))
    _onnx_refused(path, str(2**31), "limit")
    path = _onnx_file(tmp_path)
    _edit_onnx(path, lambda model: model.graph.initializer[0].dims.__setitem__(0, 7))
    _onnx_refused(path, "does not match the data it holds")


def test_onnx_input_declaring_a_billion_values(tmp_path):
    path = _onnx_file(tmp_path)
    _edit_onnx(path, lambda model: setattr(model.graph.input[0].type.tensor_type.shape.dim[1], "dim_value", 10**9))
    _onnx_refused(path, "1000000000", "limit")


def test_onnx_conversion_refuses_activations_that_overflow(tmp_path):
    import onnx

    from converters import onnx as onnx_converter

    path = _onnx_file(tmp_path)

    def edit(model):
        for init in model.graph.initializer:
            array = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(np.full_like(array, 3e38), init.name))

    _edit_onnx(path, edit)
    ann = onnx_converter.read_ann(path)
    with pytest.raises(FormatError, match="non-finite"):
        onnx_converter.to_snn(ann, np.ones((4, 6), np.float32))


def test_global_heap_that_would_hang_libhdf5_is_refused(tmp_path):
    """A variable-length string (the neuron type) whose global heap object claims 132
    bytes instead of 4: libhdf5 then walks the heap forever. Run in a child process so a
    regression fails on the timeout instead of hanging the suite."""
    import subprocess
    import sys

    path = _small(tmp_path)
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL\x01")
    assert heap > 0 and data[heap + 24] == 4  # object 1 ("CUBA") of the first collection: 4 bytes
    data[heap + 24] = 0x84
    path.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "neuroprune.cli", "info", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}: global heap") and "Traceback" not in result.stderr


def test_variable_length_string_declaring_two_gigabytes_is_refused_before_libhdf5_allocates(tmp_path, capsys):
    path = _small(tmp_path)
    with h5py.File(path, "r") as handle:
        offset = handle["layer/1/neuron/type"].id.get_offset()
    data = bytearray(path.read_bytes())
    assert int.from_bytes(data[offset:offset + 4], "little") == 4  # "CUBA"
    data[offset:offset + 4] = (2**31 + 7).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(path, capsys, "/layer/1/neuron/type", str(2**31 + 7))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_fit_costs_a_wide_conv_in_bounded_memory(tmp_path, capsys):
    """Within the per-layer limit: 2x298x298 outputs on 300x300 inputs. Costing it core
    block by core block against every input once needed a table of ~54M cells (about
    1 GiB); the shared-weight coster settles windows per row run instead."""
    net = Network([InputLayer(shape=(1, 300, 300)),
                   ConvLayer(weight=np.ones((2, 1, 3, 3), np.int32), neuron=NEURON), FlattenLayer(),
                   DenseLayer(weight=np.ones((3, 2 * 298 * 298), np.int32), neuron=NEURON)])
    path = netx.write(net, tmp_path / "wide.net")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["fit", str(path), "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["layers"][1]["neurons"] == 2 * 298 * 298
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400 * 1024  # KiB
