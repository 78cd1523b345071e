"""``neuroprune energy A.net|A.pt [B.net|B.pt]``: per-layer SynOps, spikes, cores and
energy per inference on a chip, counted on real inputs by our bit-exact model (or by
Lava with ``--source lava``); with two nets, a before/after comparison."""

from __future__ import annotations

import argparse

from neuroprune.options import nonnegative_int, positive_int
from neuroprune.jsonout import finite_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hw_models.report import DEFAULT_CHIP, DEFAULT_TIME_STEPS

    parser.add_argument("nets", nargs="+", metavar="NET", help="one or two .net files or .pt checkpoints "
                        "(the first is the reference, e.g. dense then pruned)")
    parser.add_argument("--data", help="digits, synthetic, a .npz (x, y) or a .npy of chip-input integers "
                        "(default: a .pt's own data; seeded random input for a .net)")
    parser.add_argument("--samples", type=positive_int, default=32, help="test samples to count on (default 32)")
    parser.add_argument("--steps", type=positive_int, help="time steps per sample (default: the model's; "
                        f"{DEFAULT_TIME_STEPS} for .net, as for fit)")
    parser.add_argument("--chip", default=DEFAULT_CHIP, help=f"chip preset or TOML file (default {DEFAULT_CHIP}, as for fit)")
    parser.add_argument("--source", default="model", choices=["model", "lava"],
                        help="count spikes with our bit-exact model (fast) or by running Lava")
    parser.add_argument("--html", help="write a self-contained HTML report with plots here")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    parser.add_argument("--seed", type=nonnegative_int, default=0)


def run(args: argparse.Namespace) -> int:
    from hw_models import fit
    from hw_models.energy_report import energy_table
    from neuroprune.errors import DataError
    from neuroprune.outputs import plan_outputs
    from neuroprune.pipeline import chip_rates, load_net_run, print_table

    if len(args.nets) > 2:
        raise DataError("give one net, or two to compare (reference first)")
    if args.samples < 1:
        raise DataError("--samples must be >= 1")
    inputs = {f"NET {number}": path for number, path in enumerate(args.nets, 1)}
    plan_outputs({"--html": args.html}, {**inputs, "--data": args.data, "--chip": args.chip})
    entries = []
    for path in args.nets:
        net_run = load_net_run(path, args.data, args.samples, args.steps, args.seed)
        rates, accuracy = chip_rates(net_run, args.source)
        report = fit(net_run.network, args.chip, rates, time_steps=net_run.x_int.shape[-1])
        entries.append((net_run.label, energy_table(report), accuracy, report.ok))
    if args.json:
        print(finite_json([{"net": label, "accuracy": acc, "fits": ok, **table.to_dict()}
                          for label, table, acc, ok in entries], indent=2))
    else:
        for label, table, accuracy, ok in entries:
            rows = [(str(r.index), r.type, f"{r.neurons:,}", str(r.cores), f"{r.synops:,.0f}", f"{r.spikes:,.0f}",
                     f"{r.energy_j * 1e6:.3f}") for r in table.layers]
            rows.append(("", "total", "", str(table.cores), f"{table.synops:,.0f}", f"{table.spikes:,.0f}",
                         f"{table.total_j * 1e6:.3f}"))
            extra = "" if accuracy is None else f", accuracy {accuracy:.4f}"
            print_table(f"{label} on {table.chip}: per inference, {table.time_steps} steps, counted by "
                        f"{args.source}{extra}", rows,
                        ("#", "type", "neurons", "cores", "SynOps", "spikes", "energy (µJ)"))
        if len(entries) == 2:
            (a, ta, _, _), (b, tb, _, _) = entries
            print(f"{b} vs {a}: SynOps x{tb.synops / ta.synops if ta.synops else 0:.3f}, "
                  f"energy x{tb.total_j / ta.total_j if ta.total_j else 0:.3f}, cores {ta.cores} -> {tb.cores}")
    if args.html:
        from neuroprune.report import ReportEntry, write_html

        path = write_html(args.html, "neuroprune energy report",
                          [ReportEntry(label, table, accuracy, ok) for label, table, accuracy, ok in entries],
                          notes=[f"Counts from {args.source} on {args.samples} samples; chip {args.chip}."],
                          searches=_searches(args.nets))
        print(f"report: {path}")
    return 0


def _searches(nets: list[str]) -> dict:
    """SPEAR search histories of the nets pruned by ``neuroprune prune --method spear``
    (its search checkpoint ``NET.search`` lies beside the ``.pt``), by file name."""
    from pathlib import Path

    from neuroprune.errors import CheckpointError
    from neuroprune.prune.spear import CHECKPOINT_KIND
    from neuroprune.snn.checkpoint import load_checkpoint

    found = {}
    for net in nets:
        search = Path(net).with_suffix(".search")
        if net.endswith(".pt") and search.is_file():
            try:
                found[Path(net).name] = load_checkpoint(search, kind=CHECKPOINT_KIND)[1]["history"]
            except CheckpointError:
                continue  # not a SPEAR search checkpoint
    return found
