"""Benchmark: SPEAR on Fashion-MNIST against uniform pruning, SCA and criticality.

Trains a conv SNN once (cached under ``benchmarks/.cache``), then for every seed and
SynOps target runs SPEAR, uniform pruning at SPEAR's *measured* SynOps, SCA and
criticality through the same code path as ``neuroprune prune``, and reports on the full
10,000-image test split: accuracy, measured SynOps ratio (validation + test inputs, as
the delivery checks it), cores on Loihi 1, wall time, and the paired McNemar z of SPEAR
against uniform pruning on the test images. It also measures the evaluation-speed ratio
of the fused no-grad forward against slayer's own forward on the same net.

Every finished run is appended at once as one JSON line to the results file, so a run
that is stopped keeps what it finished; started again, the benchmark skips the runs
already in the file. Several processes started with the same options share the plan
(each run is claimed by one process; uniform pruning waits for its SPEAR run).
``--table`` renders the results file as markdown and redraws the reward-per-episode
plot of the SPEAR searches.

    .venv/bin/python benchmarks/bench_spear.py --data fashion-mnist [--quick]
    .venv/bin/python benchmarks/bench_spear.py --table [--results FILE]

The chosen setting (and why): 14x14 inputs (``--resize 14``, area down-sampling), T = 12,
``c16s2,c32,c32s2,f,d64`` + d10 (4 prunable layers, the fewest the issue allows, since
every layer adds a time step of delay). Every synapse delivers one step late on Loihi
(and in our slayer model), so with an input neuron and 5 synaptic layers the output
sees the input 5 steps late: T = 4 (the SPEAR paper's, without chip delays) leaves the
output layer nothing to see; T = 8 leaves it 3 steps, whose 0..3 spike counts tie often
(measured: 72 % validation accuracy after one epoch); T = 12 leaves it 7.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # this checkout's neuroprune and bench_substrate
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"
METHODS = ("spear", "uniform", "sca", "criticality")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--quick", action="store_true", help="one target (0.3), one seed (0)")
    parser.add_argument("--targets", default="0.5,0.3,0.2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", help="JSON-lines results file (default benchmarks/results/spear_<data>.jsonl; "
                        "the quick run's rows count for the full run, the settings being the same)")
    parser.add_argument("--table", action="store_true", help="print the results file as markdown, redraw the plot, exit")
    parser.add_argument("--plot", help="reward-per-episode plot (default: the results file with _reward.png)")
    parser.add_argument("--cache", default=str(CACHE), help="folder of the trained dense net (not committed)")
    # the dense net
    parser.add_argument("--arch", default="c16s2,c32,c32s2,f,d64")
    parser.add_argument("--resize", type=int, default=14)
    parser.add_argument("--time-steps", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-dense-accuracy", type=float, default=0.85)
    # pruning budgets (sized for 2 shared cores)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--lre-samples", type=int, default=6)
    parser.add_argument("--lre-finetune-steps", type=int, default=20)
    parser.add_argument("--recovery-steps", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--eval-samples", type=int, default=1024)
    parser.add_argument("--calibration-samples", type=int, default=1024)
    parser.add_argument("--sca-steps", type=int, default=100)
    parser.add_argument("--sca-update-every", type=int, default=20)
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.seeds = "0.3", "0"
    args.results = Path(args.results or RESULTS / f"spear_{Path(args.data).name}.jsonl")
    args.plot = Path(args.plot or args.results.with_name(args.results.stem + "_reward.png"))
    return args


# ----------------------------------------------------------------------------- results file
def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """One JSON line, appended and flushed at once (survives a stopped run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row, default=_plain) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def pack(correct: Any) -> str:
    import numpy as np

    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack(hexed: str, n: int) -> Any:
    import numpy as np

    return np.unpackbits(np.frombuffer(bytes.fromhex(hexed), dtype=np.uint8))[:n].astype(bool)


# ----------------------------------------------------------------------------- dense net
def dense_net(args: argparse.Namespace) -> Path:
    from neuroprune.cli import main as cli_main

    key = f"{Path(args.data).name}-r{args.resize}-T{args.time_steps}-{args.arch.replace(',', '_')}-e{args.epochs}-s0"
    path = Path(args.cache) / key / "dense.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"training the dense net once: {key} (cached at {path})", flush=True)
        code = cli_main(["train", "--data", args.data, "--resize", str(args.resize), "--arch", args.arch,
                         "--steps", str(args.time_steps), "--epochs", str(args.epochs), "--seed", "0",
                         "--out", str(path), "--quiet"])
        if code != 0:
            raise SystemExit(code)
    return path


