"""Registry of pruning methods: name -> module, function, config class and target.

Every method has the call shape ``method(model, task, config, *, progress) -> PruneResult``
and declares its command-line options once, on its config dataclass (fields with
:func:`neuroprune.options.option` metadata). Add a method by writing its module and one
:class:`MethodSpec` line in :data:`METHODS`; ``neuroprune prune`` picks up its options.

The registry imports no torch: a method's module is imported when it is used.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

from neuroprune.errors import PruneError
from neuroprune.options import add_config_options, config_from_args

if TYPE_CHECKING:  # pragma: no cover
    from neuroprune.prune.base import PruneResult, PruneTask
    from neuroprune.snn.model import SNN

__all__ = ["MethodSpec", "METHODS", "get_method", "add_method_options"]


def _no_runtime(args: argparse.Namespace) -> ContextManager[dict[str, Any]]:
    return contextlib.nullcontext({})


@dataclass(frozen=True)
class MethodSpec:
    """One pruning method.

    ``needs``: "synops" (``--synops-target``), "sparsity" (``--sparsity``) or "either".
    ``runtime``: options that steer a run rather than the method (checkpoints, executors),
    as a context manager yielding extra keyword arguments of the method function.
    """

    name: str
    help: str
    module: str
    function: str
    config_name: str
    needs: str = "synops"
    runtime: Callable[[argparse.Namespace], ContextManager[dict[str, Any]]] = _no_runtime

    def config_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_name)

    def config(self, args: argparse.Namespace) -> Any:
        """The method's config from the options the user gave (defaults for the rest)."""
        return config_from_args(self.config_class(), args)

    def run(self, model: "SNN", task: "PruneTask", args: argparse.Namespace) -> "PruneResult":
        function = getattr(importlib.import_module(self.module), self.function)
        config = self.config(args)
        with self.runtime(args) as extra:
            return function(model, task, config, progress=not getattr(args, "quiet", False), **extra)


@contextlib.contextmanager
def _spear_runtime(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Search checkpoint, resume and the candidate executor (Ray when ``--ray`` is given)."""
    address, workers = getattr(args, "ray", None), getattr(args, "ray_workers", None)
    executor = None
    if address is not None:
        from neuroprune.prune import ray_executor

        executor = ray_executor.RayExecutor(address, num_workers=workers)
    try:
        yield {"checkpoint": getattr(args, "checkpoint", None), "resume": bool(getattr(args, "resume", False)),
               "executor": executor}
    finally:
        if executor is not None:
            executor.close()


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("spear", "reinforcement-learning structured pruning under a SynOps target (LRE + TAR)",
               "neuroprune.prune.spear", "spear", "SpearConfig", runtime=_spear_runtime),
    MethodSpec("uniform", "same keep ratio in every layer (baseline)",
               "neuroprune.prune.uniform", "uniform", "UniformConfig", needs="either"),
    MethodSpec("sca", "spiking-channel-activity pruning with gradient regrowth during training (SCA)",
               "neuroprune.prune.sca", "sca", "SCAConfig", needs="either"),
    MethodSpec("criticality", "prune past the target, regrow the most critical channels (--synops-target) or "
               "synapses (--sparsity)", "neuroprune.prune.criticality", "criticality", "CriticalityConfig",
               needs="either"),
    MethodSpec("gradr", "gradient rewiring: w = s*ReLU(theta), pruned synapses regrow, Laplace prior "
               "(--sparsity, --alpha)", "neuroprune.prune.gradr", "gradr", "GradRConfig", needs="sparsity"),
    MethodSpec("admm", "ADMM pruning (--sparsity) and/or weight quantization (--weight-bits, --ternary) with "
               "activity regularisation (--activity-reg); --sparsity 0 quantizes only",
               "neuroprune.prune.admm", "admm", "AdmmConfig", needs="sparsity"),
)}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise PruneError(f"unknown pruning method {name!r}; choose one of {', '.join(METHODS)}") from None


def add_method_options(parser: argparse.ArgumentParser, seen: set[str] | None = None) -> None:
    """One argument group per method with the options its config declares (a flag
    several methods share appears once, in the first method's group)."""
    seen = set() if seen is None else seen
    for spec in METHODS.values():
        group = parser.add_argument_group(f"{spec.name} ({spec.config_name})")
        add_config_options(group, spec.config_class(), seen)
