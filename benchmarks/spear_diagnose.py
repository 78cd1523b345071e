"""Why does (or doesn't) SPEAR beat uniform pruning? Measurements on the bench_spear net.

For one SynOps target, on the dense net ``bench_spear.py`` trains (same cache, same
task options), this measures with SPEAR's own reward machinery (prune, recovery
fine-tune, validation accuracy on ``--eval-samples`` images):

1. **reward noise**: the uniform allocation evaluated with several fine-tune seeds --
   the spread a single episode's reward carries;
2. **hand-made allocations at the same measured SynOps**: front-heavy, back-heavy,
   and sensitivity-guided (each layer pruned alone to the uniform ratio; layers whose
   validation accuracy drops more keep more channels), each with the same seeds;
   accuracy after a short (SPEAR's episode) and a longer (finalist) fine-tune;
3. from the results file of ``bench_spear.py``: whether the best feasible reward of
   each search still improved after the warm-up, and by how much.

Rows go to ``benchmarks/results/spear_diagnose_<data>.jsonl`` as they finish.

    .venv/bin/python benchmarks/spear_diagnose.py [--target 0.3] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_spear import RESULTS, append_row, dense_net, parse_args, read_rows  # noqa: E402


def search_progress(rows: list[dict], warmup: int) -> list[str]:
    lines = []
    for r in rows:
        if r.get("kind") != "run" or r.get("method") != "spear" or not r.get("history"):
            continue
        feasible = [h["reward"] for h in r["history"] if h["feasible"]]
        early = [h["reward"] for h in r["history"][:warmup] if h["feasible"]]
        if not feasible:
            lines.append(f"target {r['target']:g} seed {r['seed']}: no feasible episode")
            continue
        best_warm = max(early) if early else float("nan")
        lines.append(f"target {r['target']:g} seed {r['seed']}: best reward after warm-up {best_warm:.4f}, at the end "
                     f"{max(feasible):.4f} (+{max(feasible) - best_warm:.4f}); feasible rewards mean "
                     f"{statistics.mean(feasible):.4f} sd {statistics.pstdev(feasible):.4f} over {len(feasible)} "
                     f"episodes; delivered the uniform policy: {r.get('delivered_uniform')}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, default=3, help="fine-tune seeds per allocation")
    parser.add_argument("--long-steps", type=int, default=0, help="also a fine-tune of this many steps (0: skip)")
    own, rest = parser.parse_known_args()
    args = parse_args(rest)

    import numpy as np

    from neuroprune.cli import build_parser
    from neuroprune.pipeline import load_trained, make_task
    from neuroprune.prune.base import Measurer, prunable
    from neuroprune.prune.estimate import SynOpsModel, calibrate_scale, measured_synops, uniform_ratio_for
    from neuroprune.prune.executor import CandidateJob, evaluate_candidate, spec_for
    from neuroprune.prune.importance import get_criterion
    from neuroprune.prune.structured import keep_by_ratio, prune_model

    dense_path = dense_net(args)
    trained = load_trained(str(dense_path))
    parsed = build_parser().parse_args(["prune", str(dense_path), "--out", "/dev/null.pt", "--synops-target",
                                        str(own.target), "--eval-samples", str(args.eval_samples), "--calibration-samples",
                                        str(args.calibration_samples), "--chip", "loihi1",
                                        "--max-chips", "1"])
    task = make_task(trained, parsed)
    model = trained.model
    network, graph, layers = prunable(model)
    measurer = Measurer(task.dataset, task.train, "val", task.eval_samples)
    dense = measurer.measure(model)
    synops = SynOpsModel(network, graph, dense.layer_synops)
    importance = get_criterion("l1")(network, dense.activity)
    spec = spec_for(model, task, importance, dense.synops)
    common = uniform_ratio_for(synops, layers, own.target, 0.05)
    out = RESULTS / f"spear_diagnose_{Path(args.data).name}.jsonl"
    print(f"layers {layers}; uniform keep ratio {common:.3f} for estimated SynOps {own.target}; dense val accuracy "
          f"{dense.accuracy:.4f} on {len(measurer.y)} images", flush=True)

    # per-layer sensitivity: that layer alone at the uniform ratio, no fine-tune
    drop = {}
    for index in layers:
        pruned = prune_model(model, keep_by_ratio(graph, {index: common}, importance), graph)
        drop[index] = dense.accuracy - measurer.measure(pruned).accuracy
    print("sensitivity (val accuracy drop, layer alone at the uniform ratio): "
          + ", ".join(f"{i}: {d:+.4f}" for i, d in drop.items()), flush=True)
    append_row(out, {"kind": "sensitivity", "target": own.target, "ratio": common, "drop": drop})

    # the analytic estimate misjudges some allocations by a lot (firing rates move when
    # channels go), so every allocation is scaled to the target on *measured* SynOps
    # (pruned, before fine-tuning, on the calibration inputs), as SPEAR's finalists are
    measure = measured_synops(model, task, graph, importance)

    def same_synops(shape: dict[int, float]) -> dict[int, float]:
        scale = calibrate_scale(measure, shape, own.target, 0.05, 1.0 / min(shape.values()), iterations=10)
        return {i: min(1.0, r * scale) for i, r in shape.items()}

    n = len(layers)
    weights = np.asarray([max(drop[i], 0.0) for i in layers]) + 1e-3
    allocations = {
        "uniform": same_synops({i: 1.0 for i in layers}),
        "front-heavy": same_synops({i: 1.0 - 0.5 * t / max(n - 1, 1) for t, i in enumerate(layers)}),
        "back-heavy": same_synops({i: 0.5 + 0.5 * t / max(n - 1, 1) for t, i in enumerate(layers)}),
        "sensitivity": same_synops({i: float(0.5 + 0.5 * w / weights.max()) for i, w in zip(layers, weights)}),
    }
    steps = [("episode", args.recovery_steps), ("finalist", args.lre_finetune_steps)]
    if own.long_steps:
        steps.append(("long", own.long_steps))
    for name, ratios in allocations.items():
        for label, count in steps:
            started = time.perf_counter()
            outcomes = [evaluate_candidate(spec, CandidateJob(ratios, count, seed=7000 + s)) for s in range(own.seeds)]
            acc = [o["accuracy"] for o in outcomes]
            row = {"kind": "allocation", "target": own.target, "name": name, "ratios": {str(k): v for k, v in
                                                                                      ratios.items()},
                   "estimated_synops": synops.ratio(ratios), "finetune": label, "steps": count,
                   "accuracy": acc, "synops_after": [o["synops_after"] for o in outcomes],
                   "seconds": time.perf_counter() - started}
            append_row(out, row)
            print(f"{name:12s} {label:8s} ({count:3d} steps) ratios "
                  + "{" + ", ".join(f"{i}: {r:.2f}" for i, r in ratios.items()) + "}"
                  f" est. SynOps {row['estimated_synops']:.3f}, measured after fine-tune {statistics.mean(row['synops_after']):.3f}: "
                  f"val acc {statistics.mean(acc):.4f} sd {statistics.stdev(acc) if len(acc) > 1 else 0:.4f}",
                  flush=True)
    for line in search_progress(read_rows(args.results), args.warmup):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