# ----------------------------------------------------------------------------- one run
def run_method(method: str, target: float, seed: int, args: argparse.Namespace, trained: Any, dense_path: Path,
               dense_test: Any, workdir: Path) -> dict[str, Any]:
    from neuroprune.cli import build_parser
    from neuroprune.pipeline import prune_and_report

    name = f"{method}_t{target:g}_s{seed}"
    out = workdir / f"{name}.pt"
    options = ["prune", str(dense_path), "--out", str(out), "--method", method, "--synops-target", f"{target:.6f}",
               "--seed", str(seed), "--chip", "loihi1", "--max-chips", "1", "--quiet",
               "--finetune-steps", str(args.finetune_steps), "--eval-samples", str(args.eval_samples),
               "--calibration-samples", str(args.calibration_samples)]
    if method == "spear":
        options += ["--episodes", str(args.episodes), "--warmup", str(args.warmup), "--lre-samples",
                    str(args.lre_samples), "--lre-finetune-steps", str(args.lre_finetune_steps), "--recovery-steps",
                    str(args.recovery_steps), "--hidden", str(args.hidden), "--checkpoint", str(out.with_suffix(".search"))]
    if method == "sca":
        options += ["--sca-steps", str(args.sca_steps), "--sca-update-every", str(args.sca_update_every)]
    parsed = build_parser().parse_args(options)
    measurements: dict[str, Any] = {}
    started = time.perf_counter()
    summary = prune_and_report(trained, parsed, out, dense_test=dense_test, measurements=measurements)
    seconds = time.perf_counter() - started
    pruned = measurements["pruned"]
    row = {"kind": "run", "method": method, "target": target, "seed": seed, "synops_ratio": summary["synops_ratio"],
           "acc": summary["acc_pruned"], "acc_dense": summary["acc_dense"], "cores": summary["cores"],
           "fits": summary["fits"], "nonzero": summary["nonzero_pruned"], "seconds": seconds,
           "test_samples": len(pruned.correct), "test_correct": pack(pruned.correct)}
    info = summary.get("info") or {}
    delivery = info.get("delivery") or []
    if delivery:
        row["delivered_synops_ratio_val_test"] = delivery[-1].get("synops_ratio")
        row["delivery_tries"] = len(delivery)
        row["delivered_counts"] = delivery[-1].get("counts")
    if method == "spear":
        from neuroprune.prune.spear import CHECKPOINT_KIND
        from neuroprune.snn.checkpoint import load_checkpoint

        _, meta = load_checkpoint(out.with_suffix(".search"), kind=CHECKPOINT_KIND)
        row["history"] = [{k: h[k] for k in ("episode", "reward", "accuracy", "feasible", "ratios")}
                          for h in meta["history"]]
        row["lre"] = info.get("lre")
        row["final_choice"] = {str(k): v for k, v in (info.get("final_choice") or {}).items()}
        row["delivered_uniform"] = len(set(round(v, 6) for v in row["final_choice"].values())) <= 1
    return row


# ----------------------------------------------------------------------------- table + plot
def paired(rows: list[dict[str, Any]], method: str, reference: str, target: float, seed: int) -> float | None:
    from neuroprune.prune.spear import paired_z

    runs = [r for r in rows if r.get("kind") == "run"]
    a = next((r for r in runs if r["method"] == method and r["target"] == target and r["seed"] == seed), None)
    b = next((r for r in runs if r["method"] == reference and r["target"] == target and r["seed"] == seed), None)
    if a is None or b is None:
        return None
    n = a["test_samples"]
    return paired_z(unpack(a["test_correct"], n), unpack(b["test_correct"], n))


