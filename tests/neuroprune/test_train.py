"""Tests of the training loop, evaluation, fine-tune and checkpoints (neuroprune.snn)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroprune import data
from neuroprune.errors import CheckpointError, NeuropruneError
from neuroprune.snn import encoders
from neuroprune.snn import train as tr
from neuroprune.snn.checkpoint import load_checkpoint, save_checkpoint

with contextlib.redirect_stdout(io.StringIO()):  # slayer prints a dataset-toolbox notice
    import lava.lib.dl.slayer as slayer

NEURON = {
    "threshold": 1.25,
    "current_decay": 0.25,
    "voltage_decay": 0.03,
    "tau_grad": 0.03,
    "scale_grad": 3.0,
    "requires_grad": False,
}


class SlayerNet(torch.nn.Module):
    """Test helper: slayer CUBA blocks in sequence, forward loops over them."""

    def __init__(self, blocks: list[torch.nn.Module]) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def tiny_dense(in_shape: tuple[int, ...], num_classes: int, hidden: int = 32, seed: int = 0) -> SlayerNet:
    """Input neurons -> Flatten -> Dense(hidden) -> Dense(num_classes)."""
    torch.manual_seed(seed)
    n_in = int(np.prod(in_shape))
    cuba = slayer.block.cuba
    return SlayerNet(
        [
            cuba.Input(NEURON),
            cuba.Flatten(),
            cuba.Dense(NEURON, n_in, hidden, weight_scale=2),
            cuba.Dense(NEURON, hidden, num_classes, weight_scale=2),
        ]
    )


def conv_digits(c1: int = 16, c2: int = 32, seed: int = 0) -> SlayerNet:
    """Input -> Conv(1->c1, 3x3, pad 1) -> Conv(c1->c2, 3x3, stride 2, pad 1) -> Flatten -> Dense(10)."""
    torch.manual_seed(seed)
    cuba = slayer.block.cuba
    return SlayerNet(
        [
            cuba.Input(NEURON),
            cuba.Conv(NEURON, 1, c1, 3, padding=1, weight_scale=2),
            cuba.Conv(NEURON, c1, c2, 3, stride=2, padding=1, weight_scale=2),
            cuba.Flatten(),
            cuba.Dense(NEURON, c2 * 4 * 4, 10, weight_scale=2),
        ]
    )


class Identity(torch.nn.Module):
    """Returns its input: with the direct encoder the spike count is x * T."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@pytest.fixture(scope="module")
def synthetic() -> data.Dataset:
    return data.make_synthetic(num_classes=4, shape=(1, 8, 8), n_per_class=60, seed=0)


FAST = tr.TrainConfig(epochs=3, batch_size=32, lr=1e-2, steps=8, seed=0)


