"""SPEAR: structured pruning under a SynOps target with reinforcement learning.

The recipe (SPEAR, arXiv 2507.02945, which has no public code; see DESIGN.md):

1. **LRE** — sample pruned networks with random keep ratios, measure SynOps before and
   after fine-tuning, fit ``after ~= w * before + b`` (:mod:`neuroprune.prune.lre`).
2. **Search** — a DDPG agent (:mod:`neuroprune.prune.ddpg`) walks the prunable layers;
   per layer it sees an AMC-style state and picks a keep ratio in ``[a_min, 1]``. An
   *action wall* clamps each ratio so the remaining layers can still reach the target:
   SynOps of synaptic layer ``j`` are estimated as ``S_j * k_pre(j) * k_j`` (dense SynOps
   times the kept fraction of its input channels and of its output channels), and the
   estimate with every later layer at ``a_min`` must stay under the LRE-corrected target
   ``(target - b) / w``. Hardware budgets (cores, chips, per-core limits) are walled the
   same way with :func:`hw_models.resource_use` on the candidate structure.
3. **Reward (TAR)** — at the episode's end the channels go (importance criterion,
   default L1), the net gets a short recovery fine-tune, and

   ``reward = accuracy_val - beta * relu(pred / target - 1) - gamma * sum_b relu(use_b / budget_b - 1)``

   with ``pred`` the LRE prediction of final SynOps from the SynOps measured right after
   pruning, and ``use_b / budget_b`` each hardware budget's use (cores, chips). The
   penalty is zero inside the target and grows linearly with the overshoot (the paper's
   target-aware shape); ``beta`` (default 2) makes a 10 % overshoot cost 0.2 accuracy.
4. **Delivery** — the best few feasible policies and the uniform policy are scaled up to
   the SynOps target measured on the pruned nets (same shape; the wall and the estimate
   leave slack), fine-tuned longer and compared on validation accuracy; the winner is
   pruned, fully fine-tuned and measured; if the measured SynOps still exceed the target
   the ratios are tightened and the delivery repeated
   (:func:`neuroprune.prune.delivery.deliver`). A searched policy replaces the uniform
   one only with evidence: its paired (McNemar) z against the uniform policy on the
   validation samples must reach ``evidence`` (default 1.645). On small validation
   splits the search's accuracy differences are within noise, and the single best of a
   few noisy evaluations is biased upwards; measured on digits, picking it blindly
   delivered lower test accuracy than uniform pruning (README, Benchmarks).

Search state (LRE samples, agent, replay buffer, history, best policy) is checkpointed
after every LRE sample and every episode; ``resume=True`` continues a killed search and
gives the same result as an uninterrupted run with the same seed, because every random
draw comes from generators seeded by (seed, phase, step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hw_models import resource_use
from neuroprune.errors import CheckpointError, PruneError
from neuroprune.options import int_in, nonnegative_float, nonnegative_int, option, positive_int
from neuroprune.ir import ConvLayer, DenseLayer, Network, PoolLayer
from neuroprune.prune.base import Measurer, PruneResult, PruneTask, check_feasible, prunable, require_cuba
from neuroprune.prune.ddpg import DDPGAgent, DDPGConfig
from neuroprune.prune.delivery import deliver
from neuroprune.prune.estimate import (SynOpsModel, calibrate_scale, mean_layer_rates, measured_synops,
                                       target_keep_ratio, uniform_ratio_for)
from neuroprune.prune.executor import CandidateJob, EvaluatorSpec, Executor, InProcessExecutor, spec_for
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.importance import get_criterion
from neuroprune.prune.lre import LinearSynOpsEstimator
from neuroprune.prune.structured import keep_by_ratio, prune_network
from neuroprune.registry import lookup
from neuroprune.snn import model as snn_model
from neuroprune.snn.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["SpearConfig", "spear"]

STATE_FEATURES = 12
CHECKPOINT_KIND = "spear-search"


@dataclass(frozen=True)
class SpearConfig:
    """SPEAR hyper-parameters (search length, LRE sampling, reward shape, agent)."""

    episodes: int = field(default=60, metadata=option("--episodes", "search episodes", positive_int))
    warmup: int = field(default=20, metadata=option("--warmup", "random-action warm-up episodes (at most --episodes)",
                                                    nonnegative_int))
    lre_samples: int = field(default=16, metadata=option("--lre-samples", "pruned nets sampled to fit the LRE",
                                                         nonnegative_int))
    lre_finetune_steps: int | None = field(default=None, metadata=option(  # None: the task's final fine-tune steps
        "--lre-finetune-steps", "fine-tune steps per LRE sample (default: --finetune-steps)", nonnegative_int))
    recovery_steps: int = field(default=30, metadata=option(
        "--recovery-steps", "fine-tune steps before each episode's reward", nonnegative_int))
    a_min: float = 0.2
    criterion: str = field(default="l1", metadata=option("--criterion", "channel importance: l1, l2, rate, membrane, random"))
    beta: float = 2.0
    gamma: float = 1.0
    hidden: int = field(default=300, metadata=option("--hidden", "DDPG hidden units", int_in(1, 65536)))
    sigma: float = 0.5
    sigma_decay: float = 0.95
    max_tighten: int = 6
    finalists: int = 3  # best distinct feasible policies re-evaluated with a longer fine-tune
    rollouts: int = field(default=1, metadata=option(
        "--rollouts", "episodes per agent batch, evaluated together (K; 1 = sequential agent)", positive_int))
    fill_budget: bool = True  # scale finalists up to the measured SynOps target before comparing them
    # a searched finalist replaces the uniform policy only when it beats it on the validation
    # split by this paired z (McNemar; 1.645 = one-sided 5 %); 0 picks the best accuracy
    evidence: float = field(default=1.645, metadata=option(
        "--evidence", "paired z a searched policy needs over the uniform policy on the validation split to be "
        "delivered (1.645: one-sided 5 %; 0: deliver the best accuracy)", nonnegative_float))

    def __post_init__(self) -> None:
        if self.warmup > self.episodes:  # warm-up longer than the search: every episode explores at random
            object.__setattr__(self, "warmup", self.episodes)
        if self.rollouts < 1:
            raise PruneError(f"rollouts={self.rollouts} must be >= 1")
        if self.evidence < 0:
            raise PruneError(f"evidence={self.evidence} must be >= 0 (0: deliver the best validation accuracy)")
        if self.episodes < 1 or self.warmup < 0 or self.lre_samples < 0 or self.recovery_steps < 0:
            raise PruneError("SPEAR needs episodes >= 1 and non-negative warmup, lre_samples, recovery_steps")
        if not 0.0 < self.a_min <= 1.0:
            raise PruneError(f"a_min {self.a_min} must be in (0, 1]")

    def agent_config(self) -> DDPGConfig:
        return DDPGConfig(hidden=self.hidden, warmup=self.warmup, sigma=self.sigma, sigma_decay=self.sigma_decay,
                          a_min=self.a_min)


def _dense_features(layer: DenseLayer, shape: tuple[int, ...]) -> tuple[float, int, int, int]:
    return 0.0, 1, 1, 1


def _conv_features(layer: ConvLayer, shape: tuple[int, ...]) -> tuple[float, int, int, int]:
    return 1.0, layer.kernel_size[0], layer.stride[0], int(np.prod(shape[1:]))


def _pool_features(layer: PoolLayer, shape: tuple[int, ...]) -> tuple[float, int, int, int]:
    return 1.0, layer.kernel[0], layer.stride[0], int(np.prod(shape[1:]))  # type: ignore[index]


#: (is spatial, kernel, stride, feature-map size) of each synaptic kind, for the agent's state
LAYER_FEATURES: dict[str, Callable[[Any, tuple[int, ...]], tuple[float, int, int, int]]] = {
    "dense": _dense_features,
    "conv": _conv_features,
    "convT": _conv_features,
    "pool": _pool_features,
    "unpool": _pool_features,
}


def _layer_features(network: Network, graph: DependencyGraph, layers: list[int], synops: SynOpsModel) -> np.ndarray:
    """Static part of the state: index, type, in/out channels, kernel, stride, feature
    size, params, SynOps share (normalised by their maximum over layers)."""
    rows = []
    for t, index in enumerate(layers):
        layer = network[index]
        in_shape = network.input_shape_of(index)
        spatial, kernel, stride, size = lookup(LAYER_FEATURES, layer.kind, "SPEAR layer features",
                                               f"layer {index}")(layer, network.shapes[index])
        rows.append([
            t, spatial, in_shape[0], network.shapes[index][0], kernel, stride, size, layer.num_params,
            synops.layer_share(index),
        ])
    features = np.asarray(rows, dtype=np.float64)
    features /= np.maximum(np.abs(features).max(axis=0), 1e-12)
    return features


class _Search:
    """Environment + agent + bookkeeping of one SPEAR run."""

    def __init__(self, model: snn_model.SNN, task: PruneTask, config: SpearConfig,
                 log: Callable[[str], None], executor: Executor | None = None) -> None:
        if task.synops_target is None:
            raise PruneError("SPEAR needs a SynOps target (e.g. --synops-target 0.5)")
        self.model, self.task, self.config, self.log = model, task, config, log
        check_feasible(model, task)
        self.network, self.graph, self.layers = prunable(model)
        self.measurer = Measurer(task.dataset, task.train, "val", task.eval_samples)
        dense = self.measurer.measure(model)
        self.dense = dense
        self.synops = SynOpsModel(self.network, self.graph, dense.layer_synops)
        self.features = _layer_features(self.network, self.graph, self.layers, self.synops)
        self.layer_rates = mean_layer_rates(dense.activity.rates)
        criterion = get_criterion(config.criterion)
        if config.criterion == "membrane":
            require_cuba(model, "the 'membrane' criterion", "sigma-delta neurons have no membrane potential",
                         "use --criterion l1, l2 or rate")
            from neuroprune.snn.activity import record_activity
            from neuroprune.snn.encoders import get_encoder

            x = get_encoder(task.train.encoder)(torch.as_tensor(self.measurer.x), task.train.steps,
                                                generator=torch.Generator().manual_seed(task.seed))
            activity = record_activity(model, x, voltage=True)
        else:
            activity = dense.activity
        self.importance = criterion(self.network, activity)
        self.lre = LinearSynOpsEstimator()
        self.agent = DDPGAgent(STATE_FEATURES, config.agent_config(), seed=task.seed)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.executor = executor or InProcessExecutor()
        self.spec: EvaluatorSpec | None = None

    # -- structure helpers --------------------------------------------------------------
    def candidate(self, ratios: dict[int, float]) -> Network:
        return prune_network(self.network, keep_by_ratio(self.graph, ratios, self.importance), self.graph)

    def hardware_penalty(self, network: Network) -> tuple[float, bool, int]:
        constraints = self.task.constraints
        if constraints is None:
            return 0.0, True, 0
        use = resource_use(network, constraints, {i: self.layer_rates.get(i, 0.1) for i in
                                                  [0, *network.synaptic_indices()]})
        over = max(0.0, use.cores / constraints.max_cores - 1.0) + max(0.0, use.chips / constraints.max_chips - 1.0)
        if not use.within["per_core_limits"]:
            over += 1.0
        return over, use.ok, use.cores

    def wall_target(self) -> float:
        target = float(self.task.synops_target)
        if self.lre.stats is not None and self.lre.weight > 1e-6:
            return (target - self.lre.bias) / self.lre.weight
        return target

    def wall(self, t: int, action: float, decided: dict[int, float]) -> float:
        """Clamp the action of layer ``t`` so the target (and hardware) stay reachable."""
        a_min = self.config.a_min
        index = self.layers[t]
        rest = {i: a_min for i in self.layers[t + 1:]}
        low = self.synops.ratio({**decided, index: 0.0, **rest})
        high = self.synops.ratio({**decided, index: 1.0, **rest})
        if high > low:
            action = min(action, (self.wall_target() - low) / (high - low))
        action = float(np.clip(action, a_min, 1.0))
        if self.task.constraints is not None:
            channels = self.graph.channels(index)
            counts = sorted({max(1, int(round(channels * r))) for r in np.linspace(a_min, action, 12)})
            for count in reversed(counts):
                ratio = count / channels
                _, ok, _ = self.hardware_penalty(self.candidate({**decided, index: ratio, **rest}))
                if ok:
                    return max(a_min, min(action, ratio))
            return a_min
        return action

    def state(self, t: int, decided: dict[int, float], previous: float) -> np.ndarray:
        reduced = 1.0 - self.synops.ratio(decided)
        rest = sum(self.synops.layer_share(i) for i in self.layers[t + 1:])
        return np.concatenate([self.features[t], [reduced, rest, previous]]).astype(np.float32)

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, jobs: list[CandidateJob]) -> list[dict[str, float]]:
        """Evaluate candidates with the executor (in job order)."""
        if self.spec is None:
            self.spec = spec_for(self.model, self.task, self.importance, self.dense.synops)
        return self.executor.map(self.spec, jobs)

    def reward(self, outcome: dict[str, Any], network: Network) -> tuple[float, dict[str, Any]]:
        target = float(self.task.synops_target)
        predicted = self.lre.predict(outcome["synops_before"]) if self.lre.stats else outcome["synops_before"]
        overshoot = max(0.0, predicted / target - 1.0)
        hw_over, hw_ok, cores = self.hardware_penalty(network)
        value = outcome["accuracy"] - self.config.beta * overshoot - self.config.gamma * hw_over
        return value, {"predicted_synops": predicted, "feasible": overshoot == 0.0 and hw_ok, "cores": cores}


def _rng(seed: int, phase: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, phase, step])


def _rollout(search: _Search, episode: int) -> tuple[dict[int, float], list[tuple[np.ndarray, float, np.ndarray, bool]]]:
    """One episode's walk over the layers: walled actions and the transitions."""
    rng = _rng(search.task.seed, 2, episode)
    decided: dict[int, float] = {}
    transitions = []
    previous = 1.0
    for t, index in enumerate(search.layers):
        state = search.state(t, decided, previous)
        action = search.wall(t, search.agent.act(state, episode, rng), decided)
        decided[index] = action
        previous = action
        last = t + 1 == len(search.layers)
        transitions.append((state, action, state if last else search.state(t + 1, decided, action), last))
    return decided, transitions


