"""Sigma-delta (SDNN) nets on slayer's sigma_delta blocks: build, train, export, SynOps."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from converters import netx
from neuroprune.data import Dataset
from neuroprune.errors import UnsupportedLayerError
from neuroprune.prune.base import Measurer
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import record_activity
from neuroprune.snn.train import TrainConfig


def _datasets(path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path (groups left out)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda key, item: out.__setitem__(key, np.asarray(item[()]))
                          if isinstance(item, h5py.Dataset) else None)
    return out


def _slayer_export(model: snn_model.SNN, path) -> None:
    with h5py.File(path, "w") as handle:
        group = handle.create_group("layer")
        for index, block in enumerate(model.blocks):
            block.export_hdf5(group.create_group(str(index)))


def test_sdnn_build_uses_sigma_delta_blocks_and_sigma_output():
    model = snn_model.build("c4s2,f", (1, 8, 8), num_classes=3, neuron=snn_model.SigmaDeltaConfig(), seed=0)
    names = [f"{type(b).__module__.rsplit('.', 1)[-1]}.{type(b).__name__}" for b in model.blocks]
    assert names == ["sigma_delta.Input", "sigma_delta.Conv", "sigma_delta.Flatten", "sigma_delta.Output"]
    network = snn_model.to_ir(model)
    neurons = [layer.neuron for layer in network.layers if getattr(layer, "neuron", None) is not None]
    assert [n.kind for n in neurons] == ["SDNN"] * 3
    assert [n.sigma_output for n in neurons] == [False, False, True]
    assert all(n.activation == "relu" and n.v_th_mant == 6 for n in neurons)  # int(0.1 * 64)
    rebuilt = snn_model.build_from_meta(model.meta())
    assert rebuilt.neuron_kind == "sdnn" and [type(b) for b in rebuilt.blocks] == [type(b) for b in model.blocks]
    with pytest.raises(Exception, match="ends in a dense"):
        snn_model.build("c4", (1, 8, 8), neuron=snn_model.SigmaDeltaConfig())


def test_cuba_meta_has_no_neuron_kind():
    assert "neuron_kind" not in snn_model.build("c4,f", (1, 8, 8), num_classes=3, seed=0).meta()


def _hand_net(steps: int = 6) -> tuple[snn_model.SNN, torch.Tensor]:
    """Input 4 -> dense 3 (sigma-delta ReLU) -> sigma output 2, weights on slayer's grid (1/32)."""
    model = snn_model.build("f,d3,d2", (1, 2, 2), neuron=snn_model.SigmaDeltaConfig(event_weight=0.0, mean_norm=False), seed=0)
    hidden, output = model.blocks[2], model.blocks[3]
    with torch.no_grad():
        w1 = torch.tensor([[0.25] * 4, [-0.25] * 4, [1 / 32] * 4])
        hidden.synapse.weight.copy_(w1.reshape(hidden.synapse.weight.shape))
        output.synapse.weight.copy_(torch.full_like(output.synapse.weight, 0.5))
    x = torch.full((1, 1, 2, 2, steps), 0.5)  # a constant (static) image
    return model, x


def test_sdnn_synops_by_hand_constant_input():
    """A constant input sends its deltas on the first step only. Input: 4 pixels of 0.5, each
    >= the threshold 6/64, send one delta each at t=0 to 3 hidden neurons: 12 SynOps. Hidden
    sigma = W x: 0.5 (sends at t=0, then nothing), -0.5 (ReLU 0: never), 4 * 0.5/32 = 0.0625
    (under the threshold, and its residual stays under it: never). One hidden message to the
    2 outputs: 2 SynOps. Total 14 per inference, whatever the number of steps."""
    for steps in (4, 6):
        model, x = _hand_net(steps)
        activity = record_activity(model, x)
        assert activity.rates[0].sum() * steps == pytest.approx(4)  # the Input block's deltas
        assert activity.rates[2].sum() * steps == pytest.approx(1)  # ids: input 0, flatten 1, dense 2, output 3
        dataset = Dataset(*(np.full((1, 1, 2, 2), 0.5, np.float32), np.zeros(1, np.int64)) * 3, num_classes=2,
                          name="constant")
        measured = Measurer(dataset, TrainConfig(steps=steps, encoder="direct")).measure(model)
        assert measured.layer_synops == pytest.approx({2: 12.0, 3: 2.0})
        assert measured.synops == pytest.approx(14.0)