# --------------------------------------------------------------------------- training
def test_tiny_snn_learns_synthetic_task(synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    before = tr.evaluate(model, synthetic.x_test, synthetic.y_test, FAST).accuracy
    start = time.perf_counter()
    history = tr.train(model, synthetic, FAST, progress=False)
    elapsed = time.perf_counter() - start
    after = tr.evaluate(model, synthetic.x_test, synthetic.y_test, FAST)
    assert after.accuracy > 0.9, (before, after.accuracy, history)
    assert after.accuracy > before
    assert len(history.loss) == len(history.val_accuracy) == len(history.lr) == 3
    assert history.loss[-1] < history.loss[0]
    batches_per_epoch = -(-len(synthetic.y_train) // FAST.batch_size)
    assert history.optimizer_steps == 3 * batches_per_epoch
    assert 0 < history.step_time_s < history.wall_time_s <= elapsed
    assert history.seconds_per_step == pytest.approx(history.step_time_s / history.optimizer_steps)
    # cosine schedule ends at lr 0; constant stays put
    assert history.lr[-1] == pytest.approx(0.0, abs=1e-9)


def test_training_is_deterministic_under_seed(synthetic) -> None:
    cfg = dataclasses.replace(FAST, epochs=1, encoder="rate", max_steps=4)

    def run(seed: int) -> dict[str, torch.Tensor]:
        model = tiny_dense(synthetic.input_shape, synthetic.num_classes, seed=0)
        tr.train(model, synthetic, dataclasses.replace(cfg, seed=seed), progress=False)
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # another seed shuffles and encodes differently -> different weights
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_constant_schedule_sgd_and_max_steps(synthetic) -> None:
    cfg = dataclasses.replace(
        FAST, optimizer="sgd", schedule="constant", lr=0.05, max_steps=5, validate=False
    )
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    history = tr.train(model, synthetic, cfg, progress=False)
    assert history.optimizer_steps == 5
    assert len(history.loss) == 1 and history.val_accuracy == []
    assert history.lr == [0.05]


def test_on_step_hook_keeps_masked_weights_zero(synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    weight = model.blocks[2].synapse.weight
    mask = (torch.arange(weight.numel()) % 2 == 0).reshape(weight.shape).float()
    calls: list[int] = []

    def reapply(m: torch.nn.Module, step: int) -> None:
        calls.append(step)
        with torch.no_grad():
            m.blocks[2].synapse.weight.mul_(mask)

    cfg = dataclasses.replace(FAST, epochs=2, max_steps=7)
    tr.train(model, synthetic, cfg, on_step=reapply, progress=False)
    assert calls == list(range(7))
    assert torch.all(weight[mask == 0] == 0)
    assert torch.count_nonzero(weight[mask == 1]) > 0.9 * int(mask.sum())


def test_extra_loss_is_added_and_its_gradient_used(synthetic) -> None:
    cfg = dataclasses.replace(FAST, epochs=1, max_steps=3, validate=False)
    seen_shapes: list[tuple[int, ...]] = []

    def constant(m: torch.nn.Module, out: torch.Tensor) -> torch.Tensor:
        seen_shapes.append(tuple(out.shape))
        return torch.tensor(5.0)

    plain = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    h_plain = tr.train(plain, synthetic, cfg, progress=False)
    shifted = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    h_shift = tr.train(shifted, synthetic, cfg, extra_loss=constant, progress=False)
    assert seen_shapes == [(32, 4, 8)] * 3
    # a constant adds exactly 5 to the loss and nothing to the gradient
    assert h_shift.loss[0] == pytest.approx(h_plain.loss[0] + 5.0, rel=1e-6)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, shifted.state_dict()[k]), k

    # a weight penalty does change the weights
    def l2(m: torch.nn.Module, out: torch.Tensor) -> torch.Tensor:
        return 10.0 * sum((p**2).sum() for p in m.parameters())

    penalised = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    tr.train(penalised, synthetic, cfg, extra_loss=l2, progress=False)
    norm = lambda m: float(sum((p**2).sum() for p in m.parameters()))  # noqa: E731
    assert norm(penalised) < norm(plain)


def test_fine_tune_runs_exactly_n_steps_across_epochs(synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    per_epoch = -(-len(synthetic.y_train) // FAST.batch_size)
    n = per_epoch + 3  # spans two epochs
    steps: list[int] = []
    history = tr.fine_tune(model, synthetic, n, FAST, on_step=lambda m, s: steps.append(s), lr=1e-3)
    assert history.optimizer_steps == n and steps == list(range(n))
    assert history.val_accuracy == []  # no validation inside a fine-tune
    assert len(history.loss) == 2
    assert tr.fine_tune(model, synthetic, 0, FAST).optimizer_steps == 0
    with pytest.raises(NeuropruneError, match="steps must be >= 0"):
        tr.fine_tune(model, synthetic, -1, FAST)


def test_progress_bar_runs(synthetic, capsys) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    cfg = dataclasses.replace(FAST, epochs=1, max_steps=2, log_every=1)
    history = tr.train(model, synthetic, cfg, progress=True)
    assert history.optimizer_steps == 2
    assert "train epoch 1/1" in capsys.readouterr().out


# --------------------------------------------------------------------------- losses
def test_rate_and_tet_losses_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    out = (torch.rand((5, 3, 6), generator=g) < 0.4).float()
    y = torch.tensor([0, 1, 2, 1, 0])
    rate_cfg = dataclasses.replace(FAST, loss="rate", logit_scale=3.0)
    expected_rate = F.cross_entropy(3.0 * out.mean(-1), y)
    assert torch.allclose(tr.compute_loss(out, y, rate_cfg), expected_rate)
    tet_cfg = dataclasses.replace(FAST, loss="tet", logit_scale=3.0)
    expected_tet = torch.stack([F.cross_entropy(3.0 * out[..., t], y) for t in range(6)]).mean()
    assert torch.allclose(tr.compute_loss(out, y, tet_cfg), expected_tet)
    assert not torch.allclose(expected_rate, expected_tet)


def test_tet_loss_trains(synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    cfg = dataclasses.replace(FAST, loss="tet")
    tr.train(model, synthetic, cfg, progress=False)
    assert tr.evaluate(model, synthetic.x_test, synthetic.y_test, cfg).accuracy > 0.9


# --------------------------------------------------------------------------- evaluate
def test_evaluate_counts_ties_and_mode() -> None:
    x = np.array([[0.5, 0.5, 0.1], [0.2, 0.75, 0.75], [0.0, 0.0, 0.0], [0.0, 0.25, 1.0]], np.float32)
    y = np.array([0, 2, 0, 2])
    model = Identity().train()
    result = tr.evaluate(model, x, y, steps=4, encoder="direct", batch_size=3)
    np.testing.assert_array_equal(result.predictions, [0, 1, 0, 2])  # ties -> lowest index
    np.testing.assert_allclose(result.spike_counts, 4 * x)
    assert result.correct == 3 and result.total == 4 and result.accuracy == 0.75
    assert result.mean_output_rate == pytest.approx(float(x.mean()))
    assert model.training  # mode restored


def test_evaluate_uses_no_grad_and_eval_mode() -> None:
    seen: dict[str, object] = {}

    class Probe(Identity):
        def forward(self, x):
            seen["grad"] = torch.is_grad_enabled()
            seen["training"] = self.training
            seen["inference"] = torch.is_inference_mode_enabled()
            return super().forward(x)

    tr.evaluate(Probe(), np.zeros((2, 3), np.float32), np.zeros(2), steps=2)
    assert seen == {"grad": False, "training": False, "inference": True}


def test_evaluate_rate_encoder_is_repeatable(synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    cfg = dataclasses.replace(FAST, encoder="rate")
    a = tr.evaluate(model, synthetic.x_val, synthetic.y_val, cfg)
    b = tr.evaluate(model, synthetic.x_val, synthetic.y_val, cfg)
    c = tr.evaluate(model, synthetic.x_val, synthetic.y_val, cfg, seed=9)
    np.testing.assert_array_equal(a.spike_counts, b.spike_counts)
    assert not np.array_equal(a.spike_counts, c.spike_counts)
    # evaluation equals a plain forward pass over the same encoded input
    x = torch.from_numpy(synthetic.x_val)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        counts = model(encoders.get_encoder("rate")(x, cfg.steps, generator=gen)).sum(-1)
    np.testing.assert_array_equal(a.spike_counts, counts.numpy())


def test_model_contract_errors(synthetic) -> None:
    class Tuple(Identity):
        def forward(self, x):
            return x, x

    with pytest.raises(NeuropruneError, match="returned a tuple"):
        tr.evaluate(Tuple(), np.zeros((2, 3), np.float32), np.zeros(2), steps=2)
    with pytest.raises(NeuropruneError, match=r"expected \(N=2, num_classes, T=2\)"):
        tr.evaluate(Identity(), np.zeros((2, 1, 3, 3), np.float32), np.zeros(2), steps=2)
    wrong = tiny_dense(synthetic.input_shape, num_classes=3)
    with pytest.raises(NeuropruneError, match="3 output neurons but the data set has 4"):
        tr.train(wrong, synthetic, dataclasses.replace(FAST, max_steps=1), progress=False)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change, match",
    [
        ({"optimizer": "rmsprop"}, "optimizer.*adam, sgd"),
        ({"schedule": "step"}, "schedule.*cosine, constant"),
        ({"loss": "mse"}, "loss.*rate, tet"),
        ({"encoder": "poisson"}, "encoder.*delta, direct, rate"),
        ({"epochs": 0}, "epochs.*>= 1"),
        ({"steps": 2.5}, "steps.*integer"),
        ({"lr": 0.0}, "lr.*> 0"),
        ({"max_steps": -1}, "max_steps"),
        ({"device": "tpu"}, "device.*'cpu' or 'cuda'"),
    ],
)
def test_config_validation(change, match) -> None:
    with pytest.raises(NeuropruneError, match=match):
        tr.TrainConfig(**change)


def test_cuda_request_without_gpu_is_a_clear_error(monkeypatch, synthetic) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = dataclasses.replace(FAST, device="cuda")
    with pytest.raises(NeuropruneError, match="no CUDA GPU.*use device 'cpu'"):
        tr.train(tiny_dense(synthetic.input_shape, 4), synthetic, cfg, progress=False)
    assert tr.resolve_device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path, synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    meta = {"arch": "tiny", "nested": {"a": [1, 2.5, None, True]}, "nan": float("nan")}
    path = save_checkpoint(tmp_path / "m.pt", model.state_dict(), meta)
    state, meta2 = load_checkpoint(path)
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)
    assert meta2["arch"] == "tiny" and meta2["nested"] == {"a": [1, 2.5, None, True]}
    assert np.isnan(meta2["nan"])
    assert os.listdir(tmp_path) == ["m.pt"]  # no temp file left behind
    other = tiny_dense(synthetic.input_shape, synthetic.num_classes, seed=1)
    other.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)


def test_checkpoint_written_by_train_reproduces_model(tmp_path, synthetic) -> None:
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    cfg = dataclasses.replace(FAST, epochs=2)
    path = tmp_path / "run.pt"
    history = tr.train(model, synthetic, cfg, checkpoint=path, checkpoint_meta={"arch": "tiny"}, progress=False)
    state, meta = load_checkpoint(path)
    assert meta["epoch"] == 2 and meta["arch"] == "tiny" and meta["dataset"] == "synthetic"
    assert meta["config"] == cfg.to_dict()
    assert meta["history"]["val_accuracy"] == history.val_accuracy
    restored = tiny_dense(synthetic.input_shape, synthetic.num_classes, seed=5)
    restored.load_state_dict(state)
    a = tr.evaluate(model, synthetic.x_test, synthetic.y_test, cfg)
    b = tr.evaluate(restored, synthetic.x_test, synthetic.y_test, cfg)
    np.testing.assert_array_equal(a.spike_counts, b.spike_counts)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "keep.pt"
    save_checkpoint(path, {"w": torch.ones(3)}, {"v": 1})
    original = path.read_bytes()

    def crash(obj, handle, *a, **k):
        handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"v": 2})
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["keep.pt"]


def test_checkpoint_meta_must_be_plain_json(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"not plain JSON.*\.tolist\(\)"):
        save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(1)}, {"a": np.arange(3)})
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(CheckpointError, match="folder .* does not exist"):
        save_checkpoint(tmp_path / "no" / "m.pt", {"w": torch.ones(1)}, {})


