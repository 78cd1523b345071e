"""``neuroprune verify FILE.net``: run the net in Lava (fixed point) and compare every
layer's spikes (graded payloads for sigma-delta layers) with neuroprune's bit-exact
model; exit 0 only at 100 %."""

from __future__ import annotations

import argparse

from neuroprune.options import nonnegative_int, positive_int
from neuroprune.jsonout import finite_json

DEFAULT_STEPS = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="netx HDF5 network file (.net)")
    parser.add_argument("--input", help=".npy input of shape (samples, *input_shape, T) or (*input_shape, T); "
                        "integers: spikes, or input mantissas for a net with an input neuron layer")
    parser.add_argument("--input-layout", choices=("auto", "chw", "xyc"), default="auto",
                        help="axis order of --input: chw (C, H, W, T as neuroprune and torch), xyc (W, H, C, T "
                        "as lava-dl's recorded inputs) or auto: whichever the shape matches (default)")
    parser.add_argument("--steps", type=positive_int, help="time steps of random input (default 32); with --input, "
                        "run this many steps replaying the input's steps cyclically, as Lava's RingBuffer source "
                        "does (lava-dl's recorded inputs, e.g. PilotNet SDNN's input.npy, hold one step)")
    parser.add_argument("--samples", type=positive_int, default=1, help="random input samples (default 1)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random input (default 0)")
    parser.add_argument("--reset-interval", type=positive_int,
                        help="reset the LIF neurons' states every N steps on both sides, as lava-dl's netx "
                        "does with hdf5.Network(reset_interval=N): each layer resets one step after the one "
                        "before it (default: no reset)")
    parser.add_argument("--reset-offset", type=nonnegative_int, default=0,
                        help="the step (from 0) at which the first layer resets, with --reset-interval (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _load_input(path: str):
    import numpy as np

    from neuroprune.errors import FormatError

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FormatError(f"{path}: no such input file") from None
    except (ValueError, OSError) as err:
        raise FormatError(f"{path}: not a readable .npy array ({err})") from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from converters import lava_verify, netx
    from neuroprune.errors import ShapeError

    steps = DEFAULT_STEPS if args.steps is None else args.steps
    if steps < 1 or args.samples < 1:
        raise ShapeError("--steps and --samples must be >= 1")
    if args.reset_offset and args.reset_interval is None:
        raise ShapeError("--reset-offset needs --reset-interval (the reset period in steps)")
    network = netx.read(args.file)
    x = None if args.input is None else _load_input(args.input)
    if x is not None and args.steps is not None:
        if x.ndim < 2 or x.shape[-1] < 1:
            raise ShapeError(f"{args.input}: input of shape {x.shape} has no time axis to replay")
        x = x[..., [t % x.shape[-1] for t in range(steps)]]
    result = lava_verify.verify(args.file, x=x, steps=steps, samples=args.samples, seed=args.seed,
                                network=network, layout=args.input_layout, reset_interval=args.reset_interval,
                                reset_offset=args.reset_offset)
    if args.json:
        print(finite_json(result.to_dict(), indent=2))
        return 0 if result.exact else 1
    source = args.input or f"seeded random input (seed {args.seed})"
    if args.reset_interval is not None:
        source += f", LIF reset every {args.reset_interval} steps from step {args.reset_offset}"
    table = Table(title=f"{args.file}: Lava Loihi2SimCfg fixed_pt vs neuroprune, {result.samples} sample(s) "
                        f"x {result.steps} steps, {source}")
    for column in ("#", "type", "shape", "match %", "Lava spikes", "our spikes", "first mismatch (sample, neuron, t)"):
        table.add_column(column)
    for m in result.layers:
        table.add_row(str(m.index), f"{m.kind} (graded)" if m.graded else m.kind, "x".join(map(str, m.shape)), f"{m.percent:.3f}", str(m.lava_spikes),
                      str(m.our_spikes), "-" if m.first_mismatch is None else str(m.first_mismatch))
    console = Console()
    console.print(table)
    verdict = "spike-exact" if result.exact else f"MISMATCH ({result.percent:.3f} % agree)"
    if any(m.graded for m in result.layers):
        console.print("graded layers: payloads compared by value; spikes counted are non-zero messages")
    console.print(f"{verdict}: {args.file}")
    return 0 if result.exact else 1
