"""The end-to-end demo: train -> fit check -> SPEAR -> netx -> Lava -> energy report.

``neuroprune demo`` (what ``make demo`` runs) calls :func:`run_demo` on scikit-learn's
digits with the defaults below; the notebook and the tests call it with smaller
settings. Every stage prints what it did; the last line says where the report is.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from neuroprune.options import nonnegative_int, positive_int

__all__ = ["DemoConfig", "DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (defaults: digits, about 3-5 minutes on a 2-core CPU)."""

    data: str = "digits"
    arch: str = "c24,c32s2,f"
    epochs: int = 20
    steps: int = 16
    chip: str = "loihi1"
    core_margin: int = 1  # the budget is the dense net's cores minus this (5 - 1 = 4 on loihi1)
    synops_target: float = 0.5
    episodes: int = 30
    warmup: int = 10
    lre_samples: int = 8
    lre_finetune_steps: int = 60
    recovery_steps: int = 8
    finetune_steps: int = 200
    hidden: int = 128
    verify_samples: int = 3
    energy_samples: int = 64
    compare_uniform: bool = True
    seed: int = 0


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _stage(log: Callable[[str], None], timings: dict[str, float], name: str, start: float) -> float:
    now = time.perf_counter()
    timings[name] = now - start
    log(f"[{name}] done in {now - start:.1f} s")
    return now


