"""RayExecutor: same results as in-process, retries of killed workers, one-line errors.

The slow tests share one local Ray cluster (``ray.init(num_cpus=2)``) and one
in-process reference search.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from neuroprune.errors import NeuropruneError, PruneError
from neuroprune.prune.base import PruneTask
from neuroprune.prune.executor import CandidateJob, InProcessExecutor, spec_for
from neuroprune.prune.spear import SpearConfig, _Search, spear
from neuroprune.prune.ray_executor import RayExecutor

TINY = SpearConfig(episodes=3, warmup=2, lre_samples=4, lre_finetune_steps=3, recovery_steps=1, hidden=16)
WORKER_TITLE = b"ray::evaluate_on_worker"  # process title of a worker while it runs a job


def _task(data, config) -> PruneTask:
    return PruneTask(dataset=data, train=config, synops_target=0.6, finetune_steps=3, eval_samples=48, seed=5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same_search(result, reference) -> None:
    """History (every field, NaN-safe), best episode, LRE fit and delivered weights equal."""
    assert json.dumps(result.history, sort_keys=True) == json.dumps(reference.history, sort_keys=True)
    for key in ("best", "lre"):
        assert json.dumps(result.info[key], sort_keys=True) == json.dumps(reference.info[key], sort_keys=True)
    for (name, a), (_, b) in zip(result.model.state_dict().items(), reference.model.state_dict().items()):
        assert torch.equal(a, b), name


class _WorkerKiller(threading.Thread):
    """SIGKILLs the first Ray worker seen running a job once ``after`` exists."""

    def __init__(self, after: Path) -> None:
        super().__init__(daemon=True)
        self.after, self.killed, self.stop = after, None, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            if self.after.exists():
                for pid in filter(str.isdigit, os.listdir("/proc")):
                    try:
                        title = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if title.startswith(WORKER_TITLE):
                        os.kill(int(pid), signal.SIGKILL)
                        self.killed = int(pid)
                        return
            time.sleep(0.02)


# ----------------------------------------------------------------------------- no cluster
def test_cli_and_registry_import_without_torch_or_ray():
    code = ("import sys, neuroprune.commands.prune, neuroprune.prune.methods; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(NeuropruneError, match=r"pip install neuroprune\[ray\]"):
        RayExecutor("local")


def test_bad_arguments_are_refused():
    with pytest.raises(NeuropruneError, match="workers 0 must be >= 1"):
        RayExecutor("local", num_workers=0)
    with pytest.raises(NeuropruneError, match="max_retries -1"):
        RayExecutor("local", max_retries=-1)


def test_unreachable_address_fails_fast_in_one_line(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # whatever ran before in this process
    port = _free_port()
    start = time.perf_counter()
    with pytest.raises(NeuropruneError, match=rf"Ray cluster at 127.0.0.1:{port} is unreachable") as err:
        RayExecutor(f"127.0.0.1:{port}")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(NeuropruneError, match="unreachable.*--ray local"):
        RayExecutor("auto")
    with pytest.raises(NeuropruneError, match="port 'x' is not a number"):
        RayExecutor("head:x")
    assert time.perf_counter() - start < 30  # ray.init alone waits minutes on a dead address


def test_cli_options_reach_spear(monkeypatch, capsys):
    from neuroprune.cli import build_parser, main
    from neuroprune.prune import methods, ray_executor
    from neuroprune.prune import spear as spear_module

    made: list[FakeExecutor] = []

    class FakeExecutor:
        def __init__(self, address: str, num_workers: int | None = None) -> None:
            self.address, self.num_workers, self.closed = address, num_workers, False
            made.append(self)

        def close(self) -> None:
            self.closed = True

    seen: dict = {}

    def fake_spear(model, task, config, **kwargs):
        seen.update(config=config, **kwargs)
        return "result"

    monkeypatch.setattr(ray_executor, "RayExecutor", FakeExecutor)
    monkeypatch.setattr(spear_module, "spear", fake_spear)
    parser = build_parser()
    args = parser.parse_args(["prune", "m.pt", "--out", "p.pt", "--synops-target", "0.5", "--ray", "10.0.0.1:6379",
                              "--ray-workers", "8", "--rollouts", "4"])
    run_spear = methods.get_method("spear").run
    assert run_spear(None, None, args) == "result"
    assert seen["config"].rollouts == 4 and seen["executor"] is made[0]
    assert (made[0].address, made[0].num_workers, made[0].closed) == ("10.0.0.1:6379", 8, True)
    plain = parser.parse_args(["prune", "m.pt", "--out", "p.pt", "--synops-target", "0.5"])
    run_spear(None, None, plain)
    assert seen["executor"] is None and seen["config"].rollouts == 1 and len(made) == 1
    assert main(["prune", "m.pt", "--out", "p.pt", "--synops-target", "0.5", "--ray-workers", "2"]) == 2
    assert "--ray-workers 2 needs --ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused by the option's type already
        parser.parse_args(["prune", "m.pt", "--out", "p.pt", "--synops-target", "0.5", "--rollouts", "0"])
    zero = argparse.Namespace(**{**vars(plain), "rollouts": 0})
    with pytest.raises(PruneError, match="rollouts=0 must be >= 1"):
        run_spear(None, None, zero)


# ----------------------------------------------------------------------------- on a local cluster
@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(trained_small):
    """The in-process search every Ray run must reproduce."""
    model, data, config = trained_small
    return spear(model, _task(data, config), TINY, progress=False)


@pytest.mark.slow
def test_jobs_come_back_in_order_equal_to_in_process(trained_small, ray_cluster, monkeypatch):
    model, data, config = trained_small
    task = _task(data, config)
    search = _Search(model, task, TINY, log=lambda _: None)
    spec = spec_for(model, task, search.importance, search.dense.synops)
    jobs = [CandidateJob({i: 0.3 + 0.15 * k for i in search.layers}, 2, seed=k) for k in range(5)]
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value: puts.append(value) or real_put(value))
    executor = RayExecutor("auto")  # joins the cluster this process started
    assert executor.parallelism == 2 and executor.num_gpus_per_task == 0
    expected = InProcessExecutor().map(spec, jobs)
    assert executor.map(spec, jobs) == expected
    assert executor.map(spec, jobs[::-1]) == expected[::-1]
    assert len(puts) == 1  # the spec went to the object store once for both calls
    with pytest.raises(PruneError, match="keep ratio 1.5 must be in"):  # a job's own error comes back as itself
        executor.map(spec, [CandidateJob({search.layers[0]: 1.5}, 1, seed=0)])
    executor.close()
    assert ray.is_initialized()  # it did not start the cluster, so it leaves it running


@pytest.mark.slow
def test_ray_search_equals_in_process_search(trained_small, ray_cluster, reference, tmp_path):
    model, data, config = trained_small
    executor = RayExecutor("auto")
    result = spear(model, _task(data, config), TINY, progress=False, executor=executor,
                   checkpoint=tmp_path / "ray.search")
    assert len(result.history) == TINY.episodes and result.info["lre"]["samples"] == TINY.lre_samples
    _same_search(result, reference)


@pytest.mark.slow
def test_killed_worker_loses_and_duplicates_nothing(trained_small, ray_cluster, reference, tmp_path):
    model, data, config = trained_small
    checkpoint = tmp_path / "killed.search"
    killer = _WorkerKiller(after=checkpoint)  # kill once the first chunk is checkpointed
    killer.start()
    try:
        result = spear(model, _task(data, config), TINY, progress=False, executor=RayExecutor("auto", max_retries=3),
                       checkpoint=checkpoint)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no worker was running a job after the first checkpoint"
    assert not Path(f"/proc/{killer.killed}").exists() or b"evaluate_on_worker" not in \
        Path(f"/proc/{killer.killed}/cmdline").read_bytes()
    assert result.info["lre"]["samples"] == TINY.lre_samples
    assert [h["episode"] for h in result.history] == list(range(TINY.episodes))
    _same_search(result, reference)


@pytest.mark.slow
def test_exhausted_retries_fail_and_checkpoint_resumes_exactly(trained_small, ray_cluster, reference, tmp_path):
    model, data, config = trained_small
    checkpoint = tmp_path / "failed.search"
    killer = _WorkerKiller(after=checkpoint)
    killer.start()
    try:
        with pytest.raises(NeuropruneError, match=r"candidate job \d \(seed \d+\) failed on Ray after 0 retries"):
            spear(model, _task(data, config), TINY, progress=False, executor=RayExecutor("auto", max_retries=0),
                  checkpoint=checkpoint)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None
    # the checkpoint holds whole chunks only; resuming (here in process) ends where an undisturbed run does
    resumed = spear(model, _task(data, config), TINY, progress=False, checkpoint=checkpoint, resume=True)
    assert resumed.info["lre"]["samples"] == TINY.lre_samples and len(resumed.history) == TINY.episodes
    _same_search(resumed, reference)
