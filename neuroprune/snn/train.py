"""BPTT training loop, its configuration and a shared recovery fine-tune.

Evaluation lives in :mod:`neuroprune.snn.evaluate` and the resumable training state in
:mod:`neuroprune.snn.train_state`; :func:`evaluate`, :class:`EvalResult`, :func:`classify`
and :func:`resolve_device` are re-exported here.

Model contract
--------------
A ``torch.nn.Module`` whose ``forward(x)`` takes input sequences ``(N, *input_shape, T)``
(float, time last, as lava-dl slayer uses) and returns output spikes
``(N, num_classes, T)``. The predicted class is the argmax of the spike count over
time; ties go to the lowest class index.

Losses
------
- ``"rate"``: cross-entropy on the output spike rate, ``CE(s * r, y)`` with
  ``r = mean_t spikes`` (spikes per step) and ``s = config.logit_scale``.
- ``"tet"``: temporal efficient training (Deng et al., ICLR 2022), the mean over time
  of per-step cross-entropy, ``(1/T) Σ_t CE(s * spikes[..., t], y)`` (the paper's
  optional MSE regulariser is not included).

A sigma-delta model (``neuroprune.snn.model.SNN`` with a ``SigmaDeltaConfig``) adds its
delta-message regulariser (``model.event_loss``, set by its forward) to the loss.

Pruning methods hook in through ``on_step(model, step)`` (called after every optimizer
step: re-apply masks, regrow, ...) and ``extra_loss(model, output) -> scalar tensor``
(activity regularisation, ADMM penalties), both of :func:`train` and :func:`fine_tune`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from neuroprune.data import Dataset, batches
from neuroprune.errors import NeuropruneError
from neuroprune.snn import train_state
from neuroprune.snn.checkpoint import save_checkpoint
from neuroprune.snn.encoders import ENCODERS, get_encoder
from neuroprune.snn.evaluate import EvalResult, check_output, classify, evaluate, resolve_device

__all__ = [
    "TrainConfig",
    "TrainHistory",
    "EvalResult",
    "train",
    "evaluate",
    "fine_tune",
    "classify",
    "compute_loss",
    "resolve_device",
    "OPTIMIZERS",
    "SCHEDULES",
    "LOSSES",
]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
LOSSES = ("rate", "tet")

OnStep = Callable[[torch.nn.Module, int], None]
ExtraLoss = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    Attributes
    ----------
    epochs : passes over the training split.
    batch_size : samples per optimizer step.
    lr : learning rate (peak, for the cosine schedule).
    optimizer : ``"adam"`` or ``"sgd"`` (SGD uses ``momentum``).
    weight_decay : L2 coefficient passed to the optimizer.
    schedule : ``"cosine"`` (to 0 over all planned steps) or ``"constant"``.
    steps : time steps ``T`` per sample.
    encoder : input encoder name (``direct``, ``rate``, ``delta``), see
        :mod:`neuroprune.snn.encoders`.
    loss : ``"rate"`` or ``"tet"`` (see module docstring).
    logit_scale : factor turning spike rates (spikes/step, in [0, 1]) into logits.
    seed : seeds weights-independent randomness: shuffling, encoders, dropout.
    device : ``"cpu"`` or ``"cuda"`` (error if no GPU is available).
    max_steps : optional cap on optimizer steps (quick runs, fine-tunes).
    log_every : refresh the progress bar's loss every this many steps.
    momentum : SGD momentum.
    eval_batch_size : batch size of the no-grad evaluation.
    validate : evaluate the validation split after every epoch.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    steps: int = 16
    encoder: str = "direct"
    loss: str = "rate"
    logit_scale: float = 8.0
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    log_every: int = 10
    momentum: float = 0.9
    eval_batch_size: int = 128  # measured: larger batches are slower on CPU (time-last tensors)
    validate: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, need: str) -> NeuropruneError:
            return NeuropruneError(f"TrainConfig.{name} = {value!r}: {need}")

        for name in ("epochs", "batch_size", "steps", "log_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise bad(name, value, "must be an integer >= 1")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 0):
            raise bad("max_steps", self.max_steps, "must be None or an integer >= 0")
        if not self.lr > 0:
            raise bad("lr", self.lr, "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", self.weight_decay, "must be >= 0")
        if not self.logit_scale > 0:
            raise bad("logit_scale", self.logit_scale, "must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"choose one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise bad("loss", self.loss, f"choose one of {', '.join(LOSSES)}")
        if self.encoder not in ENCODERS:
            raise bad("encoder", self.encoder, f"choose one of {', '.join(sorted(ENCODERS))}")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise bad("device", self.device, "choose 'cpu' or 'cuda'")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for checkpoint metadata)."""
        return dataclasses.asdict(self)


