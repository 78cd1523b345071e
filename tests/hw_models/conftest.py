"""Shared builders for the hw_models tests: small IR networks, chip-file variants and
netx files written by lava-dl's own slayer blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hw_models.chip import CHIPS_DIR, load_chip
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron

NEURON = Neuron()


def dense_net(weights: list[np.ndarray], name: str = "dense") -> Network:
    """Input (no neurons, spikes from the host) followed by dense layers."""
    layers = [InputLayer(shape=(weights[0].shape[1],))]
    layers += [DenseLayer(weight=w, neuron=NEURON) for w in weights]
    return Network(layers, name=name)


def full_weights(out: int, inp: int, low: int = -128, high: int = 127, seed: int = 0) -> np.ndarray:
    """Integer weights with no zero, spanning [low, high] (8-bit mixed by default)."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(low, high + 1, size=(out, inp))
    weight[weight == 0] = high
    weight.flat[0], weight.flat[-1] = low, high
    return weight.astype(np.int32)


def chip_variant(tmp_path: Path, base: str = "loihi1", **replace: object) -> Path:
    """A copy of a preset chip file with some ``key = value`` lines replaced."""
    text = (CHIPS_DIR / f"{base}.toml").read_text()
    for key, value in replace.items():
        text, count = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {value}   ", text)
        assert count == 1, key
    path = tmp_path / f"hw_{base}_variant.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def loihi1():
    return load_chip("loihi1")


@pytest.fixture(scope="session")
def loihi2():
    return load_chip("loihi2")


@pytest.fixture(scope="session")
def lava_dl_files(tmp_path_factory) -> dict[str, Path]:
    """netx files written by lava-dl itself: a dense MNIST-like 784-512-10 net and a
    conv net (input neurons, two strided convs, flatten, dense)."""
    from converters.slayer_export import example_blocks, export_blocks

    folder = tmp_path_factory.mktemp("hw_lava_dl")
    return {name: export_blocks(example_blocks(name)[1], folder / f"hw_lava_{name}.net", example_blocks(name)[0])
            for name in ("dense", "conv")}


def small_conv_net(channels: int = 4) -> Network:
    """Input 2x12x12 -> conv k3 s1 p1 -> conv k3 s2 p1 -> flatten -> dense 10 -> dense 5."""
    rng = np.random.default_rng(1)
    return Network([
        InputLayer(shape=(2, 12, 12), neuron=NEURON),
        ConvLayer(weight=rng.integers(-8, 8, size=(channels, 2, 3, 3)).astype(np.int32), padding=1, neuron=NEURON),
        ConvLayer(weight=rng.integers(-8, 8, size=(8, channels, 3, 3)).astype(np.int32), padding=1, stride=2,
                  neuron=NEURON),
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-8, 8, size=(10, 8 * 6 * 6)).astype(np.int32), neuron=NEURON),
        DenseLayer(weight=rng.integers(-8, 8, size=(5, 10)).astype(np.int32), neuron=NEURON),
    ], name="small_conv")


# ----------------------------------------------------------------------------- nengo-loihi
@dataclass(frozen=True)
class OracleLayer:
    """nengo-loihi 1.1.0's blocks of one layer (the test oracle): cores and sums."""

    cores: int
    in_axons: int
    out_axons: int
    synapse_bits: int
    weight_bits: tuple[int, ...]


def _padding(layer: ConvLayer, in_shape: tuple[int, ...]) -> str:
    if layer.padding == (0, 0):
        return "valid"
    kernel = layer.kernel_size
    if all(2 * p == k - 1 for p, k in zip(layer.padding, kernel)):
        return "same"
    raise ValueError(f"nengo has only 'valid' and 'same' padding, not {layer.padding}")


