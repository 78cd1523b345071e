"""``neuroprune prune MODEL.pt --method spear --synops-target 0.5 --out pruned.pt``.

Loads a trained model, prunes it with the chosen method under the SynOps target and the
chip budgets, measures SynOps and accuracy before and after on the test split, checks
the fit, and writes the pruned model, its netx export and a JSON summary beside it.
Exit 0 when the delivered net fits the constraints, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse

from neuroprune.options import fraction, nonnegative_int, open_fraction, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hw_models.report import DEFAULT_CHIP
    from neuroprune.prune.methods import METHODS, add_method_options

    parser.add_argument("model", help="trained model checkpoint (.pt, from neuroprune train)")
    parser.add_argument("--method", default="spear", choices=sorted(METHODS), help="pruning method (default spear)")
    parser.add_argument("--synops-target", type=open_fraction,
                        help="wanted SynOps as a fraction of the dense net's, e.g. 0.5")
    parser.add_argument("--sparsity", type=fraction, help="wanted fraction of removed synapses (unstructured methods)")
    parser.add_argument("--out", required=True, help="pruned model checkpoint to write (.pt); "
                        "the netx export (.net) and summary (.json) go beside it")
    parser.add_argument("--data", help="data set: digits, synthetic, fashion-mnist, an IDX folder or a .npz "
                        "(default: the one the model was trained on)")
    parser.add_argument("--resize", type=positive_int, metavar="N", help="resize images to N x N (default: as in training)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--chip", default=DEFAULT_CHIP,
                        help=f"chip preset or TOML file for the fit check (default {DEFAULT_CHIP})")
    parser.add_argument("--max-cores", type=positive_int, help="core budget the pruned net must fit")
    parser.add_argument("--max-chips", type=positive_int, help="chip budget the pruned net must fit")
    parser.add_argument("--finetune-steps", type=nonnegative_int, default=200,
                        help="optimizer steps of the final fine-tune")
    parser.add_argument("--eval-samples", type=positive_int, default=512, help="validation samples per candidate")
    parser.add_argument("--calibration-samples", type=positive_int, metavar="N",
                        help="calibrate keep ratios to the SynOps target on the first N validation + test inputs "
                             "(default: all; the delivered net is checked on all of them either way)")
    runs = parser.add_argument_group("SPEAR runs")
    runs.add_argument("--checkpoint", help="search checkpoint (default: OUT with .search suffix)")
    runs.add_argument("--resume", action="store_true", help="continue the search from its checkpoint")
    runs.add_argument("--ray", metavar="auto|local|ADDRESS", help="evaluate candidates on Ray: 'auto' = the running "
                      "cluster, 'local' = start one here, or HOST:PORT / ray://HOST:PORT (needs neuroprune[ray]; "
                      "default: in this process)")
    runs.add_argument("--ray-workers", type=positive_int, metavar="N", help="candidates evaluated at once on Ray "
                      "(default: the cluster's CPUs)")
    add_method_options(parser)  # each method's own options, declared on its config class
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroprune.errors import PruneError
    from neuroprune.outputs import plan_outputs
    from neuroprune.pipeline import check_prune_options, load_trained, prune_and_report, prune_outputs

    out = Path(args.out)
    if out.suffix != ".pt":
        raise PruneError(f"--out {out}: give a .pt file name (the .net and .json go beside it)")
    if args.ray is None and args.ray_workers is not None:
        raise PruneError(f"--ray-workers {args.ray_workers} needs --ray auto|local|ADDRESS "
                         "(without it candidates run here)")
    if args.checkpoint is None:
        args.checkpoint = str(out.with_suffix(".search"))
    plan_outputs({**prune_outputs(out), "--checkpoint": args.checkpoint},
                 {"MODEL": args.model, "--data": args.data, "--chip": args.chip})
    check_prune_options(args)
    trained = load_trained(args.model, data=args.data, seed=args.seed, resize=args.resize)
    summary = prune_and_report(trained, args, out)
    return 0 if summary["fits"] else 1
