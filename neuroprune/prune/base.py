"""What every pruning method shares: the task it gets, the result it returns, and one
way to measure a candidate (accuracy, SynOps, chip fit).

Every method has the same call shape::

    result = method(model, task, config)      # -> PruneResult(model, history, ...)

with ``task`` a :class:`PruneTask` (data, training recipe, target, hardware
constraints, seed) and ``config`` the method's own frozen dataclass.

SynOps follow DESIGN.md: per inference, sum over time steps and synaptic layers of
(spikes of each presynaptic neuron x its non-zero outgoing synapses), counted with the
cost model of :mod:`hw_models` from the activity recorded during evaluation: slayer's
float forward for CUBA nets (its spikes are the chip's), the bit-exact chip model of the
exported IR for sigma-delta nets (see :data:`MESSAGE_COUNTERS`), so a SynOps target is met
in the messages the chip sends.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw_models import DEFAULT_CHIP, Constraints, fit, resource_use
from neuroprune.atomic import atomic_path
from neuroprune.data import Dataset
from neuroprune.errors import PruneError
from neuroprune.jsonout import finite_json
from neuroprune.snn import model as snn_model
from neuroprune.registry import lookup
from neuroprune.snn.activity import Activity, ActivityMonitor, fixed_point_activity
from neuroprune.snn.evaluate import EvalResult, chip_inputs
from neuroprune.snn.train import TrainConfig, evaluate, fine_tune

__all__ = ["PruneTask", "PruneResult", "Measurement", "Measurer", "write_summary", "SUMMARY_KEYS", "require_cuba",
           "finetune_seed"]


@dataclass(frozen=True)
class PruneTask:
    """The problem every method solves.

    Attributes
    ----------
    dataset : training split for fine-tuning, validation split for search rewards,
        test split for the reported numbers.
    train : training recipe (time steps, encoder, batch size, lr) used for fine-tuning.
    synops_target : wanted SynOps as a fraction of the dense network's (e.g. 0.5), or None.
    sparsity : wanted fraction of removed synapses (unstructured methods), or None.
    constraints : hardware budgets (chip, cores, ...) the result must fit, or None.
    finetune_steps : optimizer steps of the final fine-tune.
    finetune_lr : learning rate of fine-tunes (default: a tenth of the training lr).
    eval_samples : validation samples used to measure candidates during a search.
    seed : seeds everything random in the method.
    calibration_samples : inputs (the first of validation + test) on which keep ratios
        are calibrated to the SynOps target before delivery (None: all of them; the
        delivery itself always checks all of them).
    """

    dataset: Dataset
    train: TrainConfig
    synops_target: float | None = None
    sparsity: float | None = None
    constraints: Constraints | None = None
    finetune_steps: int = 200
    finetune_lr: float | None = None
    eval_samples: int = 512
    seed: int = 0
    calibration_samples: int | None = None

    def __post_init__(self) -> None:
        if self.synops_target is not None and not 0.0 < self.synops_target <= 1.0:
            raise PruneError(f"SynOps target {self.synops_target} must be a fraction of the dense SynOps in (0, 1]")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise PruneError(f"sparsity {self.sparsity} must be in [0, 1)")
        if self.finetune_steps < 0 or self.eval_samples < 1:
            raise PruneError("finetune_steps must be >= 0 and eval_samples >= 1")
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise PruneError(f"calibration_samples {self.calibration_samples} must be >= 1 (or None: all inputs)")

    @property
    def lr(self) -> float:
        return self.finetune_lr if self.finetune_lr is not None else self.train.lr * 0.1


@dataclass
class PruneResult:
    """A pruned model and what the method did (one dict per step/episode/epoch)."""

    model: snn_model.SNN
    method: str
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    """Accuracy and SynOps of a model on one split."""

    accuracy: float
    synops: float  # per inference
    synops_per_step: float
    layer_synops: dict[int, float]  # per inference, by IR layer index
    params: int
    nonzero: int
    activity: Activity = field(repr=False, compare=False)
    correct: np.ndarray | None = field(default=None, repr=False, compare=False)  # per sample, bool


class Measurer:
    """Measures candidates on a fixed set of inputs, so SynOps ratios compare like with like.

    ``split`` is "val" (search rewards) or "test" (reported numbers); at most
    ``max_samples`` samples are used.
    """

    def __init__(self, dataset: Dataset, config: TrainConfig, split: str = "val", max_samples: int | None = None,
                 chip: str = DEFAULT_CHIP) -> None:
        x, y = {"val": (dataset.x_val, dataset.y_val), "test": (dataset.x_test, dataset.y_test),
                "train": (dataset.x_train, dataset.y_train)}[split]
        if max_samples is not None:
            x, y = x[:max_samples], y[:max_samples]
        if len(y) == 0:
            raise PruneError(f"the {split} split of {dataset.name!r} is empty; cannot measure")
        self.x, self.y, self.config, self.split, self.chip = x, y, config, split, chip

    def measure(self, model: snn_model.SNN) -> Measurement:
        count = lookup(MESSAGE_COUNTERS, getattr(model, "neuron_kind", "cuba"), "message count", "Measurer")
        network = snn_model.to_ir(model)
        result, activity = count(model, network, self.x, self.y, self.config)
        report = fit(network, self.chip, activity.rates, time_steps=activity.steps, suggest_fixes=False)
        steps = activity.steps
        layers = {layer.index: layer.synops_per_step * steps for layer in report.layers if layer.synops_per_step}
        return Measurement(
            accuracy=result.accuracy,
            synops=report.totals.synops_per_step * steps,
            synops_per_step=report.totals.synops_per_step,
            layer_synops=layers,
            params=network.num_params,
            nonzero=sum(int(np.count_nonzero(layer.effective_weight)) for layer in network.layers
                        if hasattr(layer, "effective_weight")),
            activity=activity,
            correct=np.asarray(result.predictions) == np.asarray(self.y),
        )


def _float_messages(model: snn_model.SNN, network: Any, x: np.ndarray, y: np.ndarray,
                    config: TrainConfig) -> tuple[EvalResult, Activity]:
    """Accuracy and activity of slayer's float forward (the blocks' spikes as hooked)."""
    with ActivityMonitor(model) as monitor:
        result = evaluate(model, x, y, config)
    activity = monitor.result()
    if model.ir_offset:  # no input neuron layer: the encoded input spikes are layer 0
        activity.rates[0] = _input_rates(x, config)
    return result, activity


def _chip_messages(model: snn_model.SNN, network: Any, x: np.ndarray, y: np.ndarray,
                   config: TrainConfig) -> tuple[EvalResult, Activity]:
    """Accuracy of slayer's float forward; activity counted by the bit-exact chip model
    (:func:`~neuroprune.snn.fixed.run_fixed`, equal to Lava) on ``network``, the exported IR,
    with the chip inputs ``neuroprune energy`` counts on."""
    result = evaluate(model, x, y, config)
    generator = torch.Generator().manual_seed(config.seed + 1)
    size = config.eval_batch_size
    batches = (chip_inputs(model, x[start:start + size], config, generator) for start in range(0, len(x), size))
    return result, fixed_point_activity(network, batches)


#: where the messages behind a measured SynOps count (so behind every SynOps target) are
#: counted, per neuron kind (``SNN.neuron_kind``), from (model, its IR, x, y, config).
#: CUBA: slayer's float forward, whose blocks model the chip's one-step synaptic delay
#: and integer states, so its spikes are the chip's. Sigma-delta: the chip model, because
#: slayer's sigma_delta blocks train without that delay (lava-dl's recipe) while on the
#: chip every layer receives one step late: a hidden neuron first sends its bias-only
#: activation (the mean-only norm's bias) and, a step per layer later, the change the
#: input makes, so the chip sends about twice the float forward's messages per hidden
#: layer (more with depth), plus what 8-bit weights and the truncated vThMant add.
#: Counting on the chip makes a target hold there.
MESSAGE_COUNTERS: dict[str, Any] = {"cuba": _float_messages, "sdnn": _chip_messages}


def _input_rates(x: np.ndarray, config: TrainConfig) -> np.ndarray:
    from neuroprune.snn.encoders import get_encoder

    encoded = get_encoder(config.encoder)(torch.as_tensor(x), config.steps,
                                          generator=torch.Generator().manual_seed(config.seed + 1))
    return (encoded > 0).double().mean(dim=(0, encoded.ndim - 1)).numpy()


def require_cuba(model: snn_model.SNN, method: str, why: str, fix: str = "use spear, uniform, gradr or admm") -> None:
    """Refuse, in one line, a method that applies to CUBA nets only (``why``: what it needs)."""
    kind = getattr(model, "neuron_kind", "cuba")
    if kind != "cuba":
        raise PruneError(f"{method} does not apply to {kind} nets: {why}; {fix}")


def fits(model: snn_model.SNN, task: PruneTask, activity: Activity | None = None) -> tuple[bool, int]:
    """Whether ``model`` meets the task's hardware constraints, and its core count."""
    network = snn_model.to_ir(model)
    if task.constraints is None:
        report = fit(network, DEFAULT_CHIP, None if activity is None else activity.rates, suggest_fixes=False)
        return report.ok, report.totals.cores
    use = resource_use(network, task.constraints, None if activity is None else activity.rates)
    return use.ok, use.cores