def test_checkpoint_load_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")

    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.arange(1000.0)}, {"k": 1})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: corrupt or not a torch checkpoint"):
        load_checkpoint(truncated)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not torch")
    with pytest.raises(CheckpointError, match="garbage.pt: corrupt"):
        load_checkpoint(garbage)

    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    with pytest.raises(CheckpointError, match="not a neuroprune checkpoint .*plain state_dict.*save_checkpoint"):
        load_checkpoint(plain)

    search = save_checkpoint(tmp_path / "search.pt", {"w": torch.ones(1)}, {}, kind="search")
    with pytest.raises(CheckpointError, match="holds a 'search' checkpoint, expected 'model'"):
        load_checkpoint(search)
    assert load_checkpoint(search, kind="search")[1] == {}
    assert load_checkpoint(search, kind=None)[0]["w"].shape == (1,)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_checkpoint_load_never_unpickles_objects(tmp_path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "neuroprune-checkpoint", "x": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: corrupt or not a torch checkpoint"):
        load_checkpoint(evil)


# --------------------------------------------------------------------------- digits
@pytest.mark.slow
def test_conv_snn_reaches_95_percent_on_digits() -> None:
    """The product's own model (``neuroprune train``'s default architecture) reaches 95 %
    on digits, and keeps it within one point in the chip's fixed point."""
    from neuroprune.pipeline import fixed_point_accuracy
    from neuroprune.snn import model as snn_model

    ds = data.load_digits(seed=0)
    model = snn_model.build("c16,c32s2,f", ds.input_shape, num_classes=ds.num_classes, seed=0)
    cfg = tr.TrainConfig(epochs=20, batch_size=64, lr=1e-2, steps=16, loss="rate", seed=0, validate=False)
    history = tr.train(model, ds, cfg, progress=False)
    result = tr.evaluate(model, ds.x_test, ds.y_test, cfg)
    fixed = fixed_point_accuracy(model, ds.x_test, ds.y_test, cfg)
    print(f"digits test accuracy {result.accuracy:.4f} (fixed point {fixed:.4f}) in {history.wall_time_s:.1f} s")
    assert result.accuracy >= 0.95
    assert abs(fixed - result.accuracy) <= 0.01


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, synthetic) -> None:
    cfg = dataclasses.replace(FAST, epochs=3, encoder="rate")
    straight = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    full = tr.train(straight, synthetic, cfg, progress=False)

    state = tmp_path / "run.pt.train"
    first = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    tr.train(first, synthetic, cfg, state=state, stop_after_epochs=1, progress=False)
    assert state.is_file()
    # a fresh process: new model object with other initial weights, state from the file
    resumed = tiny_dense(synthetic.input_shape, synthetic.num_classes, seed=7)
    history = tr.train(resumed, synthetic, cfg, state=state, resume=True, progress=False)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert history.optimizer_steps == full.optimizer_steps
    assert history.loss == pytest.approx(full.loss) and history.val_accuracy == full.val_accuracy


