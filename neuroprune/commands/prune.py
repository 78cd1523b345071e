"""``neuroprune prune MODEL.pt --method spear --synops-target 0.5 --out pruned.pt``.

Loads a trained model, prunes it with the chosen method under the SynOps target and the
chip budgets, measures SynOps and accuracy before and after on the test split, checks
the fit, and writes the pruned model, its netx export and a JSON summary beside it.
Exit 0 when the delivered net fits the constraints, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from neuroprune.prune.methods import METHODS

    parser.add_argument("model", help="trained model checkpoint (.pt, from neuroprune train)")
    parser.add_argument("--method", default="spear", choices=sorted(METHODS), help="pruning method (default spear)")
    parser.add_argument("--synops-target", type=float, help="wanted SynOps as a fraction of the dense net's, e.g. 0.5")
    parser.add_argument("--sparsity", type=float, help="wanted fraction of removed synapses (unstructured methods)")
    parser.add_argument("--out", required=True, help="pruned model checkpoint to write (.pt); "
                        "the netx export (.net) and summary (.json) go beside it")
    parser.add_argument("--data", help="data set: digits, synthetic, fashion-mnist, an IDX folder or a .npz "
                        "(default: the one the model was trained on)")
    parser.add_argument("--resize", type=int, metavar="N", help="resize images to N x N (default: as in training)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--chip", default="loihi2", help="chip preset or TOML file for the fit check (default loihi2)")
    parser.add_argument("--max-cores", type=int, help="core budget the pruned net must fit")
    parser.add_argument("--max-chips", type=int, help="chip budget the pruned net must fit")
    parser.add_argument("--finetune-steps", type=int, default=200, help="optimizer steps of the final fine-tune")
    parser.add_argument("--eval-samples", type=int, default=512, help="validation samples per candidate")
    parser.add_argument("--calibration-samples", type=int, metavar="N",
                        help="calibrate keep ratios to the SynOps target on the first N validation + test inputs "
                             "(default: all; the delivered net is checked on all of them either way)")
    parser.add_argument("--criterion", default="l1", help="channel importance: l1, l2, rate, membrane, random")
    parser.add_argument("--keep-ratio", type=float, help="uniform: keep ratio when no target is given")
    spear = parser.add_argument_group("SPEAR")
    spear.add_argument("--episodes", type=int, default=60, help="search episodes (default 60)")
    spear.add_argument("--warmup", type=int, default=20, help="random-action warm-up episodes (default 20)")
    spear.add_argument("--lre-samples", type=int, default=16, help="pruned nets sampled to fit the LRE (default 16)")
    spear.add_argument("--lre-finetune-steps", type=int, help="fine-tune steps per LRE sample (default: --finetune-steps)")
    spear.add_argument("--recovery-steps", type=int, default=30, help="fine-tune steps before each episode's reward (default 30)")
    spear.add_argument("--hidden", type=int, default=300, help="DDPG hidden units (default 300)")
    spear.add_argument("--evidence", type=float, default=1.645,
                       help="paired z a searched policy needs over the uniform policy on the validation split "
                            "to be delivered (default 1.645, one-sided 5 %%; 0: deliver the best accuracy)")
    spear.add_argument("--checkpoint", help="search checkpoint (default: OUT with .search suffix)")
    spear.add_argument("--resume", action="store_true", help="continue the search from its checkpoint")
    spear.add_argument("--rollouts", type=int, default=1, help="episodes per agent batch, evaluated together "
                       "(K; default 1 = sequential agent)")
    spear.add_argument("--ray", metavar="auto|local|ADDRESS", help="evaluate candidates on Ray: 'auto' = the running "
                       "cluster, 'local' = start one here, or HOST:PORT / ray://HOST:PORT (needs neuroprune[ray]; "
                       "default: in this process)")
    spear.add_argument("--ray-workers", type=int, metavar="N", help="candidates evaluated at once on Ray "
                       "(default: the cluster's CPUs)")
    regrowth = parser.add_argument_group("SCA and criticality")
    regrowth.add_argument("--sca-steps", type=int, default=300, help="SCA: steps of pruning while training (default 300)")
    regrowth.add_argument("--sca-update-every", type=int, default=25, help="SCA: steps between prune/regrow updates")
    regrowth.add_argument("--regrow-ratio", type=float, default=0.2, help="criticality: share pruned past the target "
                          "and regrown (default 0.2)")
    unstructured = parser.add_argument_group("Grad R and ADMM (default values: see their config classes)")
    unstructured.add_argument("--alpha", type=float, help="gradr: prior strength, larger prunes more (default: calibrated to the target)")
    unstructured.add_argument("--gradr-steps", type=int, help="gradr: rewiring steps before the landing (default 150)")
    unstructured.add_argument("--weight-bits", type=int, help="admm: quantize weights to B bits, 2..8 (e.g. 4)")
    unstructured.add_argument("--ternary", action="store_true", help="admm: ternary weights {-a, 0, a}")
    unstructured.add_argument("--activity-reg", type=float, help="admm: loss per spike per sample (lambda, e.g. 1e-4)")
    unstructured.add_argument("--rho", type=float, help="admm: initial penalty rho (default 0.01)")
    unstructured.add_argument("--admm-steps", type=int, help="admm: steps before the hard projection (default 150)")
    unstructured.add_argument("--admm-update-every", type=int, help="admm: steps between Z/U updates (default 15)")
    unstructured.add_argument("--admm-scope", choices=["global", "layer"],
                              help="admm: one magnitude threshold over all layers (default) or per layer")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroprune.errors import PruneError
    from neuroprune.pipeline import load_trained, prune_and_report

    out = Path(args.out)
    if out.suffix != ".pt":
        raise PruneError(f"--out {out}: give a .pt file name (the .net and .json go beside it)")
    if not out.parent.exists():
        raise PruneError(f"--out {out}: folder {out.parent} does not exist")
    if args.checkpoint is None:
        args.checkpoint = str(out.with_suffix(".search"))
    trained = load_trained(args.model, data=args.data, seed=args.seed, resize=args.resize)
    summary = prune_and_report(trained, args, out)
    return 0 if summary["fits"] else 1
