"""``neuroprune train --data digits --arch c16,c32s2,f --out model.pt``: train an SNN on
slayer CUBA blocks (or, with ``--neuron sdnn``, a sigma-delta ReLU net on slayer's
``sigma_delta`` blocks, lava-dl's PilotNet SDNN recipe), then report test accuracy in
float and in the chip's fixed point.

The full training state goes to ``OUT.train`` after every epoch; ``--resume`` continues
an interrupted run from it and ends with the same weights as an uninterrupted run.
``OUT`` itself (and ``--net``) is written once, when training has finished, so an
interrupted run never replaces a finished model with partial weights."""

from __future__ import annotations

import argparse

from neuroprune.options import nonnegative_float, nonnegative_int, positive_float, positive_int

DEFAULT_ARCH = "c16,c32s2,f"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="digits", help="digits (default), synthetic, fashion-mnist, a folder of IDX "
                        "files, a .npz with x, y, or an image folder")
    parser.add_argument("--resize", type=positive_int, metavar="N", help="resize images to N x N pixels (area down-sampling, "
                        "e.g. 14 for 28x28 Fashion-MNIST on a CPU budget); prune reuses it")
    parser.add_argument("--arch", default=DEFAULT_ARCH,
                        help=f"layers, e.g. '{DEFAULT_ARCH}' (c<out>[k][s][p][g] conv, f flatten, d<out> dense); "
                             "the classifier layer is appended")
    parser.add_argument("--neuron", default="cuba", choices=["cuba", "sdnn"],
                        help="cuba (default: Loihi's CUBA LIF, binary spikes) or sdnn (sigma-delta ReLU, graded "
                             "spikes, Loihi 2; the input is delta-encoded and the classifier integrates)")
    parser.add_argument("--event-weight", type=nonnegative_float, default=0.01,
                        help="sdnn: weight of the delta-message regulariser (default 0.01; 0 turns it off)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--net", help="also export the trained net to this netx file (.net)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="passes over the training split (default 20)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-2)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--steps", type=positive_int, default=16, help="time steps per sample (default 16)")
    parser.add_argument("--encoder", default="direct", help="direct (default), rate or delta")
    parser.add_argument("--loss", default="rate", choices=["rate", "tet"])
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from OUT.train (same options needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroprune.data import load
    from neuroprune.errors import UnsupportedLayerError
    from neuroprune.outputs import plan_outputs
    from neuroprune.pipeline import fixed_point_accuracy, print_table, write_model_files
    from neuroprune.resize import resize_dataset
    from neuroprune.snn import model as snn_model
    from neuroprune.snn.train import TrainConfig, evaluate, train

    out = Path(args.out)
    state = out.with_name(out.name + ".train")
    plan_outputs({"--out": out, "--out (training state)": state, "--net": args.net}, {"--data": args.data})
    arch = snn_model.parse_arch(args.arch)
    dataset = resize_dataset(load(args.data, seed=args.seed), args.resize)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         steps=args.steps, encoder=args.encoder, loss=args.loss, seed=args.seed, device=args.device)
    neuron = snn_model.SigmaDeltaConfig(event_weight=args.event_weight) if args.neuron == "sdnn" else None
    model = snn_model.build(arch, dataset.input_shape, num_classes=dataset.num_classes, neuron=neuron,
                            input_neuron=args.encoder == "direct", seed=args.seed, name=out.stem)
    meta = {"model": model.meta(), "dataset": args.data, "data_seed": args.seed, "resize": args.resize}
    if args.resume and not state.is_file():
        print(f"no training state at {state}; starting from epoch 1")
    # Per-epoch state goes to OUT.train only: OUT itself is written once, finished.
    history = train(model, dataset, config, progress=not args.quiet, state=state, resume=args.resume)
    model.to("cpu")
    float_acc = evaluate(model, dataset.x_test, dataset.y_test, config).accuracy
    try:
        fixed_acc = fixed_point_accuracy(model, dataset.x_test, dataset.y_test, config)
        fixed_text = f"{fixed_acc:.4f}"
    except UnsupportedLayerError as err:  # a neuron type the bit-exact model does not run
        fixed_acc, fixed_text = None, f"n/a ({err})"
    write_model_files(out, model, {**meta, "config": config.to_dict(), "history": history.to_dict(),
                                   "test_accuracy": float_acc, "test_accuracy_fixed_point": fixed_acc},
                      net_path=None if args.net is None else Path(args.net))
    rows = [("test accuracy (float, slayer)", f"{float_acc:.4f}"),
            ("test accuracy (fixed point, as on chip)", fixed_text),
            ("training time", f"{history.wall_time_s:.1f} s ({history.optimizer_steps} steps)")]
    if args.net:
        rows.append(("netx export", args.net))
    print_table(f"{args.arch} on {dataset.name}", rows, ("", "value"))
    print(f"wrote {out}")
    return 0