def run_demo(out_dir: str | Path = "out/demo", config: DemoConfig = DemoConfig(),
             log: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """Run the whole pipeline and write models, netx files, summaries and the report."""
    import torch

    from converters import lava_verify
    from hw_models import Constraints, fit
    from hw_models.energy_report import energy_table
    from neuroprune.data import load
    from neuroprune.errors import NeuropruneError
    from neuroprune.pipeline import NetRun, chip_inputs, chip_rates, fixed_point_accuracy, write_model_files
    from neuroprune.prune.base import Measurer, PruneTask, synops_inputs
    from neuroprune.prune.spear import SpearConfig, spear
    from neuroprune.prune.uniform import uniform
    from neuroprune.report import MethodPoint, ReportEntry, write_html
    from neuroprune.snn import model as snn_model
    from neuroprune.snn.train import TrainConfig, evaluate, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    torch.manual_seed(config.seed)

    # 1. train ------------------------------------------------------------------------
    dataset = load(config.data, seed=config.seed)
    train_config = TrainConfig(epochs=config.epochs, steps=config.steps, seed=config.seed)
    log(f"[train] {config.arch} + classifier on {dataset.name} ({len(dataset.y_train)} training samples, "
        f"{config.steps} time steps, {config.epochs} epochs)")
    model = snn_model.build(config.arch, dataset.input_shape, num_classes=dataset.num_classes, seed=config.seed,
                            name="dense")
    train(model, dataset, train_config, progress=progress)
    float_acc = evaluate(model, dataset.x_test, dataset.y_test, train_config).accuracy
    fixed_acc = fixed_point_accuracy(model, dataset.x_test, dataset.y_test, train_config)
    meta = {"dataset": config.data, "data_seed": config.seed, "config": train_config.to_dict()}
    dense_net = out / "dense.net"
    write_model_files(out / "dense.pt", model, meta, net_path=dense_net)
    log(f"[train] test accuracy {float_acc:.4f} (float) / {fixed_acc:.4f} (fixed point, as on chip); "
        f"wrote {out / 'dense.pt'}, {dense_net}")
    clock = _stage(log, timings, "train", clock)

    # 2. fit check on a constrained budget ---------------------------------------------
    measurer = Measurer(dataset, train_config, "test")
    dense = measurer.measure(model)
    network = snn_model.to_ir(model)
    free = fit(network, config.chip, dense.activity.rates, time_steps=config.steps)
    budget = max(free.totals.cores - config.core_margin, 1)
    constrained = fit(network, config.chip, dense.activity.rates, time_steps=config.steps, max_cores=budget)
    log(f"[fit] dense net on {config.chip}: {free.totals.cores} cores, {free.totals.synops_per_step:,.0f} SynOps "
        f"per step (measured activity); budget {budget} cores -> {'fits' if constrained.ok else 'does NOT fit'}")
    for violation in constrained.violations:
        log(f"[fit]   {violation.message}")
    clock = _stage(log, timings, "fit", clock)

    # 3. SPEAR to fit -----------------------------------------------------------------
    constraints = Constraints.from_chip(config.chip, max_cores=budget)
    task = PruneTask(dataset=dataset, train=train_config, synops_target=config.synops_target,
                     constraints=constraints, finetune_steps=config.finetune_steps, eval_samples=256,
                     seed=config.seed)
    spear_config = SpearConfig(episodes=config.episodes, warmup=config.warmup, lre_samples=config.lre_samples,
                               lre_finetune_steps=config.lre_finetune_steps, recovery_steps=config.recovery_steps,
                               hidden=config.hidden)
    log(f"[spear] SynOps target {config.synops_target} of dense, <= {budget} cores on {config.chip}: "
        f"{config.lre_samples} LRE samples, {config.episodes} episodes")
    result = spear(model, task, spear_config, checkpoint=out / "spear.search", progress=progress)
    pruned = result.model
    spear_measure = measurer.measure(pruned)
    check = Measurer(synops_inputs(dataset), train_config, "val")
    ratio = check.measure(pruned).synops / check.measure(model).synops
    pruned_net = snn_model.to_ir(pruned)
    spear_fit = fit(pruned_net, config.chip, spear_measure.activity.rates, time_steps=config.steps, max_cores=budget)
    spear_path = out / "spear.net"
    lre = result.info.get("lre") or {}
    summary = {
        "method": "spear", "target": config.synops_target, "synops_dense": dense.synops,
        "synops_pruned": spear_measure.synops, "synops_ratio": ratio, "acc_dense": dense.accuracy,
        "acc_pruned": spear_measure.accuracy, "fits": spear_fit.ok, "cores": spear_fit.totals.cores,
        "max_cores": budget, "chip": config.chip, "lre": lre, "params_dense": dense.params,
        "params_pruned": spear_measure.params,
    }
    write_model_files(out / "spear.pt", pruned, {**meta, "pruned": {"method": "spear"}}, net_path=spear_path,
                      summary=summary, summary_path=out / "spear.json")
    log(f"[spear] SynOps ratio {ratio:.3f} (target {config.synops_target}), accuracy {dense.accuracy:.4f} -> "
        f"{spear_measure.accuracy:.4f}, {spear_fit.totals.cores} cores ({'fits' if spear_fit.ok else 'does NOT fit'}); "
        f"LRE R^2 {lre.get('r2', float('nan')):.3f}; wrote {spear_path}")
    if ratio > config.synops_target or not spear_fit.ok:
        raise NeuropruneError(f"demo: SPEAR result misses its target (ratio {ratio:.3f}, fits {spear_fit.ok})")
    clock = _stage(log, timings, "spear", clock)

    points = [MethodPoint("dense", 1.0, dense.accuracy), MethodPoint("SPEAR", ratio, spear_measure.accuracy)]
    if config.compare_uniform:
        uniform_task = dataclasses.replace(task, synops_target=ratio)
        uniform_model = uniform(model, uniform_task, progress=progress).model
        uniform_ratio = check.measure(uniform_model).synops / check.measure(model).synops
        uniform_acc = measurer.measure(uniform_model).accuracy
        points.append(MethodPoint("uniform", uniform_ratio, uniform_acc))
        log(f"[uniform] same SynOps budget ({uniform_ratio:.3f}): accuracy {uniform_acc:.4f} "
            f"(SPEAR {spear_measure.accuracy:.4f})")
        clock = _stage(log, timings, "uniform", clock)

    # 4. Lava ---------------------------------------------------------------------------
    x_int = chip_inputs(pruned, dataset.x_test[:config.verify_samples], train_config).numpy()
    verified = lava_verify.verify(spear_path, x=x_int, network=pruned_net)
    log(f"[lava] {spear_path} in Loihi2SimCfg fixed point on {config.verify_samples} digits x {config.steps} steps: "
        + ("100% spike-exact in every layer" if verified.exact else f"MISMATCH ({verified.percent:.3f} %)"))
    if not verified.exact:
        raise NeuropruneError("demo: Lava and our model disagree; run neuroprune verify for details")
    clock = _stage(log, timings, "lava", clock)

    # 5. energy report ------------------------------------------------------------------
    entries = []
    for label, net_model in (("dense", model), ("SPEAR", pruned)):
        x = dataset.x_test[:config.energy_samples]
        run = NetRun(label, snn_model.to_ir(net_model), chip_inputs(net_model, x, train_config).numpy(),
                     dataset.y_test[:config.energy_samples])
        rates, accuracy = chip_rates(run)
        report = fit(run.network, config.chip, rates, time_steps=config.steps, max_cores=budget)
        entries.append(ReportEntry(label, energy_table(report), accuracy, report.ok))
    report_path = write_html(
        out / "report.html", f"neuroprune demo: {config.arch} on {dataset.name}, SPEAR to "
        f"{config.synops_target:.0%} SynOps on {config.chip} ({budget} cores)", entries, points,
        notes=[f"Counts from the bit-exact model on {config.energy_samples} test digits x {config.steps} steps "
               f"(Lava agrees spike for spike). Accuracy in the table is on those samples; the plot uses the "
               f"whole test split.", f"LRE: after = {lre.get('weight', float('nan')):.3f} x before + "
               f"{lre.get('bias', float('nan')):.3f}, R^2 {lre.get('r2', float('nan')):.3f}."],
        searches={f"SPEAR to {config.synops_target:.0%} SynOps": result.history})
    energy_ratio = entries[1].table.total_j / entries[0].table.total_j
    log(f"[energy] per inference on {config.chip}: {entries[0].table.total_j * 1e6:.3f} uJ dense -> "
        f"{entries[1].table.total_j * 1e6:.3f} uJ SPEAR (x{energy_ratio:.2f})")
    _stage(log, timings, "energy", clock)
    summary["timings_s"] = timings
    log(f"report: {report_path.resolve()}")
    return DemoResult(out_dir=out, report=report_path, summary=summary, timings=timings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--episodes", type=positive_int, default=DemoConfig.episodes)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


DEMO_FILES = ("dense.pt", "dense.net", "spear.search", "spear.pt", "spear.net", "spear.json", "report.html")


def run(args: argparse.Namespace) -> int:
    from neuroprune.errors import OutputError
    from neuroprune.outputs import plan_outputs

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file; give a folder for the demo's outputs")
    out.mkdir(parents=True, exist_ok=True)
    plan_outputs({f"--out ({name})": out / name for name in DEMO_FILES})
    run_demo(args.out, DemoConfig(seed=args.seed, episodes=args.episodes, warmup=min(10, args.episodes)),
             progress=not args.quiet)
    return 0
