"""Benchmark: ``neuroprune fit`` at real scale, against loading the same file with lava-dl.

1. Whole processes (median of ``--runs``), each file also loaded by lava-dl netx
   (``lava.lib.dl.netx.hdf5.Network(net_config=FILE)``, imports included) in the same run:

   - two nets written by lava-dl's own slayer blocks (dense 784-512-10, small conv);
   - lava-dl's PilotNet LIF example (shipped with lava-dl: 5 convs + 4 dense), on
     loihi1 (does not fit one chip: fixes computed) and loihi2;
   - VGG-11 at 32x32 input (the issue's net) and at 74x74 (about 12,000 Loihi 1
     cores), written with our netx writer.

2. A scale series in one process: synthetic dense nets (1,000-neuron layers, 1 to 30
   of them) and conv nets (three 3x3 convs, 10^3 to 10^7 neurons), fit CPU time per
   size (best of ``--runs``; the check alone and with fixes) and the slope of
   log(time) against log(neurons), overall and between the two largest nets.

Exits 1 when a budget is missed: PilotNet fit >= 1 s per process or < 5x faster than
the lava-dl load; the ~12,000-core net >= 2 s; a fitted slope above 1.15. Process
budgets are checked on CPU time (user + sys; wall time is printed beside it), which on
a quiet machine is the wall time of these single-threaded processes and on a shared
one does not count the other jobs.

    .venv/bin/python benchmarks/bench_fit.py [--runs 3] [--no-lava]
"""

from __future__ import annotations

import argparse
import resource
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PILOTNET = "tests/lava/lib/dl/netx/gts/pilotnet_lif/network.net"
PILOTNET_BUDGET_S = 1.0
PILOTNET_SPEEDUP = 5.0
BIG_NET_BUDGET_S = 2.0
SLOPE_BUDGET = 1.15


def write_lava_dl_nets(folder: Path) -> dict[str, Path]:
    """Export lava-dl's tutorial-sized dense and conv nets with slayer's own export_hdf5."""
    from converters.slayer_export import example_blocks, export_blocks

    names = {"dense 784-512-10": "dense", "conv 1x28x28 c8 c16 d10": "conv"}
    paths = {}
    for index, (label, name) in enumerate(names.items()):
        sample, blocks = example_blocks(name)
        paths[label] = export_blocks(blocks, folder / f"net{index}.net", sample)
    return paths


