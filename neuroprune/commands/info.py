"""``neuroprune info FILE.net``: a table of the layers of a netx file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="netx HDF5 network file (.net)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from converters import netx
    from hw_models.report import neuron_facts

    network = netx.read(args.file)
    table = Table(title=f"{args.file}: {len(network)} layers, {network.num_params} synapses")
    for column in ("#", "type", "shape", "params", "non-zero", "neuron", "details"):
        table.add_column(column, justify="right" if column in ("#", "params", "non-zero") else "left")
    for row, layer in zip(network.summary(), network.layers):
        facts = neuron_facts(layer)
        neuron = row["neuron"] + (f" graded {facts['payload_bits']}b" if facts["graded"] else "")
        details = ", ".join(part for part in (row["details"], facts["max_delay"] and f"delay <= {facts['max_delay']}")
                            if part)
        table.add_row(
            str(row["index"]), row["type"], "x".join(str(s) for s in row["shape"]),
            str(row["params"]), str(row["nonzero"]), neuron, details,
        )
    Console().print(table)
    return 0