def table(rows: list[dict[str, Any]]) -> str:
    runs = [r for r in rows if r.get("kind") == "run"]
    lines = []
    dense = next((r for r in rows if r.get("kind") == "dense"), None)
    if dense:
        lines.append(f"Dense net: `{dense['arch']}` + d10 on {dense['data']} resized to {dense['resize']}x"
                     f"{dense['resize']}, T = {dense['time_steps']}: test accuracy {dense['acc_test']:.4f} "
                     f"(fixed point {dense.get('acc_test_fixed_point', float('nan')):.4f}), "
                     f"trained in {dense.get('train_seconds', float('nan')):.0f} s.")
    speed = next((r for r in reversed(rows) if r.get("kind") == "speed"), None)
    if speed:
        lines.append(f"Candidate evaluation (no grad, batch {speed['batch']}, {speed['samples']} test images): fused "
                     f"forward {speed['fused_samples_per_s']:.0f} samples/s vs slayer's no-grad forward "
                     f"{speed['slayer_samples_per_s']:.0f} samples/s = **x{speed['ratio']:.2f}**, spikes identical: "
                     f"{speed['spikes_identical']}.")
    lines += ["", "| target | seed | method | SynOps ratio | test acc | z vs uniform | cores | wall s |",
              "|---:|---:|---|---:|---:|---:|---:|---:|"]
    order = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(runs, key=lambda r: (-r["target"], r["seed"], order.get(r["method"], 9))):
        z = paired(runs, r["method"], "uniform", r["target"], r["seed"]) if r["method"] != "uniform" else None
        lines.append(f"| {r['target']:g} | {r['seed']} | {r['method']} | {r['synops_ratio']:.3f} | {r['acc']:.4f} | "
                     f"{'' if z is None else f'{z:+.2f}'} | {r['cores']} | {r['seconds']:.0f} |")
    lines += ["", "Mean over seeds (test accuracy, mean +- sd; n = seeds finished):", "",
              "| target | method | n | SynOps ratio | test acc | SPEAR z >= 1.645 vs uniform |", "|---:|---|---:|---:|---:|---|"]
    for target in sorted({r["target"] for r in runs}, reverse=True):
        for method in METHODS:
            mine = [r for r in runs if r["method"] == method and r["target"] == target]
            if not mine:
                continue
            acc = [r["acc"] for r in mine]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            note = ""
            if method == "spear":
                zs = [paired(runs, "spear", "uniform", target, r["seed"]) for r in mine]
                zs = [z for z in zs if z is not None]
                note = f"{sum(z >= 1.645 for z in zs)} of {len(zs)} seeds"
            lines.append(f"| {target:g} | {method} | {len(mine)} | {statistics.mean(r['synops_ratio'] for r in mine):.3f}"
                         f" | {statistics.mean(acc):.4f} +- {sd:.4f} | {note} |")
    searches = [r for r in runs if r["method"] == "spear"]
    if searches:
        lines += ["", "SPEAR searches: " + "; ".join(
            f"{r['target']:g}/{r['seed']}: LRE held-out mean rel. error "
            f"{(r.get('lre') or {}).get('holdout_mean_rel_error', float('nan')):.1%}, best feasible reward "
            f"{max((h['reward'] for h in r.get('history', []) if h['feasible']), default=float('nan')):.4f}, "
            f"chose {'the uniform policy' if r.get('delivered_uniform') else 'a searched policy'}"
            + (f" (delivered channels {r['delivered_counts']} after {r['delivery_tries']} tries)"
               if r.get("delivered_counts") else "")
            for r in sorted(searches, key=lambda r: (-r["target"], r["seed"])))]
    failed = [r for r in rows if r.get("kind") == "failed"]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{r['method']} {r['target']:g}/{r['seed']}: {r['error']}" for r in failed)]
    walls: dict[tuple[float, int], float] = {}
    for r in runs:
        walls[(r["target"], r["seed"])] = walls.get((r["target"], r["seed"]), 0.0) + r["seconds"]
    lines += ["", "Wall time per (target, seed), all methods: " + ", ".join(
        f"{t:g}/{s}: {v / 60:.1f} min" for (t, s), v in sorted(walls.items(), key=lambda kv: (-kv[0][0], kv[0][1])))]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    from neuroprune.report import reward_figure_png

    searches = [r for r in rows if r.get("kind") == "run" and r["method"] == "spear" and r.get("history")]
    if not searches:
        return None
    series = {f"target {r['target']:g}, seed {r['seed']}": r["history"] for r in searches}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(reward_figure_png(series))
    return path


# ----------------------------------------------------------------------------- sharing the work
def _find(rows: list[dict[str, Any]], method: str, target: float, seed: int,
          kind: str | None = "run") -> dict[str, Any] | None:
    """The row of a finished (``kind=None``: finished or failed) run."""
    return next((r for r in rows if r.get("kind") in ((kind,) if kind else ("run", "failed"))
                 and r.get("method") == method and r.get("target") == target and r.get("seed") == seed), None)


def _ready(rows: list[dict[str, Any]], method: str, target: float, seed: int, methods: list[str]) -> bool:
    """Uniform pruning runs at the SynOps SPEAR measured: it waits for that SPEAR run."""
    return method != "uniform" or "spear" not in methods or _find(rows, "spear", target, seed, kind=None) is not None