def test_sdnn_voltage_recording_is_refused():
    model, x = _hand_net()
    with pytest.raises(UnsupportedLayerError, match="no membrane potential"):
        record_activity(model, x, voltage=True)


# ----------------------------------------------------------------------- trained on digits
ARCH = "c8s2,c16s2,f"
STEPS = 8


@pytest.fixture(scope="session")
def sdnn_digits(tmp_path_factory):
    """``neuroprune train --neuron sdnn`` on digits, once per session: (checkpoint, netx file)."""
    from neuroprune.cli import main

    folder = tmp_path_factory.mktemp("sdnn")
    out, net = folder / "sdnn.pt", folder / "sdnn.net"
    assert main(["train", "--neuron", "sdnn", "--data", "digits", "--arch", ARCH, "--epochs", "4", "--steps",
                 str(STEPS), "--quiet", "--out", str(out), "--net", str(net)]) == 0
    return out, net


def _digits_chip_input(model: snn_model.SNN, samples: int, start: int = 0) -> np.ndarray:
    from neuroprune.data import load

    data = load("digits", seed=0)
    x = torch.as_tensor(data.x_test[start:start + samples]).unsqueeze(-1).repeat(1, 1, 1, 1, STEPS)
    return model.chip_input(x).numpy()


def test_train_sdnn_on_digits_is_well_above_chance(sdnn_digits):
    """4 epochs of a two-conv SDNN (8 steps): measured 0.944 test accuracy (chance: 0.1)."""
    model, meta = snn_model.load_model(str(sdnn_digits[0]))
    assert model.neuron_kind == "sdnn" and type(model.blocks[-1]).__name__ == "Output"
    assert meta["test_accuracy"] > 0.85
    if meta["test_accuracy_fixed_point"] is not None:  # once the fixed-point model runs SDNN neurons
        assert meta["test_accuracy_fixed_point"] > 0.85
    assert meta["history"]["val_accuracy"][-1] > 0.85
    # the trained thresholds moved (learnable, shared per layer) and reach the chip's vThMant
    thresholds = [snn_model.to_ir(model)[i].neuron.v_th_mant for i in (0, 1, 2, 4)]
    assert len(set(thresholds)) > 1


def test_sdnn_netx_equals_slayer_export_dataset_by_dataset(sdnn_digits, tmp_path):
    model, _ = snn_model.load_model(str(sdnn_digits[0]))
    model.eval()  # a training-mode forward would move the norms' running means
    with torch.no_grad():
        model(torch.rand(1, 1, 8, 8, 2))  # slayer sets its neuron shapes on the first forward
    _slayer_export(model, tmp_path / "slayer.net")
    ours, theirs = _datasets(sdnn_digits[1]), _datasets(tmp_path / "slayer.net")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:  # equal values (we store weights as integers, slayer as floats)
        assert np.array_equal(ours[key], theirs[key]), key
    assert any(key.endswith("neuron/sigma_output") for key in ours)
    assert {"layer/1/bias", "layer/2/bias"} <= set(ours)  # the mean-only norms' running means
    assert netx.read(sdnn_digits[1]).same_as(netx.read(tmp_path / "slayer.net"))


def _tiny(seed: int = 0) -> snn_model.SNN:
    return snn_model.build("f,d12", (1, 8, 8), num_classes=10, neuron=snn_model.SigmaDeltaConfig(), seed=seed)