def prunable(model: snn_model.SNN) -> tuple[Any, Any, list[int]]:
    """``(network, dependency graph, prunable layer indices)`` of ``model``; refuses a
    net whose only synapses feed the output layer."""
    from neuroprune.prune.graph import DependencyGraph

    network = snn_model.to_ir(model)
    graph = DependencyGraph(network)
    layers = graph.prunable()
    if not layers:
        raise PruneError("the network has no prunable layers (only the output layer carries synapses)")
    return network, graph, layers


def check_feasible(model: snn_model.SNN, task: PruneTask) -> None:
    """Refuse budgets that no pruning can meet: even one channel per prunable layer
    must fit the task's hardware constraints."""
    if task.constraints is None:
        return
    from neuroprune.prune.graph import DependencyGraph
    from neuroprune.prune.structured import prune_network

    network = snn_model.to_ir(model)
    graph = DependencyGraph(network)
    smallest = prune_network(network, {i: [0] for i in graph.prunable()}, graph)
    use = resource_use(smallest, task.constraints)
    if not use.ok:
        broken = [name for name, ok in use.within.items() if not ok]
        raise PruneError(
            f"impossible hardware budget: even with one channel in every prunable layer the net needs "
            f"{use.cores} cores on {use.chips} chip(s) of {task.constraints.chip.name} "
            f"(budget {task.constraints.max_cores} cores, {task.constraints.max_chips} chips; broken: "
            f"{', '.join(broken)}); each layer needs cores of its own, so raise --max-cores to at least {use.cores}"
        )


