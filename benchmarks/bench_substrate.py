"""Benchmark: the SNN substrate's training step and candidate evaluation.

Prints, in one run on the same model and data (default: Fashion-MNIST at 14x14,
``c16s2,c32,c32s2,f`` + d64 + d10, T = 12 -- the net of ``bench_spear.py``; ``--data
digits`` for the 8x8 digits with ``c16,c32s2,f``, T = 16):

1. time per training step of a plain slayer loop (forward, cross-entropy on spike rate,
   backward, Adam) vs the same loop with neuroprune's activity hooks recording spikes
   (goal: <= 10 % overhead), with membrane potentials recorded too, and neuroprune's
   recovery fine-tune (:func:`neuroprune.snn.train.fine_tune`, goal: no slower than the
   plain loop);
2. candidate evaluation: samples/s of slayer's own no-grad forward (``inference_mode``,
   ``fast_inference`` off) vs neuroprune's ``evaluate`` (the fused forward of
   :mod:`neuroprune.snn.fast`), same net, same batch size, and whether the spikes of
   every layer are identical (goal: >= 2x, identical).

    .venv/bin/python benchmarks/bench_substrate.py [--data digits] [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

NETS = {  # data -> (arch, time steps, resize)
    "fashion-mnist": ("c16s2,c32,c32s2,f,d64", 12, 14),
    "digits": ("c16,c32s2,f", 16, None),
}


def eval_speed(model: Any, x: Any, y: Any, config: Any, repeats: int = 3) -> dict[str, float]:
    """Samples/s of slayer's no-grad forward and of ``evaluate`` (fused path) on ``x``
    with ``config.eval_batch_size``, the ratio, and whether every layer's spikes agree
    on the first batch. Repeats alternate; medians are reported."""
    import torch

    from neuroprune.snn.encoders import get_encoder
    from neuroprune.snn.train import evaluate

    encode = get_encoder(config.encoder)
    batch = config.eval_batch_size

    def slayer_forward() -> float:
        model.fast_inference = False
        model.eval()
        try:
            start = time.perf_counter()
            with torch.inference_mode():
                for begin in range(0, len(x), batch):
                    model(encode(torch.as_tensor(x[begin:begin + batch]), config.steps))
            return len(x) / (time.perf_counter() - start)
        finally:
            model.fast_inference = True

    def fused() -> float:
        start = time.perf_counter()
        evaluate(model, x, y, config)
        return len(x) / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"slayer": [], "fused": []}
    for _ in range(repeats):
        rates["slayer"].append(slayer_forward())
        rates["fused"].append(fused())
    sample = encode(torch.as_tensor(x[:batch]), config.steps)
    with torch.inference_mode():
        model.fast_inference = False
        reference = model.forward_all(sample)
        model.fast_inference = True
        ours = model.forward_all(sample)
    same = all(torch.equal(a, b) for a, b in zip(reference, ours))
    slayer_rate, fused_rate = statistics.median(rates["slayer"]), statistics.median(rates["fused"])
    return {"slayer_samples_per_s": slayer_rate, "fused_samples_per_s": fused_rate,
            "ratio": fused_rate / slayer_rate, "spikes_identical": same, "samples": len(x), "batch": batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion-mnist", choices=sorted(NETS))
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (median reported)")
    parser.add_argument("--eval-samples", type=int, default=2048, help="test samples of the evaluation timing")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from neuroprune.data import load
    from neuroprune.resize import resize_dataset
    from neuroprune.snn import model as snn_model
    from neuroprune.snn.activity import ActivityMonitor
    from neuroprune.snn.encoders import direct
    from neuroprune.snn.train import TrainConfig, fine_tune

    if args.threads:
        torch.set_num_threads(args.threads)
    arch, steps_t, size = NETS[args.data]
    data = resize_dataset(load(args.data, seed=0), size)
    model = snn_model.build(arch, data.input_shape, num_classes=data.num_classes, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = direct(torch.as_tensor(data.x_train[:64]), steps_t)
    y = torch.as_tensor(data.y_train[:64])
    config = TrainConfig(steps=steps_t, batch_size=64, lr=1e-3)

    def step() -> None:
        output = model(x)
        loss = torch.nn.functional.cross_entropy(output.mean(dim=-1) * 8, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(variant: str) -> float:
        if variant == "fine_tune":
            fine_tune(model, data, 2, config)  # warm-up
            return fine_tune(model, data, args.steps, config).step_time_s / args.steps
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

    variants = ("plain", "hooks", "hooks+voltage", "fine_tune")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # alternate so drifting machine load hits all variants alike
        for variant in variants:
            times[variant].append(timed(variant))
    median = {v: statistics.median(t) for v, t in times.items()}
    print(f"{arch} on {data.name} {data.input_shape}: training step (batch 64, T={steps_t}, "
          f"{args.steps} steps x {args.repeats}, median):")
    for variant in variants:
        ratio = median[variant] / median["plain"]
        print(f"  {variant:14s} {median[variant] * 1e3:8.1f} ms/step   x{ratio:.3f} of plain slayer")
    print(f"  activity-hook overhead: {median['hooks'] / median['plain'] - 1:+.1%} (goal <= 10 %); "
          f"recovery fine-tune vs plain slayer: {median['fine_tune'] / median['plain'] - 1:+.1%} (goal <= 0)")

    n = min(args.eval_samples, len(data.y_test))
    speed = eval_speed(model, data.x_test[:n], data.y_test[:n], config, args.repeats)
    print(f"candidate evaluation on {n} test samples (no grad, batch {speed['batch']}, median of {args.repeats}):")
    print(f"  slayer's no-grad forward:           {speed['slayer_samples_per_s']:8.0f} samples/s")
    print(f"  neuroprune evaluate (fused CUBA):   {speed['fused_samples_per_s']:8.0f} samples/s   "
          f"x{speed['ratio']:.2f} (goal >= 2); spikes identical in every layer: {speed['spikes_identical']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