def _final_choice(search: _Search, config: SpearConfig, steps: int, log: Callable[[str], None]) -> dict[int, float]:
    """Keep ratios to deliver. Finalists are the best distinct feasible policies of the
    search plus the uniform policy that meets the LRE-corrected target (the search space
    contains it; a search should never deliver worse than it), each scaled up to the
    measured target (``config.fill_budget``) and fine-tuned for ``steps``. The uniform
    policy wins unless a searched one beats it by a paired z of ``config.evidence`` on the
    validation samples; among those that do, the best validation accuracy wins."""
    feasible = sorted((h for h in search.history if h["feasible"]), key=lambda h: -h["reward"])
    candidates: list[dict[int, float]] = []
    for record in feasible:
        ratios = {int(k): float(v) for k, v in record["ratios"].items()}
        if ratios not in candidates:
            candidates.append(ratios)
        if len(candidates) == config.finalists:
            break
    common = uniform_ratio_for(search.synops, search.layers, search.wall_target(), config.a_min)
    common = target_keep_ratio(search.network, search.graph, search.layers, common, search.task.constraints,
                               search.layer_rates)
    uniform = {i: common for i in search.layers}
    if uniform not in candidates:
        candidates.append(uniform)
    uniform_at = candidates.index(uniform)
    if config.fill_budget:
        measure = measured_synops(search.model, search.task, search.graph, search.importance)
        candidates = [_fill_budget(search, c, measure) for c in candidates]
    if len(candidates) <= 1:
        return candidates[0]
    jobs = [CandidateJob(ratios, steps, seed=search.task.seed * 1000 + 900 + n) for n, ratios in enumerate(candidates)]
    outcomes = search.evaluate(jobs)
    names = ["uniform" if n == uniform_at else f"#{n + 1}" for n in range(len(candidates))]
    scores = [paired_z(o["correct"], outcomes[uniform_at]["correct"]) for o in outcomes]
    log("finalists (val accuracy after fine-tune; paired z against uniform): " + "; ".join(
        f"{name} {_show(c)}: {o['accuracy']:.4f} (z {z:+.2f})"
        for name, c, o, z in zip(names, candidates, outcomes, scores)))
    winners = [n for n in range(len(jobs)) if n == uniform_at or scores[n] >= config.evidence]
    best = max(winners, key=lambda n: (outcomes[n]["accuracy"], n == uniform_at, -n))
    if best == uniform_at and len(winners) < len(jobs):
        log(f"no searched policy beats the uniform policy by z >= {config.evidence:g} on the validation split; "
            "delivering the uniform policy")
    return jobs[best].ratios