def test_sdnn_training_is_deterministic_and_resumes_to_the_same_weights(tmp_path):
    from neuroprune.data import load
    from neuroprune.snn.train import train

    data = load("digits", seed=0)
    config = TrainConfig(epochs=2, steps=4, batch_size=128, seed=3)
    straight, again = _tiny(), _tiny()
    train(straight, data, config, progress=False)
    train(again, data, config, progress=False)
    state = tmp_path / "run.pt.train"
    first = _tiny()
    train(first, data, config, state=state, stop_after_epochs=1, progress=False)
    resumed = _tiny(seed=9)
    train(resumed, data, config, state=state, resume=True, progress=False)
    for key, value in straight.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
        assert torch.equal(resumed.state_dict()[key], value), key
    assert float(straight.blocks[2].neuron.delta.threshold) != 0.1  # the learnable threshold trained


def test_event_weight_lowers_the_delta_messages():
    """The delta regulariser (lava-dl's event-rate loss) trades accuracy for fewer messages."""
    from neuroprune.data import load
    from neuroprune.snn.train import train

    data = load("digits", seed=0)
    config = TrainConfig(epochs=2, steps=4, batch_size=128, seed=0)
    rates = []
    for weight in (0.0, 1000.0):
        model = snn_model.build("f,d12", (1, 8, 8), num_classes=10, seed=0,
                                neuron=snn_model.SigmaDeltaConfig(event_weight=weight))
        train(model, data, config, progress=False)
        x = torch.as_tensor(data.x_val[:64]).unsqueeze(-1).repeat(1, 1, 1, 1, 4)
        rates.append(record_activity(model, x).rates[2].mean())
    assert rates[1] < rates[0]


