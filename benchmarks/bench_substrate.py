"""Benchmark: the SNN substrate's training step and candidate evaluation.

Prints, in one run on the same model and data (digits, c16,c32s2,f + d10, T = 16):

1. time per training step of a plain slayer loop (forward, cross-entropy on spike rate,
   backward, Adam) vs the same loop with neuroprune's activity hooks recording spikes
   (goal: <= 10 % overhead), and with membrane potentials recorded too;
2. evaluation throughput (samples/s) of neuroprune's no-grad path (``evaluate``:
   inference mode, batches of 128) vs slayer's default forward (autograd on, batch 64).

    .venv/bin/python benchmarks/bench_substrate.py [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from neuroprune.data import load_digits
    from neuroprune.snn import model as snn_model
    from neuroprune.snn.activity import ActivityMonitor
    from neuroprune.snn.encoders import direct
    from neuroprune.snn.train import TrainConfig, evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits(seed=0)
    steps_t = 16
    model = snn_model.build("c16,c32s2,f", data.input_shape, num_classes=10, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = direct(torch.as_tensor(data.x_train[:64]), steps_t)
    y = torch.as_tensor(data.y_train[:64])

    def step() -> None:
        output = model(x)
        loss = torch.nn.functional.cross_entropy(output.mean(dim=-1) * 8, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(variant: str) -> float:
        for _ in range(2):  # warm-up
            step()
        start = time.perf_counter()
        if variant == "plain":
            for _ in range(args.steps):
                step()
        else:
            with ActivityMonitor(model, voltage=variant == "hooks+voltage"):
                for _ in range(args.steps):
                    step()
        return (time.perf_counter() - start) / args.steps

    variants = ("plain", "hooks", "hooks+voltage")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # alternate so drifting machine load hits all variants alike
        for variant in variants:
            times[variant].append(timed(variant))
    median = {v: statistics.median(t) for v, t in times.items()}
    print(f"training step (batch 64, T={steps_t}, {args.steps} steps x {args.repeats}, median):")
    for variant in variants:
        ratio = median[variant] / median["plain"]
        print(f"  {variant:14s} {median[variant] * 1e3:8.1f} ms/step   x{ratio:.3f} of plain slayer")
    overhead = median["hooks"] / median["plain"] - 1
    print(f"  activity-hook overhead: {overhead:+.1%} (goal <= 10 %)")

    xs, ys = data.x_test, data.y_test
    config = TrainConfig(steps=steps_t)

    def slayer_default() -> float:
        model.train()
        start = time.perf_counter()
        for begin in range(0, len(xs), 64):
            model(direct(torch.as_tensor(xs[begin:begin + 64]), steps_t))
        return len(xs) / (time.perf_counter() - start)

    def ours() -> float:
        return evaluate(model, xs, ys, config).samples_per_second

    ours_rate = statistics.median([ours() for _ in range(args.repeats)])
    slayer_rate = statistics.median([slayer_default() for _ in range(args.repeats)])
    print(f"evaluation throughput on {len(xs)} test samples:")
    print(f"  slayer default forward (autograd, batch 64): {slayer_rate:8.0f} samples/s")
    print(f"  neuroprune evaluate (no grad, batch 128):    {ours_rate:8.0f} samples/s   x{ours_rate / slayer_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