def test_resume_refuses_a_state_of_another_run(tmp_path, synthetic) -> None:
    state = tmp_path / "run.pt.train"
    model = tiny_dense(synthetic.input_shape, synthetic.num_classes)
    tr.train(model, synthetic, dataclasses.replace(FAST, epochs=2), state=state, stop_after_epochs=1, progress=False)
    with pytest.raises(CheckpointError, match="lr differ"):
        tr.train(model, synthetic, dataclasses.replace(FAST, epochs=2, lr=0.5), state=state, resume=True,
                 progress=False)
    other = tiny_dense(synthetic.input_shape, synthetic.num_classes, hidden=16)
    with pytest.raises(CheckpointError, match="does not match this model"):
        tr.train(other, synthetic, dataclasses.replace(FAST, epochs=2), state=state, resume=True, progress=False)


def test_train_cli_writes_state_and_resumes(tmp_path, capsys) -> None:
    from neuroprune.cli import main
    from neuroprune.snn.model import load_model

    out = tmp_path / "m.pt"
    args = ["train", "--data", "synthetic", "--arch", "f,d16", "--epochs", "2", "--steps", "8", "--quiet",
            "--out", str(out)]
    assert main(args) == 0
    assert out.is_file() and (tmp_path / "m.pt.train").is_file()
    first = load_model(str(out))[0].state_dict()
    # resuming a finished run trains no further and gives the same model
    assert main(args + ["--resume"]) == 0
    again = load_model(str(out))[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    capsys.readouterr()
    assert main(args + ["--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "m.pt.train" in err and "lr differ" in err and "Traceback" not in err
