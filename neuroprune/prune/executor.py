"""Candidate evaluation, the expensive part of a pruning search, behind one interface.

A candidate is a set of keep ratios; evaluating it means: prune the dense model,
measure SynOps, fine-tune for some steps, measure SynOps and accuracy again. Jobs are
independent, so an executor may run them anywhere:

- :class:`InProcessExecutor` (default) runs them one after another in this process;
- a Ray executor (``neuroprune.prune.ray_executor``, ``pip install neuroprune[ray]``)
  ships the :class:`EvaluatorSpec` once to the cluster and runs jobs on workers.

Results come back in job order and depend only on the spec and the job (each job seeds
its own fine-tune), so every executor gives the same numbers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["CandidateJob", "EvaluatorSpec", "Executor", "InProcessExecutor", "evaluate_candidate", "spec_for"]


@dataclass(frozen=True)
class CandidateJob:
    """Keep ratios (IR layer index -> fraction kept), fine-tune steps and the seed."""

    ratios: dict[int, float]
    finetune_steps: int
    seed: int


@dataclass(frozen=True)
class EvaluatorSpec:
    """Everything a worker needs, plain data only (picklable, shippable once)."""

    model_meta: dict[str, Any]
    model_state: dict[str, Any]
    task: Any  # neuroprune.prune.base.PruneTask
    importance: dict[int, np.ndarray]
    dense_synops: float
    token: str = ""  # identifies the spec in a worker's model cache


_MODELS: dict[str, Any] = {}  # per-process cache: spec token -> rebuilt dense model


def _dense_model(spec: EvaluatorSpec) -> Any:
    from neuroprune.snn import model as snn_model

    key = spec.token or str(id(spec))
    if key not in _MODELS:
        _MODELS.clear()
        model = snn_model.build_from_meta(spec.model_meta)
        model.load_state_dict(spec.model_state)
        _MODELS[key] = model
    return _MODELS[key]


def evaluate_candidate(spec: EvaluatorSpec, job: CandidateJob) -> dict[str, Any]:
    """Prune, measure, fine-tune, measure: SynOps ratios (to dense) before and after the
    fine-tune, the validation accuracy after it and which validation samples were
    classified right (``correct``, 0/1 per sample, for paired comparisons)."""
    from neuroprune.prune.base import Measurer, finetune
    from neuroprune.prune.graph import DependencyGraph
    from neuroprune.prune.structured import keep_by_ratio, prune_model
    from neuroprune.snn import model as snn_model

    model = _dense_model(spec)
    task = spec.task
    graph = DependencyGraph(snn_model.to_ir(model))
    ratios = {int(k): float(v) for k, v in job.ratios.items()}
    pruned = prune_model(model, keep_by_ratio(graph, ratios, spec.importance), graph)
    measurer = Measurer(task.dataset, task.train, "val", task.eval_samples)
    before = measurer.measure(pruned)
    finetune(pruned, task, job.finetune_steps, seed=job.seed)
    after = measurer.measure(pruned) if job.finetune_steps > 0 else before
    return {"synops_before": before.synops / spec.dense_synops, "synops_after": after.synops / spec.dense_synops,
            "accuracy": after.accuracy, "correct": [int(c) for c in after.correct]}


class Executor(Protocol):
    """Runs candidate jobs; ``parallelism`` is how many run at once (1 = sequential)."""

    parallelism: int

    def map(self, spec: EvaluatorSpec, jobs: Sequence[CandidateJob]) -> list[dict[str, Any]]:
        ...  # pragma: no cover


class InProcessExecutor:
    """Evaluates jobs one after another in this process (no extra dependency)."""

    parallelism = 1

    def map(self, spec: EvaluatorSpec, jobs: Sequence[CandidateJob]) -> list[dict[str, Any]]:
        return [evaluate_candidate(spec, job) for job in jobs]


def spec_for(model: Any, task: Any, importance: dict[int, np.ndarray], dense_synops: float) -> EvaluatorSpec:
    """An :class:`EvaluatorSpec` of ``model`` (weights copied to CPU)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return EvaluatorSpec(model_meta=model.meta(), model_state=state, task=task,
                         importance={int(k): np.asarray(v) for k, v in importance.items()},
                         dense_synops=float(dense_synops), token=uuid.uuid4().hex)