@dataclass
class TrainHistory:
    """What :func:`train` did, per epoch (lists are aligned by epoch)."""

    loss: list[float] = field(default_factory=list)
    """mean training loss of each epoch (including ``extra_loss``)."""
    train_accuracy: list[float] = field(default_factory=list)
    """fraction of training samples classified right during each epoch (in [0, 1])."""
    val_accuracy: list[float] = field(default_factory=list)
    """validation accuracy after each epoch (empty when ``config.validate`` is off)."""
    lr: list[float] = field(default_factory=list)
    """learning rate at the end of each epoch."""
    epoch_time_s: list[float] = field(default_factory=list)
    """wall time of each epoch in seconds (training plus validation)."""
    optimizer_steps: int = 0
    """optimizer steps taken in total."""
    wall_time_s: float = 0.0
    """wall time of the whole run in seconds (validation and checkpoints included)."""
    step_time_s: float = 0.0
    """wall time spent in training steps only (encode, forward, backward, update, hooks)."""

    @property
    def seconds_per_step(self) -> float:
        """Mean wall time of one training step in seconds (validation excluded)."""
        return self.step_time_s / max(self.optimizer_steps, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- helpers
def compute_loss(output: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Training loss of output spikes ``(N, K, T)`` for labels ``y`` (see module docstring)."""
    if config.loss == "rate":
        return F.cross_entropy(config.logit_scale * output.mean(dim=-1), y)
    # TET: average of per-time-step cross-entropies
    steps = output.shape[-1]
    logits = config.logit_scale * output.permute(2, 0, 1).reshape(steps * output.shape[0], -1)
    return F.cross_entropy(logits, y.repeat(steps))


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NeuropruneError("model has no trainable parameters (requires_grad=True)")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _progress(enabled: bool):  # -> rich.progress.Progress
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


# --------------------------------------------------------------------------- train
def train(
    model: torch.nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    on_step: OnStep | None = None,
    extra_loss: ExtraLoss | None = None,
    progress: bool = True,
    state: str | os.PathLike[str] | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``dataset.x_train`` with BPTT; return the history.

    Deterministic under ``config.seed``: ``torch.manual_seed(seed)`` is set at the start,
    and shuffling and the encoder draw from their own generators seeded from it. Two
    runs from the same initial weights and config give identical weights.

    ``on_step(model, step)`` runs after every optimizer step (``step`` counts from 0
    over the whole run). ``extra_loss(model, output)`` is added to the loss of each
    batch (``output`` are the output spikes ``(N, K, T)``). With ``checkpoint`` a model
    checkpoint (weights; meta: config, epoch, history, ``checkpoint_meta``) is written
    atomically after every epoch.

    With ``state`` the whole training state (weights, optimizer, schedule, random
    generators, epoch, history) is written there atomically after every epoch;
    ``resume=True`` continues from it, and the result is identical to an uninterrupted
    run with the same config. ``stop_after_epochs`` ends this call after that many
    epochs (an interruption, for tests).
    """
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    encode_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    encoder = get_encoder(config.encoder)

    n_train = len(dataset.y_train)
    if n_train == 0:
        raise NeuropruneError(f"data set {dataset.name!r} has no training samples")
    batches_per_epoch = math.ceil(n_train / config.batch_size)
    planned = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        planned = min(planned, config.max_steps)

    optimizer = _make_optimizer(model, config)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(planned, 1))
        if config.schedule == "cosine"
        else None
    )
    history = TrainHistory()
    start = time.perf_counter()
    step = 0
    first_epoch = 0
    generators = {"shuffle": shuffle_gen, "encode": encode_gen}
    if resume and state is not None and os.path.exists(state):
        first_epoch, step, done = train_state.load_train_state(state, model, optimizer, scheduler, generators,
                                                               config, dataset)
        history = TrainHistory(**done)
        start -= history.wall_time_s
    with _progress(progress) as bar:
        task = bar.add_task("train", total=planned, status="", completed=step)
        for epoch in range(first_epoch, config.epochs):
            if step >= planned or (stop_after_epochs is not None and epoch - first_epoch >= stop_after_epochs):
                break
            epoch_start = time.perf_counter()
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for xb, yb in batches(
                dataset.x_train, dataset.y_train, config.batch_size,
                shuffle=True, generator=shuffle_gen, device=device,
            ):
                if step >= planned:
                    break
                step_start = time.perf_counter()
                inputs = encoder(xb, config.steps, generator=encode_gen)
                output = check_output(model(inputs), len(yb), dataset.num_classes, config.steps)
                loss = compute_loss(output, yb, config)
                event_loss = getattr(model, "event_loss", None)  # sigma-delta nets: delta regulariser
                if event_loss is not None:
                    loss = loss + event_loss
                    model.event_loss = None
                if extra_loss is not None:
                    loss = loss + extra_loss(model, output)
                if not torch.isfinite(loss):
                    raise NeuropruneError(
                        f"training loss became {loss.item()} at step {step} (epoch {epoch}); "
                        "lower lr or check extra_loss"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if on_step is not None:
                    on_step(model, step)
                step += 1
                history.step_time_s += time.perf_counter() - step_start
                loss_sum += loss.item() * len(yb)
                correct += int((classify(output.detach()) == yb).sum())
                seen += len(yb)
                bar.advance(task)
                if step % config.log_every == 0:
                    bar.update(
                        task,
                        description=f"train epoch {epoch + 1}/{config.epochs}",
                        status=f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f}",
                    )
            history.loss.append(loss_sum / max(seen, 1))
            history.train_accuracy.append(correct / max(seen, 1))
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            if config.validate and len(dataset.y_val):
                val = evaluate(model, dataset.x_val, dataset.y_val, config)
                history.val_accuracy.append(val.accuracy)
            history.epoch_time_s.append(time.perf_counter() - epoch_start)
            history.optimizer_steps = step
            history.wall_time_s = time.perf_counter() - start
            val_text = f" val {history.val_accuracy[-1]:.3f}" if history.val_accuracy else ""
            bar.update(
                task,
                description=f"train epoch {epoch + 1}/{config.epochs}",
                status=f"loss {history.loss[-1]:.3f} acc {history.train_accuracy[-1]:.3f}{val_text}",
            )
            if checkpoint is not None:
                meta = dict(checkpoint_meta or {})
                meta.update(
                    epoch=epoch + 1, config=config.to_dict(), history=history.to_dict(),
                    dataset=dataset.name, input_shape=list(dataset.input_shape),
                    num_classes=dataset.num_classes,
                )
                save_checkpoint(checkpoint, model.state_dict(), meta)
            if state is not None:
                train_state.save_train_state(state, model, optimizer, scheduler, generators, config, epoch + 1,
                                             step, history, dataset)
    history.optimizer_steps = step
    history.wall_time_s = time.perf_counter() - start
    return history


# --------------------------------------------------------------------------- fine-tune
def fine_tune(
    model: torch.nn.Module,
    dataset: Dataset,
    steps: int,
    config: TrainConfig,
    *,
    on_step: OnStep | None = None,
    extra_loss: ExtraLoss | None = None,
    lr: float | None = None,
    progress: bool = False,
) -> TrainHistory:
    """Recovery fine-tune: exactly ``steps`` optimizer steps (fewer only if ``steps`` is 0).

    Uses ``config`` with ``max_steps = steps``, as many epochs as that needs, no
    per-epoch validation, and ``lr`` if given (e.g. a tenth of the training lr).
    ``on_step`` should re-apply pruning masks so pruned weights stay zero.
    """
    if steps < 0:
        raise NeuropruneError(f"fine_tune: steps must be >= 0, got {steps}")
    per_epoch = math.ceil(len(dataset.y_train) / config.batch_size)
    tune_config = dataclasses.replace(
        config,
        epochs=max(1, math.ceil(steps / max(per_epoch, 1))),
        max_steps=steps,
        validate=False,
        lr=config.lr if lr is None else lr,
    )
    return train(
        model, dataset, tune_config, on_step=on_step, extra_loss=extra_loss, progress=progress
    )
