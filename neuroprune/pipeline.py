"""Glue shared by the commands (train, prune, demo): load a trained model with its data
and recipe, measure it on the chip's terms, prune it and write the results."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from converters import netx
from hw_models import DEFAULT_TIME_STEPS, Constraints, fit
from neuroprune.atomic import atomic_paths
from neuroprune.data import Dataset, load
from neuroprune.errors import CheckpointError, PruneError
from neuroprune.prune.base import Measurement, Measurer, PruneTask, write_summary
from neuroprune.snn import model as snn_model
from neuroprune.snn.evaluate import chip_inputs
from neuroprune.snn.fixed import run_fixed
from neuroprune.snn.train import TrainConfig

__all__ = ["Trained", "load_trained", "fixed_point_accuracy", "prune_and_report", "print_table",
           "write_model_files", "companion_mismatches", "prune_outputs"]


@dataclass
class Trained:
    """A trained model with the data set and training recipe it came from."""

    model: snn_model.SNN
    dataset: Dataset
    config: TrainConfig
    meta: dict[str, Any]


def load_trained(path: str, data: str | None = None, seed: int = 0, resize: int | None = None) -> Trained:
    """Load a checkpoint from ``neuroprune train`` and the data set it names (or ``data``),
    resized as in training (the checkpoint's ``resize``) unless ``resize`` is given."""
    from neuroprune.resize import resize_dataset

    model, meta = snn_model.load_model(path)
    for problem in companion_mismatches(path, meta):  # the model is sound; its companions may be stale
        print(f"warning: {problem}: an interrupted run left files of two runs side by side; re-export the "
              f"netx file with `neuroprune convert {path} OUT.net`", file=sys.stderr)
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in meta.get("config", {}).items() if k in config_fields})
    name = data or meta.get("dataset")
    if name is None:
        raise CheckpointError(f"{path}: the checkpoint does not name its data set; pass --data")
    dataset = load(name, seed=meta.get("data_seed", seed) if data is None else seed)
    dataset = resize_dataset(dataset, resize if resize is not None else meta.get("resize"))
    if tuple(dataset.input_shape) != tuple(model.input_shape):
        raise CheckpointError(
            f"{path}: the model takes inputs of shape {tuple(model.input_shape)}, data set {name!r} has "
            f"{tuple(dataset.input_shape)}; pass the --data (and --resize) it was trained on"
        )
    return Trained(model=model, dataset=dataset, config=config, meta=meta)


def fixed_point_accuracy(model: snn_model.SNN, x: np.ndarray, y: np.ndarray, config: TrainConfig,
                         batch_size: int = 256) -> float:
    """Accuracy of the bit-exact chip model (what Lava computes) on ``(x, y)``."""
    network = snn_model.to_ir(model)
    correct = 0
    for start in range(0, len(y), batch_size):
        spikes = run_fixed(network, chip_inputs(model, x[start:start + batch_size], config)).output()
        predictions = spikes.to(torch.int64).sum(dim=-1).argmax(dim=1).numpy()
        correct += int((predictions == y[start:start + batch_size]).sum())
    return correct / len(y)