def vgg11(size: int, classifier: tuple[int, ...], seed: int = 0):
    """VGG-11 (8 convs 3x3 p1, 5 sum pools 2x2, dense classifier) on 3 x size x size."""
    from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer

    rng = np.random.default_rng(seed)
    neuron = Neuron()
    layers = [InputLayer(shape=(3, size, size), neuron=neuron)]
    channels = 3
    for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if item == "M":
            layers.append(PoolLayer(kernel=2, weight=64, neuron=neuron))
            continue
        weight = rng.integers(-128, 128, size=(item, channels, 3, 3), dtype=np.int32)
        layers.append(ConvLayer(weight=weight, padding=1, neuron=neuron))
        channels = item
    layers.append(FlattenLayer())
    inputs = channels * (size // 32) ** 2
    for width in (*classifier, 10):
        layers.append(DenseLayer(weight=rng.integers(-128, 128, size=(width, inputs), dtype=np.int32), neuron=neuron))
        inputs = width
    return Network(layers, name=f"vgg11_{size}")


def dense_chain(depth: int, width: int = 1000, seed: int = 0):
    """Input of ``width`` host spikes, then ``depth`` dense layers of ``width`` neurons."""
    from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron

    rng = np.random.default_rng(seed)
    layers = [InputLayer(shape=(width,))]
    layers += [DenseLayer(weight=rng.integers(-128, 128, size=(width, width), dtype=np.int32), neuron=Neuron())
               for _ in range(depth)]
    return Network(layers, name=f"dense_{depth}x{width}")


def conv_stack(size: int, seed: int = 0):
    """Input 1 x size x size neurons, convs 3x3: 1->8, 8->16 s2, 16->16 (16 size^2 neurons)."""
    from neuroprune.ir import ConvLayer, InputLayer, Network, Neuron

    rng = np.random.default_rng(seed)
    neuron = Neuron()
    layers = [InputLayer(shape=(1, size, size), neuron=neuron)]
    for cin, cout, stride in ((1, 8, 1), (8, 16, 2), (16, 16, 1)):
        weight = rng.integers(-128, 128, size=(cout, cin, 3, 3), dtype=np.int32)
        layers.append(ConvLayer(weight=weight, padding=1, stride=stride, neuron=neuron))
    return Network(layers, name=f"conv_{size}")


def time_process(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys, s) of running ``argv`` as a
    process; fails loudly on errors."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return statistics.median(walls), statistics.median(cpus)


def fit_cores(path: Path, chip: str) -> int:
    import json

    done = subprocess.run([sys.executable, "-m", "neuroprune.cli", "fit", str(path), "--chip", chip, "--json"],
                          capture_output=True, text=True)
    return json.loads(done.stdout)["totals"]["cores"]


def pilotnet_file() -> Path:
    for folder in site.getsitepackages():
        if (Path(folder) / PILOTNET).exists():
            return Path(folder) / PILOTNET
    raise SystemExit(f"lava-dl's PilotNet LIF example not found ({PILOTNET} in site-packages)")


def processes(folder: Path, runs: int, lava: bool) -> list[str]:
    """Time fit processes next to lava-dl loads; returns the budget misses."""
    from converters import netx

    fit_cmd = [sys.executable, "-m", "neuroprune.cli", "fit"]
    lava_load = "import sys; from lava.lib.dl.netx import hdf5; hdf5.Network(net_config=sys.argv[1])"
    files = {name: (path, "loihi2") for name, path in write_lava_dl_nets(folder).items()}
    pilotnet = pilotnet_file()
    files["PilotNet LIF (lava-dl)"] = (pilotnet, "loihi1")
    files["PilotNet LIF (lava-dl) "] = (pilotnet, "loihi2")
    files["VGG-11 32x32"] = (netx.write(vgg11(32, (4096, 4096)), folder / "vgg11_32.net"), "loihi1")
    files["VGG-11 74x74"] = (netx.write(vgg11(74, (512, 512)), folder / "vgg11_74.net"), "loihi1")
    misses = []
    print(f"{'network':<24}{'chip':<8}{'cores':>7}{'fit wall / cpu':>18}{'lava-dl load wall / cpu':>26}"
          f"{'ratio':>8}")
    for name, (path, chip) in files.items():
        fit_wall, fit_cpu = time_process([*fit_cmd, str(path), "--chip", chip, "--json"], runs)
        lava_wall, lava_cpu = (time_process([sys.executable, "-c", lava_load, str(path)], runs) if lava
                               else (float("nan"), float("nan")))
        cores = fit_cores(path, chip)
        ratio = lava_cpu / fit_cpu
        print(f"{name.strip():<24}{chip:<8}{cores:>7}{fit_wall:>9.2f} / {fit_cpu:.2f} s"
              f"{lava_wall:>16.2f} / {lava_cpu:.2f} s{ratio:>7.1f}x")
        if name.startswith("PilotNet"):
            if fit_cpu >= PILOTNET_BUDGET_S:
                misses.append(f"PilotNet fit {fit_cpu:.2f} s CPU >= {PILOTNET_BUDGET_S} s")
            if lava and ratio < PILOTNET_SPEEDUP:
                misses.append(f"PilotNet fit only {ratio:.1f}x faster than the lava-dl load")
        if name == "VGG-11 74x74" and fit_cpu >= BIG_NET_BUDGET_S:
            misses.append(f"{cores}-core fit {fit_cpu:.2f} s CPU >= {BIG_NET_BUDGET_S} s")
    print(f"processes, imports included, median of {runs}; ratio = lava-dl load / fit, CPU time "
          "(user + sys: the budgets are checked on it, as wall time on a shared machine measures the load)")
    return misses


def _cpu_time(call, runs: int) -> float:
    """Best CPU time (s) of at least ``runs`` calls of ``call()`` in this process, and of
    as many as fit in half a second (the least disturbed by other jobs on a shared
    machine)."""
    samples: list[float] = []
    while len(samples) < runs or sum(samples) < 0.5:
        start = time.process_time()
        call()
        samples.append(time.process_time() - start)
    return min(samples)


SEARCH_CHECK_BUDGET_S = 0.005


def search_check(runs: int) -> list[str]:
    """The check a pruning search calls per candidate (``resource_use``) and a whole
    ``fit`` of a five-layer conv net, in this process, next to reading the same net back
    from its netx file; returns the budget misses."""
    from converters import netx
    from hw_models import Constraints, resource_use
    from hw_models.report import fit
    from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron

    rng = np.random.default_rng(0)
    neuron = Neuron()
    net = Network([
        InputLayer(shape=(1, 16, 16), neuron=neuron),
        ConvLayer(weight=rng.integers(-60, 60, (8, 1, 3, 3)), neuron=neuron, padding=(1, 1)),
        ConvLayer(weight=rng.integers(-60, 60, (16, 8, 3, 3)), neuron=neuron, stride=(2, 2), padding=(1, 1)),
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-60, 60, (64, 16 * 8 * 8)), neuron=neuron),
        DenseLayer(weight=rng.integers(-60, 60, (10, 64)), neuron=neuron),
    ])
    constraints = Constraints.from_chip("loihi1")
    with tempfile.TemporaryDirectory() as tmp:
        path = netx.write(net, Path(tmp) / "five.net")
        read = _cpu_time(lambda: netx.read(path), runs)
    check = _cpu_time(lambda: resource_use(net, constraints), runs)
    whole = _cpu_time(lambda: fit(net, "loihi1"), runs)
    print(f"\nsearch check on a 5-layer conv net (CPU time, in process): resource_use {check * 1e3:.2f} ms, "
          f"fit {whole * 1e3:.2f} ms, reading its netx file {read * 1e3:.2f} ms "
          f"(resource_use x{read / check:.1f} faster than the read)")
    return [f"{name} took {t * 1e3:.2f} ms (> {SEARCH_CHECK_BUDGET_S * 1e3:.0f} ms)"
            for name, t in (("resource_use", check), ("fit", whole)) if t > SEARCH_CHECK_BUDGET_S]