FINETUNE_SEED_OFFSET = 7919
"""Offset of a method's final fine-tune seed from the run seed (attempt 0)."""
FINETUNE_SEED_STRIDE = 2**32
"""Distance between the fine-tune seeds of successive delivery attempts: larger than any
run seed below 2**32, so attempts of different run seeds never meet."""


def finetune_seed(seed: int, attempt: int = 0) -> int:
    """Seed of the final fine-tune of run ``seed``, delivery attempt ``attempt``.

    Attempt 0 is ``seed + 7919`` (every single-fine-tune method, and the first delivery
    try). Attempt ``a`` adds ``a * 2**32``: for run seeds in ``[0, 2**32 - 1)`` no two
    (seed, attempt) pairs share a seed, nor do two attempts' seeds lie one apart (the
    fine-tune also draws from ``seed + 1``), so run seed ``s`` retrying never replays the
    fine-tune of run seed ``s + 1``."""
    if seed < 0 or attempt < 0:
        raise ValueError(f"finetune_seed needs a non-negative seed and attempt (got seed {seed}, attempt {attempt})")
    return seed + FINETUNE_SEED_OFFSET + attempt * FINETUNE_SEED_STRIDE


def finetune(model: snn_model.SNN, task: PruneTask, steps: int, seed: int, on_step: Any = None) -> None:
    """Fine-tune in place with the task's recipe and a seed of its own."""
    if steps <= 0:
        return
    config = dataclasses.replace(task.train, seed=seed)
    fine_tune(model, task.dataset, steps, config, lr=task.lr, on_step=on_step)


SUMMARY_KEYS = ("method", "target", "synops_dense", "synops_pruned", "synops_ratio", "acc_dense", "acc_pruned",
                "fits", "cores")


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write the JSON summary every method produces (atomic: temp file + rename)."""
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise PruneError(f"summary lacks keys {missing}")
    with atomic_path(path) as tmp:
        tmp.write_text(finite_json(summary, indent=2, default=_json_default) + "\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------- delivery
def synops_inputs(dataset: Dataset) -> Dataset:
    """The inputs on which a delivered net must meet its SynOps target: validation and
    test inputs together (SynOps use no labels; the reported numbers come from these)."""
    return dataclasses.replace(
        dataset,
        x_val=np.concatenate([dataset.x_val, dataset.x_test]),
        y_val=np.concatenate([dataset.y_val, dataset.y_test]),
    )
