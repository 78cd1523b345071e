"""Uniform pruning: the same keep ratio for every prunable layer (the simplest baseline).

With a SynOps target the ratio is found by bisection on the measured SynOps of the
pruned net (started from the analytic estimate of
:class:`neuroprune.prune.estimate.SynOpsModel`), then delivered like every method: prune,
fine-tune, tighten until the measured SynOps are under the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neuroprune.errors import PruneError
from neuroprune.options import open_fraction, option
from neuroprune.prune.base import Measurer, PruneResult, PruneTask, check_feasible, prunable
from neuroprune.prune.delivery import deliver
from neuroprune.prune.estimate import SynOpsModel, calibrate_scale, measured_synops, uniform_ratio_for
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.importance import get_criterion
from neuroprune.snn import model as snn_model

__all__ = ["UniformConfig", "uniform", "calibrate_ratio"]


@dataclass(frozen=True)
class UniformConfig:
    """``ratio``: keep ratio for every layer (used when the task has no SynOps target)."""

    ratio: float | None = field(default=None, metadata=option(
        "--keep-ratio", "channel keep ratio when no SynOps target is given (uniform, SCA, criticality)", open_fraction))
    criterion: str = field(default="l1", metadata=option("--criterion", "channel importance: l1, l2, rate, membrane, random"))
    a_min: float = 0.05


def calibrate_ratio(model: snn_model.SNN, task: PruneTask, graph: DependencyGraph, layers: list[int],
                    importance: dict, target: float, low: float, high: float = 1.0, iterations: int = 8) -> float:
    """Largest common keep ratio whose *measured* SynOps (pruned, before fine-tuning, on
    the inputs the delivery is checked on) stay under ``target``; bisection between
    ``low`` and ``high``. The analytic estimate ignores how firing rates change when
    channels go, so this lands closer to the target than the estimate alone."""
    measure = measured_synops(model, task, graph, importance)
    return calibrate_scale(measure, {i: 1.0 for i in layers}, target, low, high, iterations)


def uniform(model: snn_model.SNN, task: PruneTask, config: UniformConfig = UniformConfig(), *,
            progress: bool = True) -> PruneResult:
    """Prune every prunable layer to the same keep ratio (to meet ``task.synops_target``
    when given, else ``config.ratio``)."""
    from neuroprune.progress import task_progress

    check_feasible(model, task)
    network, graph, layers = prunable(model)
    measured = Measurer(task.dataset, task.train, "val", task.eval_samples).measure(model)
    importance = get_criterion(config.criterion)(network, measured.activity)
    if task.synops_target is not None:
        estimate = uniform_ratio_for(SynOpsModel(network, graph, measured.layer_synops), layers, task.synops_target,
                                     config.a_min)
        ratio = calibrate_ratio(model, task, graph, layers, importance, task.synops_target,
                                low=config.a_min, high=min(1.0, estimate * 1.5))
    elif config.ratio is not None:
        ratio = config.ratio
    else:
        raise PruneError("uniform pruning needs a SynOps target or a keep ratio")
    with task_progress(progress) as bar:
        bar.log(f"uniform keep ratio {ratio:.3f} on layers {layers}")
        delivered, tries = deliver(model, task, {i: ratio for i in layers}, importance, log=bar.log)
    return PruneResult(model=delivered, method="uniform", history=tries, info={"ratio": ratio, "delivery": tries})
