"""Candidate evaluation on a Ray cluster (``pip install neuroprune[ray]``).

:class:`RayExecutor` is an :class:`~neuroprune.prune.executor.Executor`: SPEAR hands it
an :class:`~neuroprune.prune.executor.EvaluatorSpec` (dense model state, task with its
data, importance) and a list of :class:`~neuroprune.prune.executor.CandidateJob`; the
spec goes into Ray's object store once (``ray.put``, once per spec token), every job
becomes a Ray task that runs :func:`~neuroprune.prune.executor.evaluate_candidate` on a
worker, and the results come back in job order. A worker keeps the spec and the rebuilt
dense model of the last token it saw, so a job ships only its keep ratios.

Results equal the in-process executor's: a job is a pure function of the spec and the
job (it seeds its own fine-tune), and workers run torch with one thread each.

A killed worker (lost process, node death, out-of-memory kill) is retried by Ray up to
``max_retries`` times; the retried job gives the same numbers, so nothing is lost or
counted twice. When the retries run out :meth:`RayExecutor.map` raises, before SPEAR
writes its checkpoint for the chunk, so the checkpoint stays at the last complete chunk.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import socket
from types import ModuleType
from typing import Any, Sequence

from neuroprune.errors import NeuropruneError
from neuroprune.prune.executor import CandidateJob, EvaluatorSpec, evaluate_candidate

__all__ = ["RayExecutor", "evaluate_on_worker"]

CONNECT_TIMEOUT_S = 5.0  # TCP probe of an explicit address; ray.init itself waits minutes on a dead one
DEFAULT_PORTS = {"ray://": 10001, "": 6379}  # Ray client server, GCS

_WORKER_SPECS: dict[str, EvaluatorSpec] = {}  # per worker process: spec token -> spec (the latest only)


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise NeuropruneError("the Ray executor needs ray: pip install neuroprune[ray]") from None
    return ray


def evaluate_on_worker(token: str, spec_box: list[Any], job: CandidateJob) -> dict[str, Any]:
    """Body of the Ray task: :func:`evaluate_candidate` with one torch thread.

    ``spec_box`` is ``[ObjectRef]`` (boxed so Ray does not fetch it for every task);
    the spec is fetched once per worker and token. When Ray gave this task GPUs and the
    task's recipe says ``"cpu"``, the fine-tune and measurements run on ``"cuda"``.
    """
    import ray
    import torch

    torch.set_num_threads(1)
    spec = _WORKER_SPECS.get(token)
    if spec is None:
        spec = copy.deepcopy(ray.get(spec_box[0]))  # writable arrays, not views of the object store
        if ray.get_gpu_ids() and spec.task.train.device == "cpu":
            train = dataclasses.replace(spec.task.train, device="cuda")
            spec = dataclasses.replace(spec, task=dataclasses.replace(spec.task, train=train))
        _WORKER_SPECS.clear()
        _WORKER_SPECS[token] = spec
    return evaluate_candidate(spec, job)


def _probe(address: str) -> None:
    """Raise a one-line error when nothing listens at ``[ray://]HOST:PORT``."""
    scheme = "ray://" if address.startswith("ray://") else ""
    rest = address[len(scheme):]
    if "://" in rest:
        raise NeuropruneError(f"Ray address {address!r}: give HOST:PORT, ray://HOST:PORT, 'auto' or 'local'")
    host, _, port = rest.rpartition(":")
    if not host:
        host, port = rest, str(DEFAULT_PORTS[scheme])
    if not port.isdigit():
        raise NeuropruneError(f"Ray address {address!r}: port {port!r} is not a number; give HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise NeuropruneError(f"Ray cluster at {address} is unreachable ({err.strerror or err}); check the head "
                              f"node's address and port, or use --ray local") from None


class RayExecutor:
    """Evaluates candidate jobs as Ray tasks, at most ``parallelism`` at a time.

    Parameters
    ----------
    address : ``"auto"`` — the running cluster (``RAY_ADDRESS`` or one started with
        ``ray start`` on this machine), an error when there is none;
        ``"local"`` — start a Ray instance on this machine for this process, with
        ``num_workers`` CPUs (default: all cores); ``HOST:PORT`` or
        ``ray://HOST:PORT`` — that cluster. If this process is already connected to
        Ray (``ray.init`` was called), that connection is used whatever ``address`` says.
    num_workers : jobs run at once (default: the cluster's CPUs, or its GPUs divided by
        ``num_gpus_per_task`` when tasks take GPUs).
    num_gpus_per_task : GPUs reserved per job (fractions allowed); default 1 when the
        cluster has GPUs, else 0. With GPUs a job fine-tunes on ``"cuda"``.
    max_retries : times Ray re-runs a job whose worker died (0 = fail at once).

    Workers import neuroprune, so every node needs it installed (same versions).
    Use as a context manager, or call :meth:`close`, to stop a cluster it started.
    """

    def __init__(self, address: str = "auto", num_workers: int | None = None,
                 num_gpus_per_task: float | None = None, max_retries: int = 3) -> None:
        if num_workers is not None and num_workers < 1:
            raise NeuropruneError(f"Ray workers {num_workers} must be >= 1")
        if num_gpus_per_task is not None and num_gpus_per_task < 0:
            raise NeuropruneError(f"GPUs per task {num_gpus_per_task} must be >= 0")
        if max_retries < 0:
            raise NeuropruneError(f"max_retries {max_retries} must be >= 0")
        ray = _import_ray()
        self.address = address
        self.max_retries = max_retries
        self._started = False
        if not ray.is_initialized():
            self._connect(ray, address, num_workers)
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0.0))
        self.num_gpus_per_task = float(num_gpus_per_task if num_gpus_per_task is not None else (1 if gpus >= 1 else 0))
        if self.num_gpus_per_task > gpus:
            self.close()
            raise NeuropruneError(f"{self.num_gpus_per_task:g} GPUs per task requested but the Ray cluster has "
                                  f"{gpus:g}; use num_gpus_per_task=0")
        if cpus < 1 and num_workers is None:
            self.close()
            raise NeuropruneError("the Ray cluster has no CPUs to run candidate jobs on; add a worker node, or give "
                                  "num_workers (--ray-workers) when an autoscaler adds them")
        fit = cpus if self.num_gpus_per_task == 0 else min(cpus, math.floor(gpus / self.num_gpus_per_task))
        self.parallelism: int = int(num_workers if num_workers is not None else max(1, fit))
        self._remote = ray.remote(evaluate_on_worker)
        self._spec_token: str | None = None
        self._spec_ref: Any = None

    def _connect(self, ray: ModuleType, address: str, num_workers: int | None) -> None:
        if address == "local":
            ray.init(address="local", num_cpus=num_workers, include_dashboard=False)
            self._started = True
            return
        if address == "auto":
            if os.environ.get("RAY_ADDRESS"):
                _probe(os.environ["RAY_ADDRESS"])
        else:
            _probe(address)
        try:
            ray.init(address=address)
        except ConnectionError as err:
            if address == "auto":
                message = ("no running Ray cluster found (RAY_ADDRESS is unset and none was started here with "
                           "'ray start'); start one with 'ray start --head' or use --ray local")
            else:
                auth = "" if os.environ.get("RAY_AUTH_MODE") else \
                    " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN)"
                message = f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]}{auth}"
            raise NeuropruneError(message) from None
        self._started = True

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, parallelism={self.parallelism}, "
                f"num_gpus_per_task={self.num_gpus_per_task:g}, max_retries={self.max_retries})")

    def _put(self, spec: EvaluatorSpec) -> Any:
        """The object reference of ``spec``, put into the object store once per token."""
        import ray

        if not spec.token:
            raise NeuropruneError("EvaluatorSpec has no token; build it with neuroprune.prune.executor.spec_for")
        if spec.token != self._spec_token:
            self._spec_ref = None  # release the previous spec before shipping the next
            self._spec_ref = ray.put(spec)
            self._spec_token = spec.token
        return self._spec_ref

    def map(self, spec: EvaluatorSpec, jobs: Sequence[CandidateJob]) -> list[dict[str, Any]]:
        """Evaluate ``jobs`` on the cluster; results in job order.

        Raises :class:`NeuropruneError` when a job's worker died more than
        ``max_retries`` times; an error inside a job is raised as itself.
        """
        import ray

        if not jobs:
            return []
        spec_ref = self._put(spec)
        remote = self._remote.options(num_cpus=1, num_gpus=self.num_gpus_per_task, max_retries=self.max_retries,
                                      retry_exceptions=False)
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        pending: dict[Any, int] = {}
        submitted = 0
        try:
            while submitted < len(jobs) or pending:
                while submitted < len(jobs) and len(pending) < self.parallelism:
                    pending[remote.remote(spec.token, [spec_ref], jobs[submitted])] = submitted
                    submitted += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    results[index] = self._result(ref, index, jobs[index])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [result for result in results if result is not None]

    def _result(self, ref: Any, index: int, job: CandidateJob) -> dict[str, Any]:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # the job itself raised: raise that error
            cause = getattr(err, "cause", None)
            if isinstance(cause, NeuropruneError):
                raise cause from None
            raise
        except ray.exceptions.RayError as err:  # worker, node or object lost after the retries
            reason = (str(err).strip().splitlines() or [""])[0]
            raise NeuropruneError(f"candidate job {index} (seed {job.seed}) failed on Ray after {self.max_retries} "
                                  f"retries: {type(err).__name__}: {reason}") from None

    def close(self) -> None:
        """Drop the shipped spec; shut Ray down if this executor started or joined it."""
        self._spec_ref = None
        self._spec_token = None
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