def paired_z(correct: Sequence[int], reference: Sequence[int]) -> float:
    """McNemar-style z of a classifier against a reference on the same samples:
    ``(b - c) / sqrt(b + c)`` with ``b`` samples only it gets right and ``c`` samples
    only the reference gets right (0 when they agree everywhere)."""
    a = np.asarray(correct, dtype=bool)
    r = np.asarray(reference, dtype=bool)
    b, c = int(np.sum(a & ~r)), int(np.sum(~a & r))
    return (b - c) / float(np.sqrt(b + c)) if b + c else 0.0


def _show(ratios: dict[int, float]) -> str:
    return "{" + ", ".join(f"{i}: {r:.2f}" for i, r in sorted(ratios.items())) + "}"


def _fill_budget(search: _Search, ratios: dict[int, float],
                 measure: Callable[[dict[int, float]], float]) -> dict[int, float]:
    """Scale a policy's keep ratios up (same shape, each capped at 1) until the SynOps
    measured on the pruned net reach the LRE-corrected target, within the hardware
    budget. The wall and the analytic estimate leave slack (firing rates change when
    channels go); uniform pruning is calibrated the same way, so policies compete at the
    SynOps the user asked for rather than below it. ``measure`` gives the measured SynOps
    fraction of keep ratios (:func:`measured_synops`)."""
    smallest = min(ratios.values())
    if smallest >= 1.0:
        return dict(ratios)
    scale = calibrate_scale(measure, ratios, search.wall_target(), 1.0, 1.0 / smallest,
                            accept=lambda r: search.hardware_penalty(search.candidate(r))[1])
    return {i: min(1.0, r * scale) for i, r in ratios.items()}