def test_sca_and_criticality_refuse_sdnn_in_one_line(sdnn_digits, capsys, tmp_path):
    from neuroprune.cli import main

    for method in ("sca", "criticality"):
        assert main(["prune", str(sdnn_digits[0]), "--method", method, "--synops-target", "0.5", "--quiet",
                     "--out", str(tmp_path / f"{method}.pt")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not apply to sdnn nets" in err and "membrane potential" in err


@pytest.mark.parametrize("method, options", [
    ("uniform", ["--synops-target", "0.5"]),
    ("gradr", ["--sparsity", "0.5", "--gradr-steps", "40"]),
    ("admm", ["--sparsity", "0.5", "--admm-steps", "40", "--activity-reg", "0.001"]),
])
def test_pruning_methods_run_on_sdnn(sdnn_digits, tmp_path, method, options):
    import json

    from neuroprune.cli import main

    out = tmp_path / f"{method}.pt"
    assert main(["prune", str(sdnn_digits[0]), "--method", method, *options, "--finetune-steps", "10", "--quiet",
                 "--out", str(out)]) == 0
    summary = json.loads((tmp_path / f"{method}.json").read_text())
    assert summary["acc_pruned"] > 0.3
    model, _ = snn_model.load_model(str(out))
    network = snn_model.to_ir(model)
    assert model.neuron_kind == "sdnn" and all(layer.neuron.kind == "SDNN" for layer in network.layers
                                               if getattr(layer, "neuron", None) is not None)
    if method == "uniform":
        assert 0 < summary["synops_ratio"] <= 0.5
    else:  # unstructured: half the synapses of the pruned layers are zero
        weights = [layer.effective_weight for layer in network.layers if layer.synaptic]
        zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
        assert zeros >= 0.4


def test_admm_activity_regulariser_counts_delta_magnitudes():
    """ADMM's activity term on a sigma-delta net is the summed |delta| (deltas are signed)."""
    from neuroprune.prune.admm import SpikeCounter

    model, x = _hand_net()
    with torch.no_grad():
        model.blocks[2].synapse.weight.mul_(-1)  # hidden: -0.5 (never sends), +0.5 (sends), -0.0625
    x = torch.cat([x[..., :3], torch.zeros_like(x[..., 3:])], dim=-1)  # the image goes away at t=3
    with SpikeCounter(model) as counter:
        model(x)
        total = float(counter.take())
    # hidden neuron 1 sends +0.5 at t=0 and -0.5 at t=3: |deltas| sum to 1 (the sigma
    # output block sends no deltas and is not counted)
    assert total == pytest.approx(1.0)


def _energy_synops(capsys, *paths, samples: int) -> list[float]:
    """SynOps per inference that ``neuroprune energy --json`` reports for each file."""
    import json

    from neuroprune.cli import main

    capsys.readouterr()
    assert main(["energy", *map(str, paths), "--samples", str(samples), "--json"]) == 0
    return [entry["synops"] for entry in json.loads(capsys.readouterr().out)]


def test_sdnn_prune_summary_synops_are_what_energy_counts(sdnn_digits, tmp_path, capsys):
    """The SynOps a prune summary reports (and its target constrains) are the chip's: on the
    same test samples and steps, `neuroprune energy` (bit-exact chip model) reports the same
    numbers for the dense and the pruned file, to rounding."""
    import json

    from neuroprune.cli import main
    from neuroprune.pipeline import load_trained

    out = tmp_path / "uniform.pt"
    assert main(["prune", str(sdnn_digits[0]), "--method", "uniform", "--synops-target", "0.5",
                 "--finetune-steps", "5", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((tmp_path / "uniform.json").read_text())
    samples = len(load_trained(str(sdnn_digits[0])).dataset.y_test)  # the summary's test split
    dense, pruned = _energy_synops(capsys, sdnn_digits[0], out, samples=samples)
    assert summary["synops_dense"] == pytest.approx(dense, rel=1e-9)
    assert summary["synops_pruned"] == pytest.approx(pruned, rel=1e-9)
    assert summary["synops_ratio"] == pytest.approx(pruned / dense, rel=1e-9) and summary["synops_ratio"] <= 0.5


def test_sdnn_chip_sends_more_than_the_float_forward_because_of_the_layer_delays(sdnn_digits):
    """Why the SynOps of a sigma-delta net are counted on the chip model: slayer's float
    forward (no synaptic delay, as lava-dl's recipe trains) sends fewer messages per hidden
    layer than the chip (measured on 20 digits: 0.058 vs 0.135 and 0.050 vs 0.209 messages
    per neuron and step), because on the chip each layer receives one step late, so a
    hidden neuron first sends its bias-only activation and then the input's change. The
    float forward with that one-step delay per layer sends what the chip sends, up to
    8-bit rounding (measured 0.1347 vs 0.1354, 0.2086 vs 0.2089)."""
    from neuroprune.pipeline import load_trained
    from neuroprune.snn.activity import _message_source, fixed_point_activity
    from neuroprune.snn.evaluate import chip_inputs
    from neuroprune.snn.encoders import get_encoder

    trained = load_trained(str(sdnn_digits[0]))
    model, config = trained.model.eval(), trained.config
    x = trained.dataset.x_test[:20]
    chip = fixed_point_activity(snn_model.to_ir(model), chip_inputs(model, x, config)).rates
    encoded = get_encoder(config.encoder)(torch.as_tensor(x), config.steps).float()

    def float_rates(delayed: bool) -> dict[int, float]:
        sent: dict[int, torch.Tensor] = {}
        hooks = [_message_source(block).register_forward_hook(
                     lambda module, inputs, output, k=k: sent.__setitem__(k, output.detach()))
                 for k, block in enumerate(model.blocks) if getattr(block, "neuron", None) is not None]
        h = encoded
        try:
            with torch.no_grad():
                for k, block in enumerate(model.blocks):
                    h = block(h)
                    if delayed and k < len(model.blocks) - 1:  # the chip's one step per synapse
                        h = torch.cat([torch.zeros_like(h[..., :1]), h[..., :-1]], dim=-1)
        finally:
            for hook in hooks:
                hook.remove()
        return {k: float((v != 0).double().mean()) for k, v in sent.items()}

    plain, delayed = float_rates(False), float_rates(True)
    hidden = [k for k, block in enumerate(model.blocks) if type(block).__name__ == "Conv"]
    assert plain[0] == pytest.approx(chip[0].mean())  # the input layer's deltas agree
    for k in hidden:
        assert plain[k] < 0.75 * chip[k].mean()
        assert delayed[k] == pytest.approx(chip[k].mean(), rel=0.03)


def _run_in_lava(path, x: np.ndarray) -> list[np.ndarray]:
    """Run one chip input ``(C, H, W, T)`` through the netx file in Lava (fixed point);
    every block's output ``(..., T)`` in Lava's order."""
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps = x.shape[-1]
    net = hdf5.Network(net_config=str(path))
    first = net.layers[0]
    first.inp.connect(first.neuron.a_in)  # the input mantissas drive the delta encoder
    source = Source(data=np.transpose(x, (2, 1, 0, 3)).astype(np.int32))
    source.s_out.connect(net.inp)
    sinks = []
    for block in net.layers:
        sink = Sink(shape=block.out.shape, buffer=steps)
        block.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return [sink.data.get() for sink in sinks]
    finally:
        net.stop()


@pytest.mark.slow
def test_sdnn_pruned_under_synops_target_exports_and_runs_in_lava(sdnn_digits, tmp_path):
    """Trained on digits -> SPEAR (few episodes) under a SynOps target -> measured SynOps at or
    under it -> netx equal to slayer's export -> Lava runs the file -> verify."""
    import json

    from converters import lava_verify
    from hw_models import DEFAULT_CHIP, fit
    from neuroprune.cli import main

    target = 0.5
    out = tmp_path / "pruned.pt"
    assert main(["prune", str(sdnn_digits[0]), "--method", "spear", "--synops-target", str(target),
                 "--episodes", "4", "--warmup", "2", "--lre-samples", "4", "--recovery-steps", "5",
                 "--finetune-steps", "20", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((tmp_path / "pruned.json").read_text())
    assert 0 < summary["synops_ratio"] <= target
    assert summary["acc_pruned"] > 0.3  # well above chance after a 20-step fine-tune
    # the target holds in the messages the chip sends (bit-exact chip model, as `energy` counts)
    from neuroprune.pipeline import chip_rates, load_net_run, load_trained

    samples = len(load_trained(str(sdnn_digits[0])).dataset.y_test)
    on_chip = []
    for path in (sdnn_digits[0], out):
        run = load_net_run(str(path), None, samples, None)
        rates, _ = chip_rates(run)
        on_chip.append(fit(run.network, DEFAULT_CHIP, rates, time_steps=STEPS).totals.synops_per_step * STEPS)
    assert on_chip[1] / on_chip[0] <= target
    assert on_chip[1] / on_chip[0] == pytest.approx(summary["synops_ratio"], rel=1e-9)
    model, _ = snn_model.load_model(str(out))
    assert model.neuron_kind == "sdnn"
    dense_sizes = [s.out for s in snn_model.load_model(str(sdnn_digits[0]))[0].specs() if s.kind == "conv"]
    assert [s.out for s in model.specs() if s.kind == "conv"] != dense_sizes  # channels really went

    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 1, 8, 8, 2))
    _slayer_export(model, tmp_path / "slayer.net")
    ours, theirs = _datasets(tmp_path / "pruned.net"), _datasets(tmp_path / "slayer.net")
    assert sorted(ours) == sorted(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in theirs)

    # Lava runs the exported file (fixed point): every layer sends, and once the static
    # image has passed Lava's per-layer delays, the class its output integrates is the one
    # slayer's forward ends with
    x = _digits_chip_input(model, samples=3)
    model.eval()
    with torch.no_grad():
        ours_last = model(torch.as_tensor(x, dtype=torch.float32).div(64))[..., -1].argmax(1).numpy()
    for sample in range(3):
        outputs = _run_in_lava(tmp_path / "pruned.net", x[sample])
        assert all(np.count_nonzero(o) for o in outputs)
        assert int(outputs[-1][..., -1].argmax()) == ours_last[sample]

    result = lava_verify.verify(tmp_path / "pruned.net", x=x[:1])
    assert result.exact, [(m.index, m.percent, m.first_mismatch) for m in result.layers]
