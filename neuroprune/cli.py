"""Command line interface: ``neuroprune <command> ...``.

Each command lives in ``neuroprune/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``; modules are imported only when their command runs, so
``neuroprune info`` and ``neuroprune fit`` start without torch or Lava.

Exit codes: 0 success, 1 a check failed (does not fit, spikes differ), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from neuroprune.errors import NeuropruneError

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("neuroprune.commands.info", "print the layers of a netx file"),
    "fit": ("neuroprune.commands.fit", "check that a netx network fits a neuromorphic chip"),
    "train": ("neuroprune.commands.train", "train an SNN on slayer CUBA blocks (digits by default)"),
    "prune": ("neuroprune.commands.prune", "prune a trained model under a SynOps target and chip budgets"),
    "energy": ("neuroprune.commands.energy", "energy per inference per layer, before/after, HTML report"),
    "demo": ("neuroprune.demo", "train -> fit -> SPEAR -> netx -> Lava -> energy report on digits"),
    "verify": ("neuroprune.commands.verify", "run a netx file in Lava and check spike-exact agreement"),
    "convert": ("neuroprune.commands.convert", "convert between .net, .nir, .pt and .onnx (ANN -> SNN)"),
}

EXIT_BAD_INPUT = 2


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. With ``argv``, only the command it names gets its options (a
    command's options may import what that command needs, e.g. the pruning methods'
    configs import torch, and ``neuroprune fit`` must start without it)."""
    parser = argparse.ArgumentParser(prog="neuroprune", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version="neuroprune 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        if argv is None or name == wanted:
            importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Small SNNs gain little from torch's thread pool, and on a busy CPU its threads
    # spin against each other (measured: 0.11 s vs 5.5 s per training step on 2 cores).
    # One thread unless the user says otherwise; torch reads this when it is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad option (argparse printed why)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "_module", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except NeuropruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
