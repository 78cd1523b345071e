"""``neuroprune fit FILE.net``: does a netx network fit the chip, and if not, what to change.

Exit codes: 0 it fits, 1 it does not (every violation is printed with a fix),
2 bad input (unreadable network, bad chip file, bad option).
"""

from __future__ import annotations

import argparse

from neuroprune.options import positive_float, positive_int, probability

EXIT_FITS = 0
EXIT_DOES_NOT_FIT = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hw_models.report import DEFAULT_CHIP, DEFAULT_TIME_STEPS

    parser.add_argument("file", help="netx HDF5 network file (.net)")
    parser.add_argument("--chip", default=DEFAULT_CHIP,
                        help=f"chip preset: loihi1 or loihi2 (default: {DEFAULT_CHIP}, as for energy)")
    parser.add_argument("--chip-file", metavar="TOML", help="your own chip description (overrides --chip)")
    parser.add_argument("--max-cores", type=positive_int, metavar="N",
                        help="core budget (default: max-chips x cores per chip)")
    parser.add_argument("--max-chips", type=positive_int, metavar="N", help="chip budget (default: the chip file's, 1)")
    parser.add_argument("--max-synops", type=positive_float, metavar="X", help="SynOps per time step budget")
    parser.add_argument("--rate", type=probability, metavar="R",
                        help="assumed spike rate, spikes per neuron per time step (default: 0.1)")
    parser.add_argument("--time-steps", type=positive_int, metavar="T", default=DEFAULT_TIME_STEPS,
                        help=f"time steps per inference, for energy (default: {DEFAULT_TIME_STEPS}, as for energy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (documented keys) instead of tables")


def run(args: argparse.Namespace) -> int:
    from converters import netx
    from hw_models.chip import load_chip
    from hw_models.report import DEFAULT_RATE, fit

    chip = load_chip(args.chip_file or args.chip)
    network = netx.read(args.file)
    report = fit(
        network, chip,
        time_steps=args.time_steps,
        default_rate=DEFAULT_RATE if args.rate is None else args.rate,
        max_cores=args.max_cores, max_chips=args.max_chips, max_synops_per_step=args.max_synops,
    )
    if args.json:
        print(report.to_json())
    else:
        _print(report, args.file)
    return EXIT_FITS if report.ok else EXIT_DOES_NOT_FIT


def _print(report, path: str) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.console import Console
    from rich.table import Table

    totals = report.totals
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    table = Table(title=f"{path} on {report.chip.name}", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("#", "type", "shape", "neurons", "cores", "per core", "in axons", "out axons",
               "synapses", "memory bits", "w bits", "encoding", "SynOps/step")
    for column in columns:
        table.add_column(column, no_wrap=True, min_width=len(column),
                         justify="left" if column in ("type", "shape", "encoding") else "right")
    for layer in report.layers:
        table.add_row(
            str(layer.index), layer.type, "x".join(str(s) for s in layer.shape), str(layer.neurons),
            str(layer.cores), str(layer.neurons_per_core or "-"), str(layer.in_axons), str(layer.out_axons),
            str(layer.synapses), str(layer.synapse_memory_bits), str(layer.weight_bits or "-"), layer.encoding,
            f"{layer.synops_per_step:.4g}",
        )
    console.print(table)
    chips_note = " (needs more than one chip)" if totals.chips > 1 else ""
    console.print(
        f"cores {totals.cores} / {totals.cores_available} available, chips {totals.chips} / "
        f"{totals.chips_available}{chips_note}; neurons {totals.neurons}, synapses {totals.synapses}, "
        f"synapse memory {totals.synapse_memory_bits} bits",
        highlight=False,
    )
    console.print(
        f"SynOps/step {totals.synops_per_step:.4g} (activity {totals.activity_source}); energy per inference "
        f"{totals.energy_per_inference_j:.3g} J over {totals.time_steps} steps (45 nm: SNN "
        f"{report.energy.snn_ac_45nm_j:.3g} J vs ANN {report.energy.ann_mac_45nm_j:.3g} J)",
        highlight=False,
    )
    if report.ok:
        console.print(f"[green]fits {report.chip.name}[/green]")
        return
    console.print(f"[red]does not fit {report.chip.name}: {len(report.violations)} violation(s)[/red]")
    for violation in report.violations:
        console.print(f"  - {violation.message}", highlight=False, markup=False)
