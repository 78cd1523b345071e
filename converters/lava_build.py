"""Build and run in Lava the netx networks lava-dl 0.6's netx cannot build.

lava-dl 0.6's ``netx.hdf5.Network`` raises ``NotImplementedError`` for ``pool``, ``convT``,
``unpool`` and ``concat`` layers, and fails on resonate-and-fire neurons anywhere but behind
a complex synapse. This module builds the Lava process graph of such a
network from the IR and its netx file with Lava's and lava-dl's own processes:

- ``input``, ``dense``, ``dense_rec``, ``dense_comp``, ``conv``: lava-dl netx's block
  factories (``hdf5.Network.create_input``, ``create_dense``, ``create_conv``) on the
  file's layer entries, exactly as netx builds them;
- ``pool``: netx's ``Conv`` block (``create_conv``) with the depthwise weights of the pool;
- ``convT`` and ``unpool``: netx's ``Dense`` block on the unrolled weight matrix
  (:meth:`neuroprune.ir.ConvTransposeLayer.unrolled_weight`), its weights scaled by
  lava-dl's ``optimize_weight_bits`` as ``create_dense`` scales any dense layer; the
  block's neurons sit in C, H, W order and its output port is reshaped to Lava's W, H, C;
- ``concat``: :class:`converters.lava_procs.join.Join` processes (receive the inputs,
  send them joined along the channel axis in the same time step: routing only). Lava's
  own port concatenation (``OutPort.concat_with``) cannot be used: Lava 0.10's compiler
  raises ``NotImplementedError("ConcatPorts are not yet supported.")``;
- ``flatten``: the producer's port transposed to C, H, W and flattened, as netx flattens;
- resonate-and-fire neurons (``RF_PHASE``, ``RF_IZHIKEVICH``) behind ``input``, ``dense``,
  ``dense_rec``, ``conv``, ``pool``, ``convT`` and ``unpool`` layers, which netx's blocks
  cannot feed (they connect the neuron's ``a_in``; Lava's RF processes have only
  ``a_real_in`` and ``a_imag_in``): Lava's RF or RF_IZ process with the parameters netx's
  ``get_neuron_params`` gives, its ``a_real_in`` fed by the synapse netx's block would build
  (a Lava ``Dense``, or ``DelayDense`` for stored delays, on the weights scaled by
  ``optimize_weight_bits``; for ``dense_rec`` one scaling of ``hstack(weight, weight_rec)``
  and a second ``Dense`` from the neurons' spikes back to their real input; Lava's ``Conv``
  on netx's reordered kernel for ``conv`` and ``pool``; the unrolled dense synapse for
  ``convT`` and ``unpool``) or, for an input layer, by the input mantissas themselves. Their
  imaginary input stays unconnected (zero). Behind a complex synapse they are netx's
  ``ComplexDense`` block.

Host-side readouts (``average``) are not built (see ``Network.chip_part``).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Callable

import numpy as np

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import ConcatLayer, ConvTransposeLayer, Network, PoolLayer, UnpoolLayer

__all__ = ["build", "run_lava", "netx_builds", "check_rf", "NETX_BUILT", "RF_BUILT"]

#: layer kinds lava-dl 0.6's netx builds itself (a network of only these runs through netx, unless
#: :func:`netx_builds` finds a neuron its block cannot feed; netx lacks the create_complex_dense
#: its dense_comp branch calls)
NETX_BUILT = ("input", "dense", "dense_rec", "conv", "flatten")

#: layer kinds behind which resonate-and-fire neurons are built here (dense_comp: netx's ComplexDense)
RF_BUILT = ("input", "dense", "dense_rec", "dense_comp", "conv", "pool", "convT", "unpool")

#: netx's largest synaptic delay (longer delays are clamped to it, with a warning)
_NETX_MAX_DELAY = 62

#: most entries of an unrolled transposed convolution built as a dense Lava synapse (256 MB as int64)
MAX_UNROLLED = 1 << 25

#: the neuron netx gives a dense block whose file stores none (a non-leaky integrator)
_NO_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17, "refDelay": 1, "gradedSpike": False}


def _lava() -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        from lava.lib.dl.netx import hdf5
        from lava.lib.dl.netx.blocks.process import Dense
        from lava.lib.dl.netx.utils import NetDict, optimize_weight_bits
        from lava.proc.conv.process import Conv as ConvSynapse
        from lava.proc.dense.process import Dense as DenseSynapse
        from lava.proc.dense.process import DelayDense as DelayDenseSynapse

        from converters.lava_procs.join import Join
    return {"hdf5": hdf5, "Dense": Dense, "NetDict": NetDict, "optimize_weight_bits": optimize_weight_bits,
            "Join": Join, "DenseSynapse": DenseSynapse, "DelayDenseSynapse": DelayDenseSynapse,
            "ConvSynapse": ConvSynapse}


def _resonates(layer: Any) -> bool:
    from neuroprune.snn.fixed_rf import RF_KINDS

    neuron = getattr(layer, "neuron", None)
    return neuron is not None and neuron.kind in RF_KINDS


def netx_builds(path: str | os.PathLike[str], network: Network) -> bool:
    """Whether lava-dl's netx builds the whole file ``path`` (read as ``network``): only
    :data:`NETX_BUILT` types, and no resonate-and-fire neuron behind a block that feeds an
    ``a_in`` (anything but a complex synapse)."""
    from converters import netx

    if not set(netx.stored_types(path)) <= set(NETX_BUILT):
        return False
    return not any(_resonates(layer) and layer.kind != "dense_comp" for layer in network.layers)


class _RFBlock:
    """A resonate-and-fire population and the synapse feeding its real input, with the
    ports a netx block has (``inp``, ``out``, ``output_message_bits``)."""

    output_message_bits = 0  # netx's get_neuron_params gives RF neurons binary spikes

    def __init__(self, neuron: Any, synapse: Any = None, synapse_rec: Any = None) -> None:
        self.neuron, self.synapse, self.synapse_rec = neuron, synapse, synapse_rec
        self.inp = neuron.a_real_in if synapse is None else synapse.s_in
        self.out = neuron.s_out


def _rf_neuron(lava: dict[str, Any], neuron_config: Any, shape: tuple[int, ...]) -> Any:
    """Lava's RF (RF_PHASE) or RF_IZ (RF_IZHIKEVICH) process as netx configures it."""
    params = dict(lava["hdf5"].Network.get_neuron_params(neuron_config))
    process = params.pop("neuron_proc")
    return process(shape=shape, **params)


