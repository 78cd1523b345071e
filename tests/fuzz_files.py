"""Seeded fuzzer of neuroprune's file readers (run by tests/test_fuzz_files.py).

``python tests/fuzz_files.py WORKDIR SEED COUNT`` writes real files -- netx networks from
our own writer and lava-dl's shipped ``tiny.net``, ONNX models from ``torch.onnx``, NIR
graphs from our exporter, npz data sets -- then derives ``COUNT`` mutated files from them,
at the byte level (flips, overwritten runs, truncation, insertion) and at the structure
level (HDF5: changed dtypes, shapes, values, deleted keys, renamed layers, chunked
datasets that declare huge shapes; ONNX: initializer dims and data, attributes, input
dims, op types; npz: label values and array shapes). Each file runs through its reader
and the fit / info path in this process. Prints one JSON object: files per kind, exit
codes, crashes (an exception that is not a neuroprune error, or a CLI exit outside
{0, 1, 2}), peak memory and time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import sys
import sysconfig
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroprune.errors import NeuropruneError  # noqa: E402

HUGE_INTS = [0, -1, 2**31, 2**62, -(2**63), 10**9, 100000]
SPECIAL_FLOATS = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e300]


# ----------------------------------------------------------------------------- bases
def _ir_networks() -> dict[str, Any]:
    from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer

    rng = np.random.default_rng(0)
    neuron = Neuron(i_decay=1024, v_decay=128, v_th_mant=80)

    def weights(shape: tuple[int, ...]) -> np.ndarray:
        return (rng.integers(-30, 60, size=shape) * 2).astype(np.int32)

    conv = Network([
        InputLayer(shape=(2, 8, 8), neuron=neuron),
        ConvLayer(weight=weights((4, 2, 3, 3)), neuron=neuron, padding=1, bias=np.arange(4, dtype=np.int32)),
        PoolLayer(kernel=2, weight=40, neuron=neuron),
        ConvLayer(weight=weights((6, 4, 3, 3)), neuron=neuron, stride=2, padding=1),
        FlattenLayer(),
        DenseLayer(weight=weights((3, 24)), neuron=neuron),
    ], name="conv")
    dense = Network([
        InputLayer(shape=(12,)),
        DenseLayer(weight=weights((8, 12)), neuron=neuron, delay=rng.integers(0, 4, size=8).astype(np.int32)),
        DenseLayer(weight=weights((4, 8)), neuron=Neuron(kind="LOIHI", i_decay=4096, v_decay=0, v_th_mant=40)),
    ], name="dense")
    return {"conv": conv, "dense": dense, "kinds": _every_kind(weights, neuron)}


def _every_kind(weights: Callable[[tuple[int, ...]], np.ndarray], lif: Any) -> Any:
    """One network with every layer kind and neuron type beyond CUBA conv/dense (netx only:
    NIR has no node for most of them)."""
    from neuroprune.ir import (AverageLayer, ComplexDenseLayer, ConcatLayer, ConvLayer, ConvTransposeLayer,
                               FlattenLayer, InputLayer, Network, Neuron, PoolLayer, RecurrentDenseLayer, UnpoolLayer)

    sdnn = Neuron(kind="SDNN", v_th_mant=4)
    rf = Neuron(kind="RF_PHASE", v_th_mant=2, sin_decay=900, cos_decay=3900)
    return Network([
        InputLayer(shape=(2, 6, 6), neuron=sdnn),
        ConvLayer(weight=weights((4, 2, 3, 3)), padding=1, neuron=sdnn),
        ConcatLayer(layers=(0,)),
        ConvTransposeLayer(weight=weights((6, 3, 2, 2)), stride=2, neuron=sdnn),
        PoolLayer(kernel=2, weight=40, neuron=lif),
        UnpoolLayer(kernel=2, weight=30, neuron=lif),
        FlattenLayer(),
        RecurrentDenseLayer(weight=weights((8, 432)), weight_rec=weights((8, 8)), neuron=lif),
        ComplexDenseLayer(weight=weights((6, 8)), weight_imag=weights((6, 8)), neuron=rf),
        AverageLayer(num_outputs=2),
    ], name="kinds")


def _onnx_models(folder: Path) -> list[Path]:
    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3))
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(12, 3),
    ).eval()
    paths = []
    for name, model, shape in (("mlp", mlp, (1, 16)), ("cnn", cnn, (1, 1, 4, 4))):
        path = folder / f"{name}.onnx"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(shape), str(path), input_names=["x"], output_names=["y"],
                              opset_version=17, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        paths.append(path)
    return paths


def make_bases(folder: Path) -> dict[str, list[Path]]:
    from converters import netx, nir

    folder.mkdir(parents=True, exist_ok=True)
    networks = _ir_networks()
    bases: dict[str, list[Path]] = {"netx": [], "nir": [], "onnx": [], "npz": []}
    for name, network in networks.items():
        bases["netx"].append(netx.write(network, folder / f"{name}.net"))
        if name != "kinds":
            bases["nir"].append(nir.write(network, folder / f"{name}.nir"))
    tiny = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/tiny.net"
    if tiny.exists():
        bases["netx"].append(Path(shutil.copy(tiny, folder / "tiny.net")))
    bases["onnx"] = _onnx_models(folder)
    rng = np.random.default_rng(0)
    x = rng.random((60, 16)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    np.savez(folder / "data.npz", x=x, y=y)
    np.savez(folder / "split.npz", x=x, y=y, x_test=x[:9], y_test=y[:9])
    bases["npz"] = [folder / "data.npz", folder / "split.npz"]
    return bases


# ----------------------------------------------------------------------------- byte level
def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        choice = rng.integers(5)
        pos = int(rng.integers(len(out))) if out else 0
        if choice == 0:  # flip bits
            out[pos] ^= 1 << int(rng.integers(8))
        elif choice == 1:  # overwrite a run with random bytes
            run = int(rng.integers(1, 32))
            out[pos:pos + run] = rng.integers(0, 256, size=run, dtype=np.uint8).tobytes()
        elif choice == 2:  # truncate
            del out[pos:]
        elif choice == 3:  # insert
            out[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        else:  # extreme byte values over a short run
            run = int(rng.integers(1, 9))
            out[pos:pos + run] = bytes([0xFF if rng.random() < 0.5 else 0x00]) * run
    return bytes(out)


# ----------------------------------------------------------------------------- HDF5
def _random_value(array: np.ndarray, rng: np.random.Generator) -> Any:
    choice = rng.integers(9)
    if choice == 0:
        return array.astype(np.float64) * np.float64(rng.choice(SPECIAL_FLOATS))
    if choice == 1:
        bad = array.astype(np.float64).copy()
        if bad.size:
            bad.reshape(-1)[int(rng.integers(bad.size))] = rng.choice(SPECIAL_FLOATS)
        return bad
    if choice == 2:
        return array.astype(np.complex64) if array.dtype.kind in "biuf" else np.complex64(1j)
    if choice == 3:
        return np.bytes_(b"80")
    if choice == 4:
        return np.full(array.shape, rng.choice(HUGE_INTS), dtype=np.int64)
    if choice == 5:
        return np.asarray(rng.choice(HUGE_INTS), dtype=np.int64)
    if choice == 6:  # another shape of the same values
        flat = np.asarray(array).reshape(-1)
        return flat if flat.ndim != array.ndim else flat[: max(flat.size - 1, 0)]
    if choice == 7:
        return np.zeros((0,) + tuple(np.asarray(array).shape[1:]), dtype=np.asarray(array).dtype)
    return np.asarray(array).astype(np.float16) if np.asarray(array).dtype.kind in "biuf" else np.float64(3.5)


def mutate_hdf5(path: Path, rng: np.random.Generator) -> None:
    import h5py

    with h5py.File(path, "r+") as handle:
        datasets: list[str] = []
        groups: list[str] = []
        handle.visititems(lambda name, item: (datasets if isinstance(item, h5py.Dataset) else groups).append(name))
        for _ in range(int(rng.integers(1, 3))):
            choice = rng.integers(7)
            if choice <= 2 and datasets:  # new value / dtype / shape
                name = datasets[int(rng.integers(len(datasets)))]
                if name not in handle:
                    continue
                if handle[name].size > 10**6:  # a huge declared shape left by an earlier mutation
                    continue
                old = handle[name][()]
                value = _random_value(np.asarray(old), rng)
                del handle[name]
                handle.create_dataset(name, data=value)
            elif choice == 3 and datasets:  # a chunked dataset that declares a huge shape and stores nothing
                name = datasets[int(rng.integers(len(datasets)))]
                if name not in handle:
                    continue
                del handle[name]
                dims = tuple(int(d) for d in rng.choice([1, 3, 100000, 10000, 2**20], size=int(rng.integers(1, 4))))
                handle.create_dataset(name, shape=dims, chunks=tuple(1 for _ in dims), dtype="f4")
            elif choice == 4 and (datasets or groups):  # delete a key
                names = datasets + groups
                name = names[int(rng.integers(len(names)))]
                if name in handle:
                    del handle[name]
            elif choice == 5 and groups:  # rename a group (layer numbering, node names)
                name = groups[int(rng.integers(len(groups)))]
                if name in handle:
                    parent = name.rsplit("/", 1)[0] if "/" in name else ""
                    new = f"{parent}/{int(rng.choice([7, -1, 99]))}" if parent else "junk"
                    if new not in handle:
                        handle.move(name, new)
            elif datasets:  # a dataset replaced by a group, or an attribute added
                name = datasets[int(rng.integers(len(datasets)))]
                if name in handle:
                    if rng.random() < 0.5:
                        del handle[name]
                        handle.create_group(name)
                    else:
                        handle[name].attrs["junk"] = np.nan


# ----------------------------------------------------------------------------- ONNX
def mutate_onnx(data: bytes, rng: np.random.Generator) -> bytes:
    import onnx
    from onnx import TensorProto

    model = onnx.ModelProto()
    model.ParseFromString(data)
    graph = model.graph
    for _ in range(int(rng.integers(1, 3))):
        choice = rng.integers(7)
        if choice == 0 and graph.initializer:  # declared dims
            init = graph.initializer[int(rng.integers(len(graph.initializer)))]
            if init.dims:
                init.dims[int(rng.integers(len(init.dims)))] = int(rng.choice([0, 100000, 2**31, 2**40]))
        elif choice == 1 and graph.initializer:  # NaN / inf / huge values
            init = graph.initializer[int(rng.integers(len(graph.initializer)))]
            array = onnx.numpy_helper.to_array(init).astype(np.float64)
            if array.size:
                array.reshape(-1)[int(rng.integers(array.size))] = rng.choice(SPECIAL_FLOATS)
            init.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), init.name))
        elif choice == 2 and graph.initializer:  # data type or truncated raw data
            init = graph.initializer[int(rng.integers(len(graph.initializer)))]
            if rng.random() < 0.5:
                init.data_type = int(rng.choice([TensorProto.COMPLEX64, TensorProto.STRING, TensorProto.INT8,
                                                 TensorProto.DOUBLE, TensorProto.BOOL]))
            else:
                init.raw_data = init.raw_data[: len(init.raw_data) // 2]
        elif choice == 3 and graph.node:  # attributes
            node = graph.node[int(rng.integers(len(graph.node)))]
            for attribute in node.attribute:
                if attribute.ints:
                    attribute.ints[int(rng.integers(len(attribute.ints)))] = int(rng.choice(HUGE_INTS))
                elif attribute.type == onnx.AttributeProto.INT:
                    attribute.i = int(rng.choice(HUGE_INTS))
                elif attribute.type == onnx.AttributeProto.FLOAT:
                    attribute.f = float(rng.choice(SPECIAL_FLOATS))
        elif choice == 4 and graph.input:  # input dims
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims) > 1:
                dims[int(rng.integers(1, len(dims)))].dim_value = int(rng.choice([0, 10**9, 2**40, 1]))
        elif choice == 5 and graph.node:  # delete a node or change its op type
            index = int(rng.integers(len(graph.node)))
            if rng.random() < 0.5:
                del graph.node[index]
            else:
                graph.node[index].op_type = str(rng.choice(["Relu", "Gemm", "Conv", "MaxPool", "Flatten", "Foo"]))
        elif graph.initializer:  # delete an initializer
            del graph.initializer[int(rng.integers(len(graph.initializer)))]
    return model.SerializeToString()


# ----------------------------------------------------------------------------- npz
def mutate_npz(path: Path, rng: np.random.Generator) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = str(rng.choice(sorted(arrays)))
    choice = rng.integers(8)
    value = arrays[key]
    if choice == 0:
        value = value.astype(np.int64)
        value[int(rng.integers(len(value)))] = rng.choice([10**6, np.iinfo(np.int64).max, -5])
    elif choice == 1:
        value = value.astype(np.uint64)
        value[0] = np.iinfo(np.uint64).max
    elif choice == 2:
        value = value.astype(np.float64)
        value.reshape(-1)[0] = rng.choice(SPECIAL_FLOATS)
    elif choice == 3:
        value = value[: int(rng.integers(0, 4))]
    elif choice == 4:
        value = np.arange(len(value))  # one sample per class
    elif choice == 5:
        value = value.reshape(len(value), -1, 1) if value.ndim else value
    elif choice == 6:
        value = value.astype(np.complex64)
    else:
        arrays.pop(key)
    if key in arrays or choice != 7:
        arrays[key] = value
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------- running
def _peak_kib() -> int:
    """Peak resident memory of this process in KiB: Linux's VmHWM, which starts afresh
    at exec (``ru_maxrss`` keeps the peak of the process that forked this one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Crash(Exception):
    pass


def _call(function: Callable[[], Any]) -> tuple[int, str]:
    """Run one reader / command: ('exit code', 'problem' or '')."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = function()
    except NeuropruneError:
        return 2, ""
    except SystemExit as exit_:
        code = exit_.code
    except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return -1, "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300] + " @ " + \
            traceback.extract_tb(exc.__traceback__)[-1].filename.split("/")[-1] + ":" + \
            str(traceback.extract_tb(exc.__traceback__)[-1].lineno)
    code = 0 if code is None else int(code) if isinstance(code, int) else 2
    if "Traceback" in err.getvalue():
        return -1, "traceback printed: " + err.getvalue()[-300:]
    if code not in (0, 1, 2):
        return code, f"exit code {code}"
    return code, ""


def _run_netx(path: Path, heavy: bool) -> list[tuple[int, str]]:
    """Every third file through the CLI (``fit --json`` and ``info``), the others through
    the reader and the fit report the ``fit`` command prints (the CLI's argument parser
    costs more than reading a small file)."""
    from converters import netx
    from neuroprune.cli import main

    if heavy:
        return [_call(lambda: main(["fit", str(path), "--json"])), _call(lambda: main(["info", str(path)]))]
    return [_call(lambda: _fit_network(netx.read(path)))]


def _fit_network(network: Any) -> int:
    from hw_models.chip import load_chip
    from hw_models.report import fit

    report = fit(network, load_chip("loihi2"))
    report.to_json()
    return 0 if report.ok else 1


def _chain(steps: list[Callable[[Any], Any]]) -> list[tuple[int, str]]:
    """Run ``steps`` in turn, each on the previous one's result, until one fails."""
    results: list[tuple[int, str]] = []
    value: Any = None
    for step in steps:
        holder: dict[str, Any] = {}

        def run(step: Callable[[Any], Any] = step, previous: Any = value, holder: dict[str, Any] = holder) -> int:
            holder["value"] = result = step(previous)
            return result if isinstance(result, int) else 0  # the fit's 0 / 1, else success

        results.append(_call(run))
        if "value" not in holder:
            break
        value = holder["value"]
    return results


def _run_nir(path: Path, heavy: bool) -> list[tuple[int, str]]:
    from converters import nir

    return _chain([lambda _: nir.read(path), _fit_network])


def _to_snn(ann: Any) -> Any:
    from converters import onnx as onnx_converter

    calibration = np.random.default_rng(0).random((4, *ann.input_shape)).astype(np.float32)
    return onnx_converter.to_snn(ann, calibration).network


def _run_onnx(path: Path, heavy: bool) -> list[tuple[int, str]]:
    from converters import onnx as onnx_converter

    return _chain([lambda _: onnx_converter.read_ann(path)] + ([_to_snn, _fit_network] if heavy else []))


def _run_npz(path: Path, heavy: bool) -> list[tuple[int, str]]:
    from neuroprune import data

    return [_call(lambda: data.load_npz(path) and 0)]


RUNNERS = {"netx": _run_netx, "nir": _run_nir, "onnx": _run_onnx, "npz": _run_npz}
SHARES = {"netx": 0.4, "nir": 0.2, "onnx": 0.25, "npz": 0.15}


def fuzz(folder: Path, seed: int, count: int, trace: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    bases = make_bases(folder / "bases")
    rss_after_bases = _peak_kib()
    for kind, paths in bases.items():  # warm the imports; the originals must pass
        for path in paths:
            for code, problem in RUNNERS[kind](path, True):
                if problem or code not in (0, 1):
                    raise RuntimeError(f"base file {path} fails: {code} {problem}")
    rss_warm = _peak_kib()
    rng = np.random.default_rng(seed)
    work = folder / "mutants"
    work.mkdir(exist_ok=True)
    files = {kind: 0 for kind in RUNNERS}
    exits: dict[str, int] = {}
    crashes: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for number in range(count):
        kind = str(rng.choice(list(SHARES), p=list(SHARES.values())))
        base = bases[kind][int(rng.integers(len(bases[kind])))]
        path = work / f"m{number}{base.suffix}"
        structural = rng.random() < 0.6
        try:
            if kind in ("netx", "nir") and structural:
                shutil.copy(base, path)
                mutate_hdf5(path, rng)
            elif kind == "onnx" and structural:
                path.write_bytes(mutate_onnx(base.read_bytes(), rng))
            elif kind == "npz" and structural:
                shutil.copy(base, path)
                mutate_npz(path, rng)
            else:
                path.write_bytes(mutate_bytes(base.read_bytes(), rng))
        except Exception:  # noqa: BLE001 - a mutation the file format refused to store: use bytes
            path.write_bytes(mutate_bytes(base.read_bytes(), rng))
        files[kind] += 1
        if trace:
            print(path, kind, base.name, structural, file=sys.stderr, flush=True)
        rss_before, began = _peak_kib(), time.perf_counter()
        results = RUNNERS[kind](path, number % 3 == 0)
        grown = (_peak_kib() - rss_before) / 1024
        seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - began
        if grown > 64:
            results.append((-1, f"peak memory grew by {grown:.0f} MiB"))
        for code, problem in results:
            exits[str(code)] = exits.get(str(code), 0) + 1
            if problem:
                crashes.append({"file": str(path), "kind": kind, "base": base.name, "structural": structural,
                                "problem": problem})
        if (not crashes or crashes[-1]["file"] != str(path)) and not trace:
            path.unlink()
    peak = _peak_kib()
    return {
        "seed": seed,
        "files": files,
        "total_files": sum(files.values()),
        "exits": exits,
        "crashes": crashes,
        "seconds": round(time.perf_counter() - start, 2),
        "seconds_per_kind": {kind: round(value, 2) for kind, value in seconds.items()},
        "max_rss_mib": round(peak / 1024, 1),
        "rss_after_bases_mib": round(rss_after_bases / 1024, 1),
        "rss_growth_while_fuzzing_mib": round((peak - rss_warm) / 1024, 1),
    }


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report = fuzz(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), trace="--trace" in sys.argv)
    print(json.dumps(report))
