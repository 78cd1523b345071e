"""Benchmark: SPEAR's LRE sampling in process vs on a local Ray cluster.

Trains a small conv SNN on the synthetic task, builds the LRE sample jobs exactly as
SPEAR does (random keep ratios from the seeded generator, a short fine-tune each) and
times evaluating them with :class:`InProcessExecutor` and with :class:`RayExecutor`
(``ray.init`` on this machine, ``--workers`` workers). Both must return the same
numbers. Printed: wall time of each (best of ``--repeat``), their ratios, and the
one-time Ray costs kept out of them (cluster start, first jobs that import torch on the
workers and receive the spec). The in-process run is timed twice: with torch's default
threads (what a user gets) and with one thread (what each Ray worker uses), because on
a busy machine torch's thread pool alone can cost more than the parallelism gains.

    .venv/bin/python benchmarks/bench_ray.py [--samples 8] [--finetune-steps 8] [--workers 2]

On a shared machine the numbers are noisy; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8, help="LRE samples (jobs) per timing")
    parser.add_argument("--finetune-steps", type=int, default=8, help="fine-tune steps per sample")
    parser.add_argument("--model", default="c6,c8s2,f", help="layers of the SNN (neuroprune train --layers syntax)")
    parser.add_argument("--size", type=int, default=8, help="input is SIZE x SIZE, one channel")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    parser.add_argument("--repeat", type=int, default=2, help="timings per executor; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch

    from neuroprune.data import make_synthetic
    from neuroprune.prune.base import PruneTask
    from neuroprune.prune.executor import CandidateJob, InProcessExecutor, spec_for
    from neuroprune.prune.ray_executor import RayExecutor
    from neuroprune.prune.spear import SpearConfig, _Search
    from neuroprune.snn import model as snn_model
    from neuroprune.snn.train import TrainConfig, train

    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, steps=8, seed=args.seed, validate=False)
    shape = (1, args.size, args.size)
    data = make_synthetic(num_classes=4, shape=shape, n_per_class=60, seed=args.seed)
    model = snn_model.build(args.model, shape, num_classes=4, seed=args.seed)
    train(model, data, config, progress=False)
    spear_config = SpearConfig(lre_samples=args.samples, lre_finetune_steps=args.finetune_steps)
    task = PruneTask(dataset=data, train=config, synops_target=0.5, eval_samples=96, seed=args.seed)
    search = _Search(model, task, spear_config, log=lambda _: None)
    spec = spec_for(model, task, search.importance, search.dense.synops)
    jobs = []  # as spear() draws them: generator (seed, phase 1, sample i)
    for i in range(args.samples):
        rng = np.random.default_rng([task.seed, 1, i])
        ratios = {index: float(rng.uniform(spear_config.a_min, 1.0)) for index in search.layers}
        jobs.append(CandidateJob(ratios, args.finetune_steps, seed=task.seed * 1000 + i))

    def best_of(executor) -> tuple[float, list]:
        times, results = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            results = executor.map(spec, jobs)
            times.append(time.perf_counter() - start)
        return min(times), results

    InProcessExecutor().map(spec, jobs[:1])  # the first call builds the dense model
    threads = torch.get_num_threads()
    local_time, local = best_of(InProcessExecutor())
    torch.set_num_threads(1)  # what each Ray worker uses: the fair one-core baseline
    single_time, single = best_of(InProcessExecutor())
    torch.set_num_threads(threads)

    start = time.perf_counter()
    with RayExecutor("local", num_workers=args.workers) as executor:
        started = time.perf_counter() - start
        start = time.perf_counter()
        executor.map(spec, jobs[:executor.parallelism])  # workers import torch, fetch the spec
        warm_up = time.perf_counter() - start
        ray_time, remote = best_of(executor)
    if remote != local or single != local:
        print("error: results differ between in-process and Ray runs", file=sys.stderr)
        return 1

    print(f"LRE sampling, {args.samples} samples x {args.finetune_steps} fine-tune steps, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; results equal in all runs")
    print(f"  in process, {threads} torch threads (default)  {local_time:8.2f} s")
    print(f"  in process, 1 torch thread              {single_time:8.2f} s")
    print(f"  Ray, {args.workers} workers x 1 torch thread         {ray_time:8.2f} s   (one-time, not counted: "
          f"cluster start {started:.1f} s, first jobs {warm_up:.1f} s)")
    print(f"  ratio in-process / Ray: {local_time / ray_time:.2f}x against the default in-process run, "
          f"{single_time / ray_time:.2f}x against one thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
