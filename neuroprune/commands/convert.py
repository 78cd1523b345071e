"""``neuroprune convert IN OUT``: convert between network formats, picked by extension.

=========  ==================================================  ============================
extension  read                                                write
=========  ==================================================  ============================
``.net``   lava-dl netx HDF5                                   netx HDF5
``.nir``   NIR HDF5 graph (``nir.read``)                       NIR HDF5 graph
``.pt``    neuroprune model checkpoint (slayer SNN)            checkpoint (exact or refused)
``.onnx``  ANN, converted to an SNN with calibration data      the network's ANN-equivalent
           (``--data``, ``--steps``, ``--percentile``, ...)    graph (for Netron etc.)
=========  ==================================================  ============================

Exit codes: 0 written, 2 bad input (unknown extension, missing file, unsupported
conversion or layer).
"""

from __future__ import annotations

import argparse

from neuroprune.options import nonnegative_int, open_fraction, percentile, positive_float, positive_int
from pathlib import Path
from typing import Any

FORMATS = {".net": "netx HDF5", ".nir": "NIR HDF5", ".pt": "neuroprune checkpoint", ".onnx": "ONNX"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="network to read: .net, .nir, .pt or .onnx (an ANN to convert)")
    parser.add_argument("output", help="file to write: .net, .nir, .pt or .onnx (ANN-equivalent graph)")
    onnx = parser.add_argument_group("ONNX ANN -> SNN conversion (input .onnx)")
    onnx.add_argument("--data", default="digits",
                      help="calibration and evaluation data: digits, synthetic or a .npz file (default digits)")
    onnx.add_argument("--steps", type=positive_int, default=64, help="time steps of the SNN accuracy run (default 64)")
    onnx.add_argument("--percentile", type=percentile, default=99.9,
                      help="activation percentile that maps to one spike per step (default 99.9)")
    onnx.add_argument("--max-rate", type=open_fraction, default=0.5,
                      help="spikes per step at the percentile activation (default 0.5)")
    onnx.add_argument("--input-encoding", choices=("neuron", "graded"), default="neuron",
                      help="input neuron layer (any chip, default) or graded input into the first layer (Loihi 2)")
    onnx.add_argument("--input-rate", type=open_fraction, default=0.5,
                      help="input neuron spikes per step for an input of 1.0 (default 0.5)")
    onnx.add_argument("--seed", type=nonnegative_int, default=0, help="data split seed (default 0)")
    parser.add_argument("--dt", type=positive_float, default=None,
                        help="NIR: length of one chip time step in the graph's time unit (reading: default the "
                        "graph's dt metadata, else 1; writing: default 1e-4 s, the step snntorch reads)")


def _format(path: Path, role: str) -> str:
    from neuroprune.errors import FormatError

    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FormatError(
            f"{path}: unknown {role} extension {path.suffix or '(none)'!r}; use one of {', '.join(FORMATS)}"
        )
    return suffix


def _read_checkpoint(path: Path) -> Any:
    from neuroprune.snn import model as snn_model

    model, _ = snn_model.load_model(str(path))
    return snn_model.to_ir(model)


def _write_checkpoint(network: Any, path: Path) -> None:
    """Store ``network`` as a slayer model checkpoint, refusing what slayer cannot hold exactly."""
    import dataclasses

    from neuroprune.errors import UnsupportedLayerError
    from neuroprune.snn import model as snn_model

    try:
        model = snn_model.from_ir(network)
    except UnsupportedLayerError as err:
        raise UnsupportedLayerError(f"{path}: cannot store the network as a slayer checkpoint: {err}") from None
    back = snn_model.to_ir(model)
    differ = [index for index, (a, b) in enumerate(zip(network.layers, back.layers))
              if not dataclasses.replace(a, name="").same_as(dataclasses.replace(b, name=""))]
    if len(network) != len(back) or differ:
        where = f"layer {differ[0]} ({network[differ[0]].kind})" if differ else "the layer count"
        raise UnsupportedLayerError(
            f"{path}: cannot store the network as a slayer checkpoint exactly ({where} differs: slayer "
            "holds even weight mantissas in [-256, 254], no biases or pools, one neuron type); write .net or .nir"
        )
    snn_model.save_model(str(path), model, {"source": "neuroprune convert"})


def _read_onnx(path: Path, args: argparse.Namespace) -> Any:
    from converters import onnx as onnx_conv
    from neuroprune import data as data_module
    from neuroprune.errors import ShapeError

    if args.steps < 1:
        raise ShapeError(f"--steps={args.steps} must be >= 1")
    dataset = data_module.load(args.data, seed=args.seed)
    config = onnx_conv.ConversionConfig(percentile=args.percentile, input_rate=args.input_rate,
                                        max_rate=args.max_rate, input_encoding=args.input_encoding)
    conversion, error = onnx_conv.convert(path, dataset.x_train, config)
    ann_accuracy = float((conversion.ann.predict(dataset.x_test) == dataset.y_test).mean())
    snn_accuracy = conversion.accuracy(dataset.x_test, dataset.y_test, args.steps)
    print(f"{path}: ANN matches onnxruntime (max relative difference {error:.1e})")
    print(f"{dataset.name} test accuracy ({len(dataset.y_test)} samples): ANN {100 * ann_accuracy:.1f} %, "
          f"SNN {100 * snn_accuracy:.1f} % (fixed point, {args.steps} steps, {args.input_encoding} input)")
    if config.input_encoding == "neuron" and ann_accuracy - snn_accuracy > 0.03:
        print("hint: the input neuron layer quantizes analog input coarsely; --input-encoding graded "
              "(Loihi 2 graded spikes) usually recovers the ANN accuracy")
    print(f"chip input: mantissa round({onnx_conv.INPUT_SCALE} * x) every step, x in [0, 1]")
    return conversion.network


def run(args: argparse.Namespace) -> int:
    from converters import netx
    from converters import nir as nir_conv
    from converters import onnx as onnx_conv
    from neuroprune.errors import FormatError, UnsupportedLayerError
    from neuroprune.ir import require_lif
    from neuroprune.outputs import plan_outputs

    source, target = Path(args.input), Path(args.output)
    in_format, out_format = _format(source, "input"), _format(target, "output")
    if not source.is_file():
        raise FormatError(f"{source}: no such file")
    if in_format == ".onnx" and out_format == ".onnx":
        raise UnsupportedLayerError(
            f"{source} -> {target}: ONNX to ONNX is not a conversion; convert to .net, .nir or .pt"
        )
    plan_outputs({"OUTPUT": target}, {"INPUT": source, "--data": args.data})
    if in_format == ".net":
        network = netx.read(source)
    elif in_format == ".nir":
        network = nir_conv.read(source, dt=args.dt)
    elif in_format == ".pt":
        network = _read_checkpoint(source)
    else:
        network = _read_onnx(source, args)
    if out_format == ".pt":  # NIR and ONNX export refuse, per layer and neuron kind, what they have no form for
        require_lif(network, f"{FORMATS[out_format]} export")
    if out_format == ".net":
        netx.write(network, target)
    elif out_format == ".nir":
        nir_conv.write(network, target, dt=args.dt)
    elif out_format == ".pt":
        _write_checkpoint(network, target)
    else:
        onnx_conv.write(network, target)
    print(f"wrote {target} ({FORMATS[out_format]}): {len(network)} layers, {network.num_params} synapses, "
          f"input {network.input_shape}, output {network.output_shape}")
    return 0