# ----------------------------------------------------------------------------- checkpoint
def _save_state(path: Path, search: _Search, stage: dict[str, Any]) -> None:
    meta = {"stage": stage, "history": search.history, "best": search.best, "lre": search.lre.state_dict(),
            "layers": search.layers, "target": search.task.synops_target, "seed": search.task.seed}
    save_checkpoint(path, {"agent": search.agent.state_dict()}, meta, kind=CHECKPOINT_KIND)


def _load_state(path: Path, search: _Search) -> dict[str, Any]:
    state, meta = load_checkpoint(path, kind=CHECKPOINT_KIND)
    if meta["layers"] != search.layers or meta["target"] != search.task.synops_target or meta["seed"] != search.task.seed:
        raise CheckpointError(
            f"{path}: the checkpoint belongs to another search (layers, target or seed differ); "
            "use the same model, --synops-target and --seed, or delete the checkpoint"
        )
    search.agent.load_state_dict(state["agent"])
    search.history = meta["history"]
    search.best = meta["best"]
    search.lre = LinearSynOpsEstimator.from_state_dict(meta["lre"])
    return meta["stage"]


# ----------------------------------------------------------------------------- entry point
def spear(model: snn_model.SNN, task: PruneTask, config: SpearConfig = SpearConfig(), *,
          checkpoint: str | os.PathLike[str] | None = None, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, executor: Executor | None = None) -> PruneResult:
    """Prune ``model`` with SPEAR to ``task.synops_target`` (fraction of dense SynOps).

    ``checkpoint`` is written after every chunk of LRE samples and every batch of
    episodes; ``resume`` continues from it. ``stop_after`` ends the run after that many
    episodes in this call (used to test resumption) and returns the search state
    without delivering a model. ``executor`` evaluates candidates (default: in this
    process; see :mod:`neuroprune.prune.executor`).

    With ``config.rollouts = K > 1`` the agent plays K episodes with the same actor
    (different exploration noise), their candidates are evaluated together (in parallel
    on a parallel executor), and all K go into the replay buffer before the next batch;
    the agent therefore learns from each episode K - 1 episodes later than a strictly
    sequential agent does. K = 1 is the sequential agent.
    """
    from neuroprune.progress import task_progress

    with task_progress(progress) as bar:
        search = _Search(model, task, config, log=bar.log, executor=executor)
        path = Path(checkpoint) if checkpoint is not None else None
        stage = {"lre_done": 0, "episode": 0}
        if path is not None and resume and path.exists():
            stage = _load_state(path, search)
            bar.log(f"resumed from {path}: {stage['lre_done']} LRE samples, {stage['episode']} episodes done")
        elif resume:
            bar.log(f"no search checkpoint at {path}; starting a new search")
        lre_steps = task.finetune_steps if config.lre_finetune_steps is None else config.lre_finetune_steps

        # 1. LRE samples, in chunks the executor can run at once
        sampling = bar.add("LRE samples", total=config.lre_samples, completed=stage["lre_done"])
        chunk = max(1, search.executor.parallelism)
        while stage["lre_done"] < config.lre_samples:
            first = stage["lre_done"]
            jobs = []
            for i in range(first, min(first + chunk, config.lre_samples)):
                rng = _rng(task.seed, 1, i)
                ratios = {index: float(rng.uniform(config.a_min, 1.0)) for index in search.layers}
                jobs.append(CandidateJob(ratios, lre_steps, seed=task.seed * 1000 + i))
            for outcome in search.evaluate(jobs):
                search.lre.add(outcome["synops_before"], outcome["synops_after"])
                stage["lre_done"] += 1
                bar.advance(sampling, f"before {outcome['synops_before']:.3f} -> after {outcome['synops_after']:.3f}")
            if path is not None:
                _save_state(path, search, stage)
        if config.lre_samples >= 3 and search.lre.stats is None:
            stats = search.lre.fit(seed=task.seed)
            held_out = (f"held-out relative error {stats.holdout_mean_rel_error:.1%} "
                        f"(max {stats.holdout_max_rel_error:.1%}, {stats.holdout_samples} nets)"
                        if stats.holdout_samples else "too few samples for a held-out check")
            bar.log(f"LRE: after = {stats.weight:.3f} * before + {stats.bias:.3f}, R^2 {stats.r2:.3f}, {held_out}")

        # 2. search episodes, K rollouts at a time with the current actor
        episodes = bar.add("SPEAR episodes", total=config.episodes, completed=stage["episode"])
        ran = 0
        while stage["episode"] < config.episodes and (stop_after is None or ran < stop_after):
            batch = range(stage["episode"], min(stage["episode"] + config.rollouts, config.episodes))
            rollouts = [_rollout(search, episode) for episode in batch]
            jobs = [CandidateJob(decided, config.recovery_steps, seed=task.seed * 1000 + 500 + episode)
                    for episode, (decided, _) in zip(batch, rollouts)]
            for episode, (decided, transitions), outcome in zip(batch, rollouts, search.evaluate(jobs)):
                value, extra = search.reward(outcome, search.candidate(decided))
                losses = search.agent.end_episode(transitions, value, episode, _rng(task.seed, 3, episode))
                record = {"episode": episode, "ratios": {str(k): v for k, v in decided.items()}, "reward": value,
                          "accuracy": outcome["accuracy"], "synops_before": outcome["synops_before"],
                          "synops_after_recovery": outcome["synops_after"], **extra, **losses}
                search.history.append(record)
                if extra["feasible"] and (search.best is None or value > search.best["reward"]):
                    search.best = record
                stage["episode"] = episode + 1
                ran += 1
                best = search.best["reward"] if search.best else float("nan")
                bar.advance(episodes, f"reward {value:.3f} best {best:.3f}")
            if path is not None:
                _save_state(path, search, stage)

        info = {"lre": None if search.lre.stats is None else search.lre.stats.to_dict(),
                "dense_val_accuracy": search.dense.accuracy, "best": search.best, "episodes_done": stage["episode"]}
        if stage["episode"] < config.episodes:
            return PruneResult(model=model, method="spear", history=search.history, info={**info, "complete": False})

        # 3. delivery: the finalists are re-evaluated with the LRE's longer fine-tune, since
        # the single best of many short, noisy evaluations is biased upwards (the winner's
        # curse), and a searched policy must beat the uniform one with evidence
        if search.best is None:
            bar.log("no feasible episode: the uniform policy is the only finalist")
        ratios = _final_choice(search, config, lre_steps, bar.log)
        info["final_choice"] = ratios
        delivered, tries = deliver(model, task, ratios, search.importance, max_tighten=config.max_tighten,
                                   log=bar.log)
        info.update(delivery=tries, complete=True)
        return PruneResult(model=delivered, method="spear", history=search.history, info=info)
