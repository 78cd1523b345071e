"""Benchmark: ``neuroprune fit`` as a whole process vs loading the same file with lava-dl.

Writes two netx files with lava-dl's own slayer blocks (a dense MNIST-like 784-512-10
net and a conv net), then times, each as a fresh Python process (median of ``--runs``):

- ``neuroprune fit FILE --chip loihi2 --json`` (read, map, report);
- ``lava.lib.dl.netx.hdf5.Network(net_config=FILE)`` (only loading the file into Lava).

Prints the times and the ratio, and exits 1 if a fit process takes 0.5 s or more.

    .venv/bin/python benchmarks/bench_fit.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIT_BUDGET_S = 0.5


def write_lava_dl_nets(folder: Path) -> dict[str, Path]:
    """Export a dense and a conv net with lava-dl slayer blocks (export_hdf5)."""
    import h5py
    import torch

    import lava.lib.dl.slayer as slayer

    neuron = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "tau_grad": 0.03, "scale_grad": 3, "requires_grad": False}
    torch.manual_seed(0)
    nets = {
        "dense 784-512-10": (torch.rand(1, 784, 2), [
            slayer.block.cuba.Dense(neuron, 784, 512, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Dense(neuron, 512, 10, weight_scale=4, weight_norm=False),
        ]),
        "conv 1x28x28 c8 c16 d10": (torch.rand(1, 1, 28, 28, 2), [
            slayer.block.cuba.Input(neuron),
            slayer.block.cuba.Conv(neuron, 1, 8, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Conv(neuron, 8, 16, 3, padding=1, stride=2, weight_scale=4, weight_norm=False),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(neuron, 16 * 7 * 7, 10, weight_scale=4, weight_norm=False),
        ]),
    }
    paths = {}
    for index, (name, (x, blocks)) in enumerate(nets.items()):
        with torch.no_grad():
            for block in blocks:
                x = block(x)
        path = folder / f"net{index}.net"
        with h5py.File(path, "w") as handle:
            group = handle.create_group("layer")
            for i, block in enumerate(blocks):
                block.export_hdf5(group.create_group(str(i)))
        paths[name] = path
    return paths


def time_process(argv: list[str], runs: int) -> float:
    """Median wall time (s) of running ``argv`` as a process; fails loudly on errors."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fit_cmd = [sys.executable, "-m", "neuroprune.cli", "fit"]
    lava_load = "import sys; from lava.lib.dl.netx import hdf5; hdf5.Network(net_config=sys.argv[1])"
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        files = write_lava_dl_nets(Path(tmp))
        print(f"{'network':<26}{'neuroprune fit':>16}{'lava-dl netx load':>20}{'ratio':>8}")
        for name, path in files.items():
            fit_s = time_process([*fit_cmd, str(path), "--chip", "loihi2", "--json"], args.runs)
            lava_s = time_process([sys.executable, "-c", lava_load, str(path)], args.runs)
            worst = max(worst, fit_s)
            print(f"{name:<26}{fit_s:>14.3f} s{lava_s:>18.3f} s{lava_s / fit_s:>7.1f}x")
    print(f"ratio = lava-dl load time / fit time (processes, median of {args.runs}); "
          f"slowest fit {worst:.3f} s, budget {FIT_BUDGET_S} s")
    return 0 if worst < FIT_BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
