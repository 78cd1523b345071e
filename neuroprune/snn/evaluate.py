"""Fast no-grad evaluation of a spiking model: accuracy and output spike counts.

The model contract (input ``(N, *input_shape, T)``, output spikes ``(N, num_classes,
T)``, class = arg-max of the spike count) is described in :mod:`neuroprune.snn.train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroprune.data import batches
from neuroprune.errors import NeuropruneError
from neuroprune.snn.encoders import get_encoder

if TYPE_CHECKING:
    from neuroprune.snn.train import TrainConfig

__all__ = ["EvalResult", "evaluate", "classify", "check_output", "resolve_device", "chip_inputs"]


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Outcome of :func:`evaluate` on ``total`` samples."""

    accuracy: float
    """fraction classified right, in [0, 1]."""
    correct: int
    total: int
    predictions: np.ndarray
    """predicted class per sample, int64 (N,)."""
    spike_counts: np.ndarray
    """output spikes per sample and class summed over time, float32 (N, num_classes)."""
    mean_output_rate: float
    """output spikes per neuron per time step, averaged over samples."""
    seconds: float
    """wall time of the evaluation in seconds."""

    @property
    def samples_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")



def resolve_device(device: str) -> torch.device:
    """``torch.device`` for ``"cpu"`` / ``"cuda[:k]"``; error if CUDA is not available."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NeuropruneError(
                f"device {device!r} requested but no CUDA GPU is available to torch "
                "(torch.cuda.is_available() is False); use device 'cpu'"
            )
        return torch.device(device)
    if device != "cpu":
        raise NeuropruneError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    return torch.device("cpu")


def check_output(output: Any, n: int, num_classes: int | None, steps: int) -> torch.Tensor:
    """``output`` when it is output spikes ``(n, num_classes, steps)``; else a clear error."""
    if isinstance(output, (tuple, list)):
        raise NeuropruneError(
            "model.forward returned a tuple; return only the output spikes "
            "(N, num_classes, T) — disable count_log on slayer blocks"
        )
    if not isinstance(output, torch.Tensor) or output.dim() != 3 or output.shape[0] != n:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise NeuropruneError(
            f"model output has shape {shape}; expected (N={n}, num_classes, T={steps}) "
            "— end the model with a Dense block (Flatten first for conv outputs)"
        )
    if num_classes is not None and output.shape[1] != num_classes:
        raise NeuropruneError(
            f"model has {output.shape[1]} output neurons but the data set has "
            f"{num_classes} classes; size the last layer to {num_classes}"
        )
    return output

def classify(output: torch.Tensor) -> torch.Tensor:
    """Predicted class: argmax of spike count over time (first index on ties)."""
    return output.sum(dim=-1).argmax(dim=1)



def evaluate(
    model: torch.nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    config: TrainConfig | None = None,
    *,
    steps: int | None = None,
    encoder: str | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> EvalResult:
    """Accuracy and output spike counts of ``model`` on ``(x, y)``, without gradients.

    Time steps, encoder, batch size, seed and device come from ``config`` unless given
    explicitly (defaults without a config: the :class:`TrainConfig` defaults). Runs under
    ``torch.inference_mode`` with ``model.eval()`` and restores the model's training mode.
    Stochastic encoders draw from a generator seeded with ``seed`` (repeatable).
    """
    if config is None:
        from neuroprune.snn.train import TrainConfig  # train imports this module

        config = TrainConfig()
    base = config
    steps = base.steps if steps is None else steps
    encode = get_encoder(base.encoder if encoder is None else encoder)
    batch_size = base.eval_batch_size if batch_size is None else batch_size
    seed = base.seed if seed is None else seed
    dev = resolve_device(base.device if device is None else device)
    x_np = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if len(x_np) != len(y_np):
        raise NeuropruneError(f"evaluate: x has {len(x_np)} samples but y has {len(y_np)}")
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    was_training = model.training
    model.to(dev)
    model.eval()
    counts: list[torch.Tensor] = []
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for xb, _ in batches(x_np, y_np, batch_size, device=dev):
                output = check_output(model(encode(xb, steps, generator=gen)), len(xb), None, steps)
                counts.append(output.sum(dim=-1).float().cpu())
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    if counts:
        spike_counts = torch.cat(counts)
        predictions = spike_counts.argmax(dim=1).numpy().astype(np.int64)
        rate = float(spike_counts.mean()) / steps
    else:
        spike_counts, predictions, rate = torch.zeros((0, 0)), np.zeros(0, np.int64), 0.0
    correct = int((predictions == y_np.astype(np.int64)).sum())
    total = len(y_np)
    return EvalResult(
        accuracy=correct / total if total else float("nan"),
        correct=correct,
        total=total,
        predictions=predictions,
        spike_counts=spike_counts.numpy().astype(np.float32),
        mean_output_rate=rate,
        seconds=seconds,
    )


def chip_inputs(model: Any, x: np.ndarray, config: "TrainConfig",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Integer chip input ``(N, *input_shape, T)`` for samples ``x``: encoded as in training
    (``config``'s encoder and steps; stochastic encoders draw from ``generator``, by default
    one seeded with ``config.seed + 1`` as :func:`evaluate` seeds its own), then as the chip
    receives it (:meth:`neuroprune.snn.model.SNN.chip_input`)."""
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed + 1)
    encoded = get_encoder(config.encoder)(torch.as_tensor(x), config.steps, generator=generator)
    return model.chip_input(encoded)