def scale_series(runs: int) -> list[str]:
    """Fit time against network size in one process; returns the budget misses.

    Two timings per net: the check alone (a chip budget every net meets, so no fix is
    computed) and the check with fixes (a budget of one core, which every net breaks
    the same way: the core-budget fixes, prune and quantize).
    """
    from hw_models.report import fit

    misses = []
    families = {  # built one at a time (the largest hold 10^8 bytes)
        "dense": (dense_chain(depth) for depth in (1, 3, 10, 30)),
        "conv": (conv_stack(size) for size in (8, 25, 80, 250, 790)),
    }
    print(f"\n{'series':<8}{'network':<16}{'neurons':>12}{'cores':>8}{'check':>10}{'with fixes':>13}  (CPU time)")
    for family, nets in families.items():
        sizes, checks, fixes = [], [], []
        for net in nets:
            report = fit(net, "loihi1", max_chips=10**6)
            sizes.append(sum(net.num_neurons(i) for i in net.neuron_indices()))
            checks.append(_cpu_time(lambda: fit(net, "loihi1", max_chips=10**6), runs))
            fixes.append(_cpu_time(lambda: fit(net, "loihi1", max_cores=1, max_chips=10**6), runs))
            print(f"{family:<8}{net.name:<16}{sizes[-1]:>12,}{report.totals.cores:>8}{checks[-1]:>8.3f} s"
                  f"{fixes[-1]:>11.3f} s")
        for label, times in (("check", checks), ("with fixes", fixes)):
            slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
            top = float(np.log(times[-1] / times[-2]) / np.log(sizes[-1] / sizes[-2]))
            print(f"{family:<8}{label}: fitted slope of log(CPU time) vs log(neurons) {slope:.2f}; "
                  f"between the two largest nets {top:.2f}")
            if max(slope, top) > SLOPE_BUDGET:
                misses.append(f"{family} series ({label}) grows as neurons^{max(slope, top):.2f} "
                              f"(> {SLOPE_BUDGET})")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-lava", action="store_true", help="skip the lava-dl loads (no ratios)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        misses = processes(Path(tmp), args.runs, not args.no_lava)
    misses += search_check(args.runs)
    misses += scale_series(args.runs)
    for miss in misses:
        print(f"budget missed: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
