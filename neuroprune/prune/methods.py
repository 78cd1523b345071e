"""Registry of pruning methods for the CLI: name -> how to run it from parsed arguments.

Every method has the call shape ``method(model, task, config) -> PruneResult``; an
entry here turns command-line options into the method's config. Add a method by adding
a :class:`MethodSpec` to :data:`METHODS`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from neuroprune.errors import PruneError

if TYPE_CHECKING:  # pragma: no cover - the registry must import without torch
    from neuroprune.prune.base import PruneResult, PruneTask
    from neuroprune.snn.model import SNN

__all__ = ["MethodSpec", "METHODS", "get_method"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    help: str
    run: Callable[["SNN", "PruneTask", argparse.Namespace], "PruneResult"]
    needs: str = "synops"  # "synops": needs --synops-target; "sparsity": --sparsity; "either"
    config: Callable[[argparse.Namespace], object] = lambda args: None  # the method's config from the options


def _spear_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.spear import SpearConfig

    address, workers = getattr(args, "ray", None), getattr(args, "ray_workers", None)
    if address is None and workers is not None:
        raise PruneError(f"--ray-workers {workers} needs --ray auto|local|ADDRESS (without it candidates run here)")
    return SpearConfig(
        episodes=args.episodes, warmup=min(args.warmup, args.episodes), lre_samples=args.lre_samples,
        lre_finetune_steps=args.lre_finetune_steps, recovery_steps=args.recovery_steps, criterion=args.criterion,
        hidden=args.hidden, rollouts=1 if getattr(args, "rollouts", None) is None else args.rollouts,
        evidence=getattr(args, "evidence", 1.645),
    )


def _spear(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.spear import spear

    config = _spear_config(args)
    address, workers = getattr(args, "ray", None), getattr(args, "ray_workers", None)
    executor = None
    if address is not None:
        from neuroprune.prune import ray_executor

        executor = ray_executor.RayExecutor(address, num_workers=workers)
    try:
        return spear(model, task, config, checkpoint=args.checkpoint, resume=args.resume, progress=not args.quiet,
                     executor=executor)
    finally:
        if executor is not None:
            executor.close()


def _uniform_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.uniform import UniformConfig

    return UniformConfig(ratio=args.keep_ratio, criterion=args.criterion)


def _uniform(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.uniform import uniform

    return uniform(model, task, _uniform_config(args), progress=not args.quiet)


def _sca_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.sca import SCAConfig

    return SCAConfig(train_steps=getattr(args, "sca_steps", 300), update_every=getattr(args, "sca_update_every", 25),
                     keep_ratio=getattr(args, "keep_ratio", None))


def _sca(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.sca import sca

    return sca(model, task, _sca_config(args), progress=not getattr(args, "quiet", False))


def _criticality_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.criticality import CriticalityConfig

    return CriticalityConfig(regrow_ratio=getattr(args, "regrow_ratio", 0.2),
                             criterion=getattr(args, "criterion", "l1"), keep_ratio=getattr(args, "keep_ratio", None))


def _criticality(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.criticality import criticality

    return criticality(model, task, _criticality_config(args), progress=not getattr(args, "quiet", False))


def _given(args: argparse.Namespace, **names: str) -> dict:
    """Config fields for the options the user gave (None = keep the config's default)."""
    values = {field: getattr(args, option, None) for field, option in names.items()}
    return {field: value for field, value in values.items() if value is not None}


def _gradr_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.gradr import GradRConfig

    return GradRConfig(**_given(args, alpha="alpha", steps="gradr_steps"))


def _gradr(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.gradr import gradr

    return gradr(model, task, _gradr_config(args), progress=not getattr(args, "quiet", False))


def _admm_config(args: argparse.Namespace) -> object:
    from neuroprune.prune.admm import AdmmConfig

    return AdmmConfig(ternary=bool(getattr(args, "ternary", False)),
                      **_given(args, weight_bits="weight_bits", activity_reg="activity_reg", rho="rho",
                               steps="admm_steps", update_every="admm_update_every", scope="admm_scope"))


def _admm(model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
    from neuroprune.prune.admm import admm

    return admm(model, task, _admm_config(args), progress=not getattr(args, "quiet", False))


METHODS: dict[str, MethodSpec] = {
    "spear": MethodSpec("spear", "reinforcement-learning structured pruning under a SynOps target (LRE + TAR)", _spear,
                        config=_spear_config),
    "uniform": MethodSpec("uniform", "same keep ratio in every layer (baseline)", _uniform, needs="either",
                          config=_uniform_config),
    "sca": MethodSpec("sca", "spiking-channel-activity pruning with gradient regrowth during training (SCA)", _sca,
                      needs="either", config=_sca_config),
    "criticality": MethodSpec("criticality", "prune past the target, regrow the most critical channels "
                              "(--synops-target) or synapses (--sparsity)", _criticality, needs="either",
                              config=_criticality_config),
    "gradr": MethodSpec("gradr", "gradient rewiring: w = s*ReLU(theta), pruned synapses regrow, Laplace prior "
                        "(--sparsity, --alpha)", _gradr, needs="sparsity",
                        config=_gradr_config),
    "admm": MethodSpec("admm", "ADMM pruning (--sparsity) and/or weight quantization (--weight-bits, --ternary) "
                       "with activity regularisation (--activity-reg); --sparsity 0 quantizes only", _admm,
                       needs="sparsity", config=_admm_config),
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise PruneError(f"unknown pruning method {name!r}; choose one of {', '.join(METHODS)}") from None
