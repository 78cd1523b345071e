"""Benchmark: every pruning method on digits, one table.

Trains (or reuses) a conv SNN on scikit-learn's digits, then prunes it with each method
through the same code path as ``neuroprune prune`` and prints, per method: target,
measured SynOps ratio (test split), test accuracy dense -> pruned, non-zero synapses,
cores on Loihi 1 and wall time. Structured methods (SPEAR, uniform, SCA, criticality)
run at a SynOps target (default 0.5); uniform also runs at SPEAR's *measured* ratio so
the two compare at the same SynOps. Unstructured methods (Grad R, ADMM) run at several
sparsities. SPEAR's LRE relative error on held-out pruned nets is printed too.

    .venv/bin/python benchmarks/bench_methods.py [--target 0.5] [--episodes 60] [--quick]

Results also go to ``out/bench/methods.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--sparsities", default="0.5,0.75,0.9")
    parser.add_argument("--methods", default="spear,uniform,sca,criticality,gradr,admm")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="c24,c32s2,f", help="dense net to train (default c24,c32s2,f; + dense 10)")
    parser.add_argument("--seeds", help="comma-separated seeds: repeat SPEAR and uniform (at SPEAR's measured "
                        "SynOps) per seed and print mean and spread (e.g. 0,1,2)")
    parser.add_argument("--quick", action="store_true", help="short settings (a smoke run)")
    args = parser.parse_args()

    from neuroprune.cli import build_parser, main as cli_main
    from neuroprune.pipeline import load_trained, print_table, prune_and_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dense = out / "dense.pt"
    if not dense.exists():
        epochs = "4" if args.quick else "15"
        if cli_main(["train", "--data", "digits", "--arch", args.arch, "--out", str(dense), "--epochs", epochs,
                     "--seed", str(args.seed), "--quiet"]) != 0:
            return 1
    trained = load_trained(str(dense))
    prune_parser = build_parser()
    common = ["--seed", str(args.seed), "--chip", "loihi1", "--max-chips", "1", "--quiet"]
    if args.quick:
        common += ["--finetune-steps", "40"]
    spear_opts = ["--episodes", str(args.episodes), "--warmup", str(min(20, args.episodes // 3))]
    if args.quick:
        spear_opts += ["--lre-samples", "4", "--lre-finetune-steps", "20", "--hidden", "64"]

    runs: list[tuple[str, list[str]]] = []
    methods = args.methods.split(",")
    for method in ("spear", "sca", "criticality"):
        if method in methods:
            runs.append((method, ["--method", method, "--synops-target", str(args.target),
                                  *(spear_opts if method == "spear" else [])]))
    for method in ("gradr", "admm"):
        if method in methods:
            for sparsity in args.sparsities.split(","):
                runs.append((f"{method}@{sparsity}", ["--method", method, "--sparsity", sparsity]))

    results = []
    for name, options in runs:
        started = time.perf_counter()
        parsed = prune_parser.parse_args(["prune", str(dense), "--out", str(out / f"{name.replace('@', '_')}.pt"),
                                          *options, *common])
        parsed.checkpoint = str(out / f"{name}.search")
        summary = prune_and_report(trained, parsed, Path(parsed.out))
        summary["seconds"] = time.perf_counter() - started
        summary["name"] = name
        results.append(summary)
        if name == "spear" and "uniform" in methods:
            started = time.perf_counter()
            parsed = prune_parser.parse_args(["prune", str(dense), "--out", str(out / "uniform.pt"), "--method",
                                              "uniform", "--synops-target", f"{summary['synops_ratio']:.6f}",
                                              *common])
            uniform = prune_and_report(trained, parsed, Path(parsed.out))
            uniform["seconds"] = time.perf_counter() - started
            uniform["name"] = "uniform (same SynOps as SPEAR)"
            results.append(uniform)

    rows = [(r["name"], f"{r['target']:.3f}", f"{r['synops_ratio']:.3f}", f"{r['acc_dense']:.4f}",
             f"{r['acc_pruned']:.4f}", f"{r['nonzero_pruned']:,}", str(r["cores"]), _tries(r), f"{r['seconds']:.0f}")
            for r in results]
    print_table("pruning methods on digits (test split; SynOps ratio on the test inputs)", rows,
                ("method", "target", "SynOps ratio", "acc dense", "acc pruned", "non-zero syn", "cores",
                 "delivery tries", "s"))
    spear = next((r for r in results if r["name"] == "spear"), None)
    uniform = next((r for r in results if r["name"].startswith("uniform")), None)
    if spear and uniform:
        print(f"SPEAR vs uniform at SynOps {spear['synops_ratio']:.3f}/{uniform['synops_ratio']:.3f}: accuracy "
              f"{spear['acc_pruned']:.4f} vs {uniform['acc_pruned']:.4f} ({spear['acc_pruned'] - uniform['acc_pruned']:+.4f})")
    if spear and spear["info"].get("lre"):
        lre = spear["info"]["lre"]
        print(f"LRE: R^2 {lre['r2']:.4f}, held-out mean relative error {lre['holdout_mean_rel_error']:.2%} "
              f"(max {lre['holdout_max_rel_error']:.2%}, {lre['holdout_samples']} nets; goal <= 5%)")
    (out / "methods.json").write_text(json.dumps(results, indent=2, default=str))
    if args.seeds:
        _seeds(args, trained, dense, out, common, spear_opts)
    return 0


def _tries(summary: dict) -> str:
    """Delivery tries of a structured method (each try after the first fine-tunes with its own seed)."""
    tries = (summary.get("info") or {}).get("delivery")
    return str(len(tries)) if tries else "-"


def _seeds(args, trained, dense, out, common, spear_opts) -> None:  # type: ignore[no-untyped-def]
    """SPEAR vs uniform at the same measured SynOps over several seeds."""
    import statistics

    from neuroprune.cli import build_parser
    from neuroprune.pipeline import print_table, prune_and_report

    parser = build_parser()
    rows = []
    pairs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        options = ["--seed", str(seed), *common[2:]]  # common starts with --seed S
        spear_args = parser.parse_args(["prune", str(dense), "--out", str(out / f"spear_s{seed}.pt"), "--method", "spear",
                                        "--synops-target", str(args.target), *spear_opts, *options])
        spear_args.checkpoint = str(out / f"spear_s{seed}.search")
        spear = prune_and_report(trained, spear_args, out / f"spear_s{seed}.pt")
        uniform_args = parser.parse_args(["prune", str(dense), "--out", str(out / f"uniform_s{seed}.pt"), "--method",
                                          "uniform", "--synops-target", f"{spear['synops_ratio']:.6f}", *options])
        uniform = prune_and_report(trained, uniform_args, out / f"uniform_s{seed}.pt")
        pairs.append((spear, uniform))
        rows.append((str(seed), f"{spear['synops_ratio']:.3f}", f"{spear['acc_pruned']:.4f}", _tries(spear),
                     f"{uniform['synops_ratio']:.3f}", f"{uniform['acc_pruned']:.4f}", _tries(uniform)))
    spear_acc = [p[0]["acc_pruned"] for p in pairs]
    uniform_acc = [p[1]["acc_pruned"] for p in pairs]
    spread = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    rows.append(("mean", f"{statistics.mean(p[0]['synops_ratio'] for p in pairs):.3f}",
                 f"{statistics.mean(spear_acc):.4f} +- {spread(spear_acc):.4f}", "",
                 f"{statistics.mean(p[1]['synops_ratio'] for p in pairs):.3f}",
                 f"{statistics.mean(uniform_acc):.4f} +- {spread(uniform_acc):.4f}", ""))
    print_table(f"SPEAR vs uniform at the same measured SynOps (target {args.target})", rows,
                ("seed", "SPEAR SynOps", "SPEAR acc", "SPEAR tries", "uniform SynOps", "uniform acc", "uniform tries"))
    (out / "spear_vs_uniform.json").write_text(json.dumps([{"spear": a, "uniform": b} for a, b in pairs],
                                                          indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
