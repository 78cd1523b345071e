"""Build an IR network in nengo-loihi 1.1.0 (the test oracle) and read back its costs.

Every on-chip layer of the IR network becomes a nengo ensemble of the same neurons in
nengo-loihi's on-chip order (image layers channels-last, as :func:`hw_models.cost.chip_order`
orders them); convs become ``nengo.Convolution`` transforms (shared weights, population
axons), dense layers a dense or ``nengo.Sparse`` transform. nengo-loihi's own builder
splits the ensembles into blocks (``split_model``), and its Greedy allocator places one
block per core; nothing runs on hardware. The input layer is always an on-chip ensemble
here (nengo-loihi cannot feed host spikes into a conv); its cores are reported apart.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hw_models.cost import chip_order
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import nengo
    import nengo_loihi
    import scipy.sparse
    from nengo_loihi.hardware.allocators import Greedy


@dataclass(frozen=True)
class OracleLayer:
    """nengo-loihi's blocks of one layer: cores and per-layer sums."""

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


def build(network: Network, sparse: bool = False) -> tuple[dict[int, OracleLayer], int]:
    """(nengo-loihi's costs per IR layer index, total cores from its Greedy allocator).

    ``sparse``: dense layers go in as ``nengo.Sparse`` transforms (nengo-loihi's sparse
    matrix format) instead of dense arrays.
    """
    ensembles: dict[int, nengo.Ensemble] = {}
    lif = nengo.SpikingRectifiedLinear()
    with nengo.Network(seed=0) as net:
        nengo_loihi.add_params(net)

        def ensemble(index: int, size: int) -> nengo.Ensemble:
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with nengo_loihi.Simulator(net, target="sim", progress_bar=False) as sim:
            model = sim.model
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