def _claim(workdir: Path, method: str, target: float, seed: int) -> bool:
    """Take a run for this process (several processes of the benchmark share the plan);
    a claim of a process that is gone is taken over."""
    path = workdir / "claims" / f"{method}_t{target:g}_s{seed}"
    path.parent.mkdir(exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text() or 0)
                os.kill(owner, 0)
                return owner == os.getpid()
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its process is gone
                continue
            except PermissionError:
                return False
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        return True
    return False


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        rows = read_rows(args.results)
        print(table(rows))
        drawn = plot(rows, args.plot)
        if drawn:
            print(f"\nplot: {drawn}")
        return 0

    from neuroprune.errors import NeuropruneError
    from neuroprune.pipeline import load_trained
    from neuroprune.prune.base import Measurer

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    begun = time.perf_counter()
    try:
        dense_path = dense_net(args)
        trained = load_trained(str(dense_path))
    except NeuropruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = read_rows(args.results)
    test = Measurer(trained.dataset, trained.config, "test")
    dense_test = test.measure(trained.model)
    if not any(r.get("kind") == "dense" for r in rows):
        meta = trained.meta
        row = {"kind": "dense", "data": args.data, "arch": args.arch, "resize": args.resize,
               "time_steps": args.time_steps, "epochs": args.epochs, "acc_test": dense_test.accuracy,
               "acc_test_fixed_point": meta.get("test_accuracy_fixed_point"),
               "train_seconds": (meta.get("history") or {}).get("wall_time_s"), "synops": dense_test.synops,
               "cores": None, "cpu_count": os.cpu_count()}
        append_row(args.results, row)
        rows.append(row)
    print(f"dense net: test accuracy {dense_test.accuracy:.4f} on {len(trained.dataset.y_test)} test images", flush=True)
    if dense_test.accuracy < args.min_dense_accuracy:
        print(f"warning: dense test accuracy {dense_test.accuracy:.4f} is below {args.min_dense_accuracy}; "
              "train longer (--epochs)", flush=True)

    from bench_substrate import eval_speed

    if any(r.get("kind") == "speed" for r in rows):
        speed = next(r for r in reversed(rows) if r.get("kind") == "speed")
    else:
        speed = eval_speed(trained.model, trained.dataset.x_test[:2048], trained.dataset.y_test[:2048], trained.config)
        append_row(args.results, {"kind": "speed", **speed})
    print(f"evaluation speed: fused {speed['fused_samples_per_s']:.0f} vs slayer {speed['slayer_samples_per_s']:.0f} "
          f"samples/s = x{speed['ratio']:.2f}; spikes identical: {speed['spikes_identical']}", flush=True)

    workdir = dense_path.parent / "runs"
    workdir.mkdir(exist_ok=True)
    methods = [m for m in METHODS if m in args.methods.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    # SPEAR and uniform first for every (seed, target), SCA and criticality after: what
    # finishes first is the comparison the benchmark is about
    plan = [(method, target, seed) for seed in seeds for target in targets for method in ("spear", "uniform")]
    plan += [(method, target, seed) for seed in seeds for target in targets for method in ("sca", "criticality")]
    plan = [item for item in plan if item[0] in methods]
    while True:
        rows = read_rows(args.results)  # other processes of this benchmark may have added runs
        pending = [item for item in plan if _find(rows, *item, kind=None) is None]
        if not pending:
            break
        item = next((i for i in pending if _ready(rows, *i, methods) and _claim(workdir, *i)), None)
        if item is None:  # the rest is running elsewhere or waits for a SPEAR run there
            time.sleep(15)
            continue
        method, target, seed = item
        run_target = target
        spear = _find(rows, "spear", target, seed)
        if method == "uniform" and spear is not None:  # same measured SynOps as SPEAR delivered
            run_target = min(target, spear["synops_ratio"])
        print(f"== {method} target {target:g} seed {seed} ({(time.perf_counter() - begun) / 60:.1f} min in)",
              flush=True)
        try:
            row = run_method(method, run_target, seed, args, trained, dense_path, dense_test, workdir)
        except NeuropruneError as err:
            row = {"kind": "failed", "method": method, "seed": seed, "error": str(err)}
            print(f"   failed: {err}", flush=True)
        row.update(target=target, run_target=run_target, pid=os.getpid())
        append_row(args.results, row)
        rows.append(row)
        if row["kind"] == "run":
            z = paired(rows, "spear", "uniform", target, seed) if method == "uniform" else None
            print(f"   {method}: SynOps {row['synops_ratio']:.3f} acc {row['acc']:.4f} "
                  f"{'' if z is None else f'z(SPEAR vs uniform) {z:+.2f} '}cores {row['cores']} "
                  f"{row['seconds']:.0f} s", flush=True)
        if method == "spear":
            plot(rows, args.plot)
    print(table(rows))
    plot(rows, args.plot)
    print(f"total {(time.perf_counter() - begun) / 60:.1f} min; results {args.results}; plot {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