def _netx_delay(delay: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A file's delays as netx's create_dense makes them: clamped to 62, one per synapse."""
    delay = np.clip(np.asarray(delay), 0, _NETX_MAX_DELAY)
    if delay.ndim == 0:
        return np.full(weight.shape, int(delay))
    if delay.ndim == 1 and delay.size == weight.shape[0]:  # one per output neuron
        return np.repeat(delay.reshape(-1, 1), weight.shape[1], axis=1)
    if delay.ndim == 1 and delay.size == weight.shape[1]:  # one per input
        return np.repeat(delay.reshape(1, -1), weight.shape[0], axis=0)
    if delay.shape != weight.shape:
        raise ShapeError(f"delay of shape {delay.shape} does not fit a weight matrix of shape {weight.shape}")
    return delay


def check_rf(network: Network) -> None:
    """Refuse, in one line naming the layer, resonate-and-fire neurons Lava cannot run as
    the file gives them: behind a layer kind not in :data:`RF_BUILT`, or with a bias (Lava's
    RF processes have none)."""
    for index, layer in enumerate(network.layers):
        if not _resonates(layer):
            continue
        kind = layer.neuron.kind
        if layer.kind not in RF_BUILT:
            raise UnsupportedLayerError(
                f"layer {index} ({layer.kind}): Lava runs {kind} neurons only behind {', '.join(RF_BUILT)} layers "
                "(Lava's RF processes have no a_in for its synapse); give this layer CUBA neurons to verify it")
        bias = getattr(layer, "bias", None)
        if bias is not None and np.any(bias):
            raise UnsupportedLayerError(f"layer {index} ({layer.kind}): {kind} neurons take no bias in Lava (its RF "
                                        "processes have none); remove the layer's bias")


def _rf_dense_block(lava: dict[str, Any], neuron_config: Any, weight: np.ndarray, message_bits: int,
                    weight_rec: np.ndarray | None = None, delay: np.ndarray | None = None) -> _RFBlock:
    """Resonate-and-fire neurons behind a dense synapse as netx's Dense block builds it (or
    netx's RecurrentDense with ``weight_rec``: both scaled by one ``optimize_weight_bits`` of
    ``hstack(weight, weight_rec)``, the recurrent synapse fed by the neurons' own spikes),
    feeding the neurons' real input. ``delay``: one per synapse, as netx's create_dense makes it."""
    with contextlib.redirect_stdout(io.StringIO()):  # netx prints a warning when it clips
        if weight_rec is not None:
            joint, num_bits, exponent, _ = lava["optimize_weight_bits"](np.hstack((weight, weight_rec)))
            weight, weight_rec = joint[:, :weight.shape[1]], joint[:, weight.shape[1]:]
        else:
            weight, num_bits, exponent, _ = lava["optimize_weight_bits"](weight)
    scaling = {"weight_exp": exponent, "num_weight_bits": num_bits, "num_message_bits": message_bits}
    if delay is not None:
        synapse = lava["DelayDenseSynapse"](weights=weight, delays=delay.astype(int), max_delay=_NETX_MAX_DELAY,
                                            **scaling)
    else:
        synapse = lava["DenseSynapse"](weights=weight, **scaling)
    neuron = _rf_neuron(lava, neuron_config, (weight.shape[0],))
    synapse.a_out.connect(neuron.a_real_in)
    synapse_rec = None
    if weight_rec is not None:  # the layer's own spikes, weighted, back into its real input a step later
        synapse_rec = lava["DenseSynapse"](weights=weight_rec, **scaling)
        neuron.s_out.connect(synapse_rec.s_in)
        synapse_rec.a_out.connect(neuron.a_real_in)
    return _RFBlock(neuron, synapse, synapse_rec)


def _rf_dense_layer(lava: dict[str, Any], layer: Any, config: Any, message_bits: int, index: int) -> _RFBlock:
    """A dense or dense_rec layer of resonate-and-fire neurons from its netx entry."""
    size = int(np.prod(config["shape"]))
    weight = np.asarray(config["weight"])
    recurrent = layer.kind == "dense_rec"
    weight_rec = np.asarray(config["weight_rec"]) if recurrent else None
    if weight.ndim == 1:
        weight = weight.reshape(size, -1)
        weight_rec = None if weight_rec is None else weight_rec.reshape(size, -1)
    delay = None
    if "delay" in config.keys():  # netx's DelayDense for any stored delays
        if recurrent and np.any(config["delay"]):
            raise UnsupportedLayerError(f"layer {index} (dense_rec) with synaptic delays cannot be built in Lava; "
                                        "train it without delays")
        delay = None if recurrent else _netx_delay(config["delay"], weight)
    return _rf_dense_block(lava, config["neuron"], weight, message_bits, weight_rec, delay)


def _rf_conv_block(lava: dict[str, Any], config: Any, input_shape: tuple[int, ...], message_bits: int,
                   layer: Any, index: int) -> _RFBlock:
    """Resonate-and-fire neurons behind a conv synapse as netx's create_conv and Conv block
    build it (kernel flipped and put in Lava's (out, W, H, in) order), feeding their real input."""

    def pair(value: Any) -> np.ndarray:  # netx's expand: a scalar for both axes, else reversed to (x, y)
        return np.array([value, value]) if np.isscalar(value) else np.asarray(value)[::-1]

    weight = np.asarray(config["weight"])[:, :, ::-1, ::-1]
    weight = weight.reshape(weight.shape[:4]).transpose((0, 3, 2, 1))
    synapse = lava["ConvSynapse"](input_shape=input_shape, weight=weight, stride=pair(config["stride"]),
                                  padding=pair(config["padding"]), dilation=pair(config["dilation"]),
                                  groups=config["groups"], num_message_bits=message_bits)
    shape = tuple(int(s) for s in np.asarray(config["shape"])[::-1])  # W, H, C
    if tuple(synapse.output_shape) != shape:
        raise ShapeError(f"layer {index} ({layer.kind}): Lava's conv gives {tuple(synapse.output_shape)}, "
                         f"the file says {shape}")
    neuron = _rf_neuron(lava, config["neuron"], shape)
    synapse.a_out.connect(neuron.a_real_in)
    return _RFBlock(neuron, synapse)


def _lava_order(port: Any) -> Any:
    """A port of torch shape (C, H, W) seen in Lava's (W, H, C) order, and back (its own inverse)."""
    return port.transpose([2, 1, 0]) if len(port.shape) == 3 else port


def _flat(port: Any) -> Any:
    """A Lava-order port flattened in torch's C, H, W order (as netx flattens between blocks)."""
    return _lava_order(port).flatten() if len(port.shape) > 1 else port


def _neuron_config(config: Any) -> Any:
    return config["neuron"] if "neuron" in config.keys() else _NO_NEURON


def _unrolled_block(lava: dict[str, Any], layer: ConvTransposeLayer, config: Any, in_shape: tuple[int, ...],
                    shape: tuple[int, ...], message_bits: int) -> Any:
    """netx's Dense block on the unrolled transposed convolution (neurons in C, H, W order);
    resonate-and-fire neurons behind the same synapse, fed into their real input."""
    if layer.delay is not None and np.any(layer.delay):
        raise UnsupportedLayerError(f"convT layer {layer.name!r} with synaptic delays cannot be built in Lava; "
                                    "train it without delays")
    entries = int(np.prod(shape)) * int(np.prod(in_shape))
    if entries > MAX_UNROLLED:
        raise UnsupportedLayerError(
            f"{layer.kind} layer {layer.name!r}: Lava runs it as a {int(np.prod(shape))} x {int(np.prod(in_shape))} "
            f"dense matrix, more than the {MAX_UNROLLED} entries a simulation here holds; verify a smaller network")
    if _resonates(layer):
        return _rf_dense_block(lava, _neuron_config(config), layer.unrolled_weight(in_shape), message_bits)
    weight, bits, exponent, sign_mode = lava["optimize_weight_bits"](layer.unrolled_weight(in_shape))
    params = {"shape": (int(np.prod(shape)),), "weight": weight, "num_weight_bits": bits,
              "weight_exponent": exponent, "sign_mode": sign_mode, "input_message_bits": message_bits,
              "neuron_params": lava["hdf5"].Network.get_neuron_params(_neuron_config(config))}
    if layer.bias is not None:  # one value per channel or per neuron, in C, H, W order
        params["bias"] = np.broadcast_to(np.asarray(layer.bias).reshape(-1, *([1] * (len(shape) - 1)))
                                         if np.asarray(layer.bias).size == shape[0] else
                                         np.asarray(layer.bias).reshape(shape), shape).reshape(-1)
    return lava["Dense"](**params)


def build(path: str | os.PathLike[str], network: Network, source: Any) -> dict[int, Any]:
    """Build ``network`` (read from the netx file ``path``) in Lava, fed by the OutPort
    ``source`` (the input layer's spikes or input mantissas, Lava's W, H, C order).

    Returns the Lava block of every layer that holds compartments, by IR index (the
    blocks' ``out`` ports give their spikes in Lava's order). Raises
    :class:`UnsupportedLayerError` naming a layer it cannot build.
    """
    check_rf(network)
    lava = _lava()
    hdf5 = lava["hdf5"].Network
    configs = lava["NetDict"](str(path))["layer"]
    offset = 0 if configs[0]["type"] == "input" else 1  # a file without input layer: its ids are one lower
    # IR index -> a function making its output port (Lava order; torch order for 1-D): virtual
    # ports are made per consumer, as Lava's compiler fails on a virtual port that goes nowhere
    outputs: dict[int, Callable[[], Any]] = {}
    bits: dict[int, int] = {}  # IR index -> message bits of its output
    blocks: dict[int, Any] = {}
    for index, layer in enumerate(network.layers):
        if layer.on_host:
            break
        config = configs[index - offset] if index >= offset else None
        previous = network.sources_of(index)[:1]  # what a layer other than a concat receives
        feed, in_bits = (outputs[previous[0]], bits[previous[0]]) if previous else (lambda: source, 0)
        shape, in_shape = network.shapes[index], network.input_shape_of(index)
        block = None
        flat_input = False
        with contextlib.redirect_stdout(io.StringIO()):
            if _resonates(layer) and layer.kind == "input":  # the input mantissas into the real input
                block = _RFBlock(_rf_neuron(lava, config["neuron"], tuple(int(s) for s in config["shape"][::-1])))
            elif _resonates(layer) and layer.kind in ("dense", "dense_rec"):
                block = _rf_dense_layer(lava, layer, config, in_bits, index)
                flat_input = True
            elif layer.kind == "input":
                if layer.holds_compartments:
                    block, _ = hdf5.create_input(config)
                    block.inp.connect(block.neuron.a_in)  # the input mantissas arrive as synaptic input
            elif layer.kind in ("dense", "dense_rec", "dense_comp"):
                block, _ = hdf5.create_dense(config, input_message_bits=in_bits, rec=layer.kind == "dense_rec")
                flat_input = True
            elif layer.kind in ("conv", "pool"):
                if isinstance(layer, PoolLayer):  # netx's conv block on the pool's depthwise weights
                    conv = layer.as_conv(in_shape[0])
                    config = {"shape": np.array(shape), "neuron": _neuron_config(config), "weight": conv.weight,
                              "stride": np.array(conv.stride), "padding": np.array(conv.padding),
                              "dilation": np.array(conv.dilation), "groups": np.int64(conv.groups)}
                if _resonates(layer):
                    block = _rf_conv_block(lava, config, tuple(in_shape[::-1]), in_bits, layer, index)
                else:
                    block, _ = hdf5.create_conv(config, input_shape=tuple(in_shape[::-1]),
                                                input_message_bits=in_bits)
            elif layer.kind in ("convT", "unpool"):
                transposed = layer.as_conv_transpose(in_shape[0]) if isinstance(layer, UnpoolLayer) else layer
                block = _unrolled_block(lava, transposed, config, in_shape, shape, in_bits)  # type: ignore[arg-type]
                flat_input = True
            elif layer.kind == "flatten":
                outputs[index], bits[index] = (lambda feed=feed: _flat(feed())), in_bits
                continue
            elif isinstance(layer, ConcatLayer):
                sources = network.sources_of(index)
                axis = 2 if len(shape) == 3 else 0  # channels: Lava's last axis of (W, H, C)
                joined = outputs[sources[0]]()
                for other in sources[1:]:
                    port = outputs[other]()
                    join = lava["Join"](tuple(joined.shape), tuple(port.shape), axis)
                    joined.connect(join.inp_a)
                    port.connect(join.inp_b)
                    joined = join.out
                outputs[index], bits[index] = (lambda joined=joined: joined), max(bits[s] for s in sources)
                continue
            else:
                raise UnsupportedLayerError(f"layer {index}: Lava cannot build a {layer.kind} layer here")
        if block is None:  # an input without neurons: the source itself
            outputs[index], bits[index] = (lambda: source), 0
            continue
        (_flat(feed()) if flat_input else feed()).connect(block.inp)
        if layer.kind in ("convT", "unpool"):  # neurons in C, H, W order
            outputs[index] = lambda block=block, shape=shape: _lava_order(block.out.reshape(shape))
        else:
            outputs[index] = lambda block=block: block.out
        bits[index] = int(block.output_message_bits)
        blocks[index] = block
    return blocks


def run_lava(path: str | os.PathLike[str], network: Network, x: np.ndarray) -> dict[int, np.ndarray]:
    """Run one input ``(*input_shape, T)`` through the network built by :func:`build`
    (``Loihi2SimCfg``, fixed point). Returns the spikes ``(*shape, T)`` in torch order of
    every layer that holds compartments, by IR index (as ``lava_verify.run_lava``): int8 0/1,
    or the int64 payloads of layers whose neurons send graded spikes."""
    from converters.lava_verify import _flip_space, _lava_modules, _messages, _run_recorded

    lava = _lava_modules()
    steps = x.shape[-1]
    source = lava["Source"](data=_flip_space(x).astype(np.int32))  # (C,H,W,T) -> (W,H,C,T)
    blocks = build(path, network, source.s_out)
    recorded = _run_recorded(lava, source, {index: block.out for index, block in blocks.items()}, steps)
    result = {}
    for index, out in recorded.items():
        if network[index].kind in ("convT", "unpool"):  # neurons in C, H, W order
            values = out.reshape(*network.shapes[index], steps)
        else:
            values = _flip_space(out)
        result[index] = _messages(path, network, index, values)
    return result