def print_table(title: str, rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prune_outputs(out: Path) -> dict[str, Path]:
    """The files ``neuroprune prune --out OUT`` writes: model, netx export, summary."""
    return {"--out": out, "--out (netx export)": out.with_suffix(".net"),
            "--out (summary)": out.with_suffix(".json")}


def write_model_files(path: Path, model: snn_model.SNN, meta: dict[str, Any], *, net_path: Path | None = None,
                      summary: dict[str, Any] | None = None, summary_path: Path | None = None) -> None:
    """Write a model checkpoint with its netx export and JSON summary as one group.

    All files go to temporary names first; only when every one is complete are they
    renamed, companions first and the checkpoint (what the commands load) last. The
    checkpoint's meta records each companion's SHA-256 (``companions``), so
    :func:`companion_mismatches` can tell when a kill between two renames left files of
    two runs side by side.
    """
    companions = [p for p in (net_path, summary_path) if p is not None]
    with atomic_paths([*companions, path]) as temps:
        temp_of = dict(zip(companions, temps))
        records = {}
        if net_path is not None:
            netx.write(snn_model.to_ir(model), temp_of[net_path])
            records["net"] = {"file": net_path.name, "sha256": _sha256(temp_of[net_path])}
        if summary_path is not None:
            write_summary(temp_of[summary_path], summary or {})
            records["summary"] = {"file": summary_path.name, "sha256": _sha256(temp_of[summary_path])}
        snn_model.save_model(str(temps[-1]), model, {**meta, "companions": records})


def companion_mismatches(path: str | Path, meta: dict[str, Any] | None = None) -> list[str]:
    """Companion files of the checkpoint ``path`` that are missing or not the ones
    written with it (empty: the group is consistent). ``meta``: the checkpoint's meta
    when already loaded (else it is read from ``path``)."""
    from neuroprune.snn.checkpoint import load_checkpoint

    path = Path(path)
    if meta is None:
        _, meta = load_checkpoint(path)
    problems = []
    for role, record in (meta.get("companions") or {}).items():
        companion = path.with_name(record["file"])
        if not companion.is_file():
            problems.append(f"{companion}: missing ({role} written with {path.name})")
        elif _sha256(companion) != record["sha256"]:
            problems.append(f"{companion}: not the {role} written with {path.name} (SHA-256 differs)")
    return problems


def make_task(trained: Trained, args: argparse.Namespace) -> PruneTask:
    constraints = None
    if args.max_cores is not None or args.max_chips is not None or args.chip:
        constraints = Constraints.from_chip(args.chip, max_cores=args.max_cores, max_chips=args.max_chips)
    return PruneTask(
        dataset=trained.dataset, train=trained.config, synops_target=args.synops_target, sparsity=args.sparsity,
        constraints=constraints, finetune_steps=args.finetune_steps, eval_samples=args.eval_samples, seed=args.seed,
        calibration_samples=getattr(args, "calibration_samples", None),
    )


def check_prune_options(args: argparse.Namespace) -> Any:
    """Refuse bad ``neuroprune prune`` options before any model or data is loaded:
    the method and its target, the importance criterion, the chip and its budgets, and
    the method's own config. Returns the method's registry entry."""
    from neuroprune.prune.importance import get_criterion
    from neuroprune.prune.methods import get_method

    method = get_method(args.method)
    if method.needs == "synops" and args.synops_target is None:
        raise PruneError(f"method {args.method} needs --synops-target (a fraction such as 0.5)")
    if method.needs == "sparsity" and args.sparsity is None:
        raise PruneError(f"method {args.method} needs --sparsity (a fraction such as 0.75)")
    if getattr(args, "criterion", None) is not None:
        get_criterion(args.criterion)
    Constraints.from_chip(args.chip, max_cores=args.max_cores, max_chips=args.max_chips)
    method.config(args)
    return method


def prune_and_report(trained: Trained, args: argparse.Namespace, out: Path, *,
                     dense_test: Measurement | None = None,
                     measurements: dict[str, Measurement] | None = None) -> dict[str, Any]:
    """Run ``args.method``, measure before/after on the test split, write model, netx
    and summary; print the outcome. Returns the summary.

    ``dense_test``: the dense model's test-split measurement when already known (it is
    the same for every method). ``measurements``, when given, receives the test-split
    measurements ``"dense"`` and ``"pruned"`` (per-sample ``correct`` for paired tests)."""
    method = check_prune_options(args)
    task = make_task(trained, args)
    torch.manual_seed(args.seed)
    result = method.run(trained.model, task, args)
    test = Measurer(trained.dataset, trained.config, "test")
    dense = dense_test if dense_test is not None else test.measure(trained.model)
    pruned = test.measure(result.model)
    if measurements is not None:
        measurements.update(dense=dense, pruned=pruned)
    network = snn_model.to_ir(result.model)
    report = fit(network, task.constraints.chip if task.constraints else args.chip, pruned.activity.rates,
                 time_steps=pruned.activity.steps)
    net_path, summary_path = out.with_suffix(".net"), out.with_suffix(".json")
    summary = {
        "method": args.method,
        "target": task.synops_target if task.synops_target is not None else task.sparsity,
        "target_kind": "synops_ratio" if task.synops_target is not None else "sparsity",
        "synops_dense": dense.synops,
        "synops_pruned": pruned.synops,
        "synops_ratio": pruned.synops / dense.synops if dense.synops else 0.0,
        "acc_dense": dense.accuracy,
        "acc_pruned": pruned.accuracy,
        "fits": report.ok,
        "cores": report.totals.cores,
        "chip": report.chip.name,
        "max_cores": task.constraints.max_cores if task.constraints else None,
        "params_dense": dense.params,
        "params_pruned": pruned.params,
        "nonzero_dense": dense.nonzero,
        "nonzero_pruned": pruned.nonzero,
        "sparsity": 1.0 - pruned.nonzero / dense.nonzero if dense.nonzero else 0.0,
        "seed": args.seed,
        "model": str(out),
        "netx": str(net_path),
        "info": result.info,
    }
    write_model_files(out, result.model, {
        **{k: v for k, v in trained.meta.items() if k != "model"},
        "pruned": {"method": args.method, "source": str(args.model)},
    }, net_path=net_path, summary=summary, summary_path=summary_path)
    print_table(
        f"{args.method}: {Path(args.model).name} -> {out.name}",
        [
            ("SynOps / inference", f"{dense.synops:,.0f}", f"{pruned.synops:,.0f}", f"{summary['synops_ratio']:.3f}"),
            ("test accuracy", f"{dense.accuracy:.4f}", f"{pruned.accuracy:.4f}", f"{pruned.accuracy - dense.accuracy:+.4f}"),
            ("parameters", f"{dense.params:,}", f"{pruned.params:,}", f"{pruned.params / max(dense.params, 1):.3f}"),
            ("non-zero synapses", f"{dense.nonzero:,}", f"{pruned.nonzero:,}", f"{pruned.nonzero / max(dense.nonzero, 1):.3f}"),
        ],
        ("", "dense", "pruned", "ratio / change"),
    )
    fit_text = "fits" if report.ok else f"does NOT fit ({len(report.violations)} violations)"
    print(f"{report.chip.name}: {fit_text}, {report.totals.cores} cores; wrote {out}, {net_path}, {summary_path}")
    return summary


# ----------------------------------------------------------------------------- energy
@dataclass
class NetRun:
    """A network with chip inputs (and labels when known) for counting and accuracy."""

    label: str
    network: Any  # neuroprune.ir.Network
    x_int: np.ndarray  # (N, *input_shape, T) chip input integers
    y: np.ndarray | None = None


def _direct_mantissas(x: np.ndarray) -> np.ndarray:
    """Analog input in [0, 1] as an input neuron layer receives it (slayer's 8-bit input
    quantizer: step 2/64, then x 64)."""
    return (np.clip(np.round(x * 32.0), -128, 127) * 2).astype(np.int64)


def load_net_run(path: str, data: str | None, samples: int, steps: int | None, seed: int = 0,
                 label: str | None = None) -> NetRun:
    """Inputs for a ``.pt`` model (its own data and encoding) or a ``.net`` file
    (``data``: digits, synthetic, a .npz with x, y, or a .npy of chip-input integers;
    none: seeded random input)."""
    from converters import lava_verify
    from neuroprune.errors import DataError

    label = label or Path(path).stem
    if str(path).endswith(".pt"):
        trained = load_trained(path, data=data, seed=seed)
        config = trained.config if steps is None else dataclasses.replace(trained.config, steps=steps)
        x, y = trained.dataset.x_test[:samples], trained.dataset.y_test[:samples]
        return NetRun(label, snn_model.to_ir(trained.model), chip_inputs(trained.model, x, config).numpy(), y)
    network = netx.read(path)
    steps = steps or DEFAULT_TIME_STEPS
    if data is None:
        return NetRun(label, network, lava_verify.random_input(network, steps, samples, seed))
    if data.endswith(".npy"):
        try:
            x_int = np.load(data, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{data}: not a readable .npy array ({err})") from None
        if tuple(x_int.shape[1:-1]) != network.input_shape:
            raise DataError(f"{data}: inputs of shape {tuple(x_int.shape[1:-1])}, the network takes "
                            f"{network.input_shape}; give (samples, *input_shape, steps) integers")
        return NetRun(label, network, x_int[:samples].astype(np.int64))
    dataset = load(data, seed=seed)
    if tuple(dataset.input_shape) != network.input_shape:
        raise DataError(f"data set {data!r} has inputs of shape {tuple(dataset.input_shape)}, the network takes "
                        f"{network.input_shape}")
    x, y = dataset.x_test[:samples], dataset.y_test[:samples]
    repeated = np.repeat(x[..., None], steps, axis=-1)
    if network[0].neuron is not None:
        x_int = _direct_mantissas(repeated)
    else:
        x_int = (np.random.default_rng(seed).random(repeated.shape) < repeated).astype(np.int64)
    return NetRun(label, network, x_int, y)


def chip_rates(run: NetRun, source: str = "model") -> tuple[dict[int, np.ndarray], float | None]:
    """Spike rates per layer (messages per neuron per step: spikes, or non-zero graded
    payloads) counted by our bit-exact model or by Lava, and the accuracy when labels are known."""
    from converters import lava_verify

    steps = run.x_int.shape[-1]
    if source == "lava":
        with_path = netx.write(run.network, Path(_tmpdir()) / f"{run.label}.net")
        per_sample = [lava_verify.run_lava(with_path, run.network, sample) for sample in run.x_int]
        spikes = {i: np.stack([s[i] for s in per_sample]).astype(np.int64) for i in per_sample[0]}
    elif source == "model":
        spikes = {i: s.numpy().astype(np.int64) for i, s in run_fixed(run.network, run.x_int).spikes.items()}
    else:
        raise CheckpointError(f"unknown count source {source!r}; use 'model' or 'lava'")
    # messages, not payloads: a graded spike counts once when its payload is non-zero
    rates = {i: (s != 0).sum(axis=(0, s.ndim - 1)) / (s.shape[0] * steps) for i, s in spikes.items()}
    if 0 not in rates:
        rates[0] = (run.x_int > 0).sum(axis=(0, run.x_int.ndim - 1)) / (run.x_int.shape[0] * steps)
    accuracy = None
    if run.y is not None:
        output = spikes[max(spikes)].sum(axis=-1)
        accuracy = float((output.argmax(axis=1) == run.y).mean())
    return rates, accuracy


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="neuroprune-")