def nengo_loihi_build(network: Network, sparse: bool = False) -> tuple[dict[int, OracleLayer], int]:
    """(nengo-loihi's costs per IR layer index, total cores from its Greedy allocator).

    The test oracle: every on-chip layer becomes a nengo ensemble of the same neurons in
    nengo-loihi's on-chip order (image layers channels-last, as
    :func:`hw_models.cost.chip_order` orders them); convs become ``nengo.Convolution``
    transforms (shared weights, population axons), dense layers a dense or, with
    ``sparse``, a ``nengo.Sparse`` transform. nengo-loihi's own builder splits the
    ensembles into blocks (``split_model``) and its Greedy allocator places one block
    per core; nothing runs on hardware. The input layer is always an on-chip ensemble.
    """
    import warnings

    import scipy.sparse

    from hw_models.cost import chip_order

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nengo
        import nengo_loihi
        from nengo_loihi.hardware.allocators import Greedy

    ensembles: dict = {}
    lif = nengo.SpikingRectifiedLinear()
    with nengo.Network(seed=0) as net:
        nengo_loihi.add_params(net)

        def ensemble(index: int, size: int):
            ens = nengo.Ensemble(size, 1, neuron_type=lif, gain=nengo.dists.Choice([1.0]),
                                 bias=nengo.dists.Choice([0.0]), label=f"L{index}")
            ensembles[index] = ens
            return ens

        previous = None
        for index, layer in enumerate(network.layers):
            shape = network.shapes[index]
            if isinstance(layer, InputLayer):
                previous = (index, ensemble(index, int(np.prod(shape))))
            elif isinstance(layer, FlattenLayer):
                continue
            elif isinstance(layer, ConvLayer):
                channels, height, width = network.shapes[previous[0]]
                kernel = np.transpose(layer.effective_weight.astype(float), (2, 3, 1, 0)) / 256.0
                transform = nengo.Convolution(
                    layer.out_channels, (height, width, channels), strides=layer.stride,
                    padding=_padding(layer, (channels, height, width)), channels_last=True,
                    kernel_size=layer.kernel_size, init=kernel)
                post = ensemble(index, transform.output_shape.size)
                nengo.Connection(previous[1].neurons, post.neurons, transform=transform, synapse=0.005)
                previous = (index, post)
            elif isinstance(layer, DenseLayer):
                weight = layer.effective_weight.astype(float) / 256.0
                order = chip_order(network.shapes[previous[0]])
                if order is not None:
                    weight = weight[:, order]
                post = ensemble(index, weight.shape[0])
                transform = nengo.Sparse(weight.shape, init=scipy.sparse.csr_matrix(weight)) if sparse else weight
                nengo.Connection(previous[1].neurons, post.neurons, transform=transform, synapse=0.005)
                previous = (index, post)
            else:
                raise ValueError(f"layer type {layer.kind!r} has no nengo-loihi equivalent here")
    # nengo-loihi splits a block into equal parts by its totals and does not check the
    # parts ("rare", says split_blocks.py); where a part breaks a limit, do what its
    # docs tell a user: set a finer block_shape on that ensemble, one part more a time
    from nengo.exceptions import BuildError

    for _ in range(32):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with nengo_loihi.Simulator(net, target="sim", progress_bar=False) as sim:
                    model = sim.model
            break
        except BuildError as err:
            found = re.search(r"'L(\d+)'>\[0:(\d+):1\]", str(err))
            if found is None:
                raise
            ens = ensembles[int(found.group(1))]
            parts = -(-ens.n_neurons // int(found.group(2))) + 1
            net.config[ens].block_shape = nengo_loihi.BlockShape((-(-ens.n_neurons // parts),), (ens.n_neurons,))
    board = Greedy()(model, n_chips=64)
    cores = sum(len(chip.cores) for chip in board.chips)
    per_layer: dict[int, list] = {index: [] for index in ensembles}
    for block in model.blocks:
        per_layer[int(block.label.split("'L")[1].split("'")[0])].append(block)
    result = {}
    for index, blocks in per_layer.items():
        result[index] = OracleLayer(
            cores=len(blocks),
            in_axons=sum(s.n_axons for b in blocks for s in b.synapses),
            out_axons=sum(a.axon_slots() for b in blocks for a in b.axons),
            synapse_bits=sum(s.bits() for b in blocks for s in b.synapses),
            weight_bits=tuple(sorted({s.synapse_cfg.real_weight_bits for b in blocks for s in b.synapses})),
        )
    return result, cores


def check_axons_against_brute_force(layer, spec: dict, chunk: int, chip, brute_force) -> None:
    """Cost ``layer`` in blocks of ``chunk`` neurons and compare its fan-out and input axons
    with ``brute_force(layer, in_shape, out_shape, blocks)``: a (block, input neuron) count
    of synapses (``+ 1000`` per non-zero one). Ungrouped layers take one population axon per
    reaching pixel; grouped ones between one per pixel and one per input neuron."""
    from hw_models.cost import make_coster

    in_shape = (spec["cin"], spec["size"], spec["size"])
    out_shape = layer.output_shape(in_shape)
    coster, _, _ = make_coster(layer, in_shape, out_shape, chip)
    costs = coster.evaluate(min(chunk, coster.neurons))
    expected = brute_force(layer, in_shape, out_shape, list(zip(costs.starts, costs.stops)))
    assert np.array_equal(costs.fanout_synapses, (expected // 1000).sum(axis=0))
    reached = expected.reshape(len(costs.starts), spec["cin"], -1) > 0        # (block, channel, pixel)
    pixels = reached.any(axis=1).sum(axis=1)
    if spec["groups"] == 1:  # one population axon per reaching pixel
        assert np.array_equal(costs.in_axons, pixels)
    else:  # discrete axons: between one per pixel and one per input neuron
        assert np.all(costs.in_axons >= pixels) and np.all(costs.in_axons <= reached.sum(axis=(1, 2)))
    assert costs.stops[-1] == np.prod(out_shape)
