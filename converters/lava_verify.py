"""Run a netx network in Lava (``Loihi2SimCfg``, fixed point) and compare its spikes,
layer by layer, with neuroprune's bit-exact fixed-point model of the same file.

Layers whose neurons send graded spikes (SDNN) are compared by value: every payload
must be equal, not only whether a message was sent. Message counts (``lava_spikes``,
``our_spikes``) count the non-zero messages, which for binary spikes are the spikes.

The reference is Lava: ``lava.lib.dl.netx.hdf5.Network`` built from the file, driven by
a ``RingBuffer`` source, every layer's output recorded by its own ``RingBuffer`` sink.
Our side is :func:`neuroprune.snn.fixed.run_fixed` on :func:`converters.netx.read` of
the same file. Works for any netx file the reader accepts, not only our exports.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import Network

__all__ = ["LayerMatch", "VerifyResult", "run_lava", "verify", "random_input", "to_chw", "LAYOUTS"]


@dataclass(frozen=True)
class LayerMatch:
    """Agreement of one layer: ``matched`` of ``total`` (neuron, step) pairs equal (the
    spike, or the graded payload); ``*_spikes`` count non-zero messages."""

    index: int
    kind: str
    shape: tuple[int, ...]
    total: int
    matched: int
    lava_spikes: int
    our_spikes: int
    first_mismatch: tuple[int, ...] | None = None  # (sample, *neuron index in (C,H,W), step)
    graded: bool = False  # its neurons send graded spikes: payloads compared by value

    @property
    def percent(self) -> float:
        return 100.0 * self.matched / self.total if self.total else 100.0


@dataclass(frozen=True)
class VerifyResult:
    layers: list[LayerMatch]
    steps: int
    samples: int
    lava_counts: dict[int, np.ndarray] = field(default_factory=dict)  # per layer non-zero messages per step

    @property
    def exact(self) -> bool:
        return all(layer.matched == layer.total for layer in self.layers)

    @property
    def percent(self) -> float:
        total = sum(layer.total for layer in self.layers)
        return 100.0 * sum(layer.matched for layer in self.layers) / total if total else 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "percent": self.percent,
            "steps": self.steps,
            "samples": self.samples,
            "layers": [
                {"index": m.index, "type": m.kind, "shape": list(m.shape), "match_percent": m.percent,
                 "lava_spikes": m.lava_spikes, "our_spikes": m.our_spikes,
                 "first_mismatch": None if m.first_mismatch is None else list(m.first_mismatch),
                 "graded": m.graded}
                for m in self.layers
            ],
        }


LAYOUTS = ("auto", "chw", "xyc")


def to_chw(x: np.ndarray, input_shape: tuple[int, ...], layout: str = "auto") -> np.ndarray:
    """Input ``(samples, *shape, T)`` or ``(*shape, T)`` as ``(samples, *input_shape, T)`` (C, H, W order).

    ``layout`` is ``"chw"`` (neuroprune's and torch's order), ``"xyc"`` (lava-dl's recorded
    inputs: ``(W, H, C, T)``, each step's shape reversed) or ``"auto"``: the one of the two
    the array's shape matches. Shapes matching both with a different meaning (a per-step
    shape equal to its reverse, such as (2, 5, 2)) are refused as ambiguous. Unit axes may
    be left out (lava-dl's N-TIDIGITS input is ``(64, T)`` for a ``(64, 1, 1)`` net).
    """
    if layout not in LAYOUTS:
        raise ShapeError(f"input layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    x = np.asarray(x)
    shape = tuple(int(s) for s in input_shape)
    xyc = shape[::-1]
    squeezed = tuple(s for s in shape if s != 1)
    forms = [(shape, xyc)] + ([(squeezed, squeezed[::-1])] if squeezed != shape else [])
    for chw_form, xyc_form in forms:
        if x.ndim not in (len(chw_form) + 1, len(chw_form) + 2):
            continue
        batch = x if x.ndim == len(chw_form) + 2 else x[None]
        step = tuple(batch.shape[1:-1])
        matches = [name for name, want in (("chw", chw_form), ("xyc", xyc_form)) if step == want]
        if layout != "auto":
            matches = [name for name in matches if name == layout]
        if len(matches) == 2 and len(chw_form) > 1:
            raise ShapeError(
                f"input of shape {x.shape} reads as C, H, W and as lava-dl's X, Y, C order alike; "
                "say which with --input-layout chw|xyc"
            )
        if not matches:
            continue
        samples, steps = batch.shape[0], batch.shape[-1]
        if matches[0] == "chw":
            return batch.reshape(samples, *shape, steps)
        full = batch.reshape(samples, *xyc, steps)
        return np.transpose(full, (0, *range(full.ndim - 2, 0, -1), full.ndim - 1))
    raise ShapeError(
        f"input has shape {x.shape}; the network expects {shape} per step: (samples, {', '.join(map(str, shape))}, "
        f"steps) in C, H, W order or (samples, {', '.join(map(str, xyc))}, steps) in lava-dl's X, Y, C order "
        f"(--input-layout {layout}; the samples axis may be left out)"
    )


def random_input(network: Network, steps: int, samples: int = 1, seed: int = 0, rate: float = 0.3) -> np.ndarray:
    """Seeded input ``(samples, *input_shape, steps)``: spikes with probability ``rate``,
    or, for a network with an input neuron layer, integer input mantissas in [0, 128)."""
    rng = np.random.default_rng(seed)
    shape = (samples, *network.input_shape, steps)
    if network[0].holds_compartments:  # an input neuron layer
        return (rng.integers(0, 64, size=shape) * 2).astype(np.int64)
    return (rng.random(shape) < rate).astype(np.int64)


def _lava_modules() -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        from lava.lib.dl.netx import hdf5
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
    return {"hdf5": hdf5, "RunSteps": RunSteps, "Loihi2SimCfg": Loihi2SimCfg, "Sink": Sink, "Source": Source}


def _graded(network: Network, index: int) -> bool:
    neuron = getattr(network[index], "neuron", None)
    return neuron is not None and neuron.sends_graded


def _flip_space(values: np.ndarray) -> np.ndarray:
    """Spatial axes reversed, time (last) kept: torch's (C, H, W, T) <-> Lava's (W, H, C, T)."""
    return np.transpose(values, tuple(reversed(range(values.ndim - 1))) + (values.ndim - 1,))


def _run_recorded(lava: dict[str, Any], process: Any, ports: dict[int, Any], steps: int) -> dict[int, np.ndarray]:
    """Record every port of ``ports`` (by IR layer index) with a RingBuffer sink while
    ``process`` runs ``steps`` steps in ``Loihi2SimCfg`` fixed point; stopped in any case."""
    sinks = {}
    for index, port in ports.items():
        sinks[index] = lava["Sink"](shape=port.shape, buffer=steps)
        port.connect(sinks[index].a_in)
    try:
        process.run(condition=lava["RunSteps"](num_steps=steps), run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt"))
        return {index: sink.data.get() for index, sink in sinks.items()}
    finally:
        process.stop()


def _messages(path: str | os.PathLike[str], network: Network, index: int, values: np.ndarray) -> np.ndarray:
    """Layer ``index``'s recorded output (torch order) as int8 spikes, or as the int64 payloads
    of neurons that send graded spikes (refused when Lava sent non-integers)."""
    graded = _graded(network, index)
    if graded and not np.array_equal(values, np.round(values)):
        raise ShapeError(f"{path}: Lava sent non-integer payloads from layer {index}")
    return values.astype(np.int64 if graded else np.int8)


def run_lava(path: str | os.PathLike[str], network: Network, x: np.ndarray,
             reset_interval: int | None = None, reset_offset: int = 0) -> dict[int, np.ndarray]:
    """Run one input ``(*input_shape, T)`` through the netx file in Lava.

    ``reset_interval``, ``reset_offset``: netx's periodic reset of the LIF states
    (``hdf5.Network(reset_interval=..., reset_offset=...)``); ``None``: no reset.

    Returns spikes ``(*shape, T)`` in torch order per IR layer index: int8 0/1, or the
    int64 payloads of layers whose neurons send graded spikes.
    """
    from converters import lava_build

    if not lava_build.netx_builds(path, network):  # Lava graph built by lava_build
        if reset_interval is not None:
            raise UnsupportedLayerError(f"{path}: a reset interval needs a network lava-dl's netx builds whole; "
                                        "run without a reset interval")
        return lava_build.run_lava(path, network, x)
    lava = _lava_modules()
    steps = x.shape[-1]
    reset = {} if reset_interval is None else {"reset_interval": reset_interval, "reset_offset": reset_offset}
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            net = lava["hdf5"].Network(net_config=str(path), **reset)
        except AttributeError as err:  # e.g. lava-dl 0.6's netx calls a create_complex_dense it lacks
            raise UnsupportedLayerError(f"{path}: lava-dl's netx cannot build this network ({err})") from None
    ir_indices = network.compartment_indices()  # the layers netx turns into Lava blocks, in order
    if len(ir_indices) != len(net.layers):
        raise ShapeError(f"{path}: Lava built {len(net.layers)} blocks, the reader found {len(ir_indices)}")
    data = _flip_space(x)  # (C,H,W,T) -> (W,H,C,T)
    if tuple(net.inp.shape) != data.shape[:-1] and len(net.inp.shape) == 1:
        # an input without neuron followed by a flatten: the first block is the dense layer, which
        # netx feeds no flattening of its own; flatten as netx flattens between blocks (C, H, W order)
        data = x.reshape(-1, steps)
    first = net.layers[0]
    if type(first).__name__ == "Input":
        # netx leaves the input block's port unconnected (its input is meant to arrive
        # through the neuron bias); wire it to the input neuron so the input mantissas
        # arrive as that neuron's synaptic input, as ``run_fixed`` assumes.
        first.inp.connect(first.neuron.a_in)
    source = lava["Source"](data=data.astype(np.int32))
    source.s_out.connect(net.inp)
    recorded = _run_recorded(lava, net, {index: block.out for index, block in zip(ir_indices, net.layers)}, steps)
    return {index: _messages(path, network, index, _flip_space(out)) for index, out in recorded.items()}


def verify(path: str | os.PathLike[str], x: np.ndarray | None = None, steps: int = 32, samples: int = 1,
           seed: int = 0, network: Network | None = None, layout: str = "auto",
           reset_interval: int | None = None, reset_offset: int = 0) -> VerifyResult:
    """Compare Lava's spikes with ours for every layer of the netx file at ``path``.

    ``x`` is ``(samples, *input_shape, T)`` or ``(*input_shape, T)``, in C, H, W order or
    lava-dl's X, Y, C order (``layout``, see :func:`to_chw`); without it the net is
    driven by seeded random input (see :func:`random_input`). ``reset_interval`` and
    ``reset_offset`` reset the LIF states periodically on both sides, as netx does (see
    :func:`neuroprune.snn.fixed.reset_phases`).
    """
    from converters import netx
    from neuroprune.snn.fixed import run_fixed

    path = Path(path)
    network = network or netx.read(path)
    _check_netx_builds(network)
    if x is None:
        x = random_input(network, steps, samples, seed)
    x = to_chw(np.asarray(x), network.input_shape, layout)
    if x.dtype == bool:
        x = x.astype(np.int64)
    if not np.array_equal(x, np.round(x)):
        raise ShapeError("input must hold integers (spikes, or input mantissas for an input neuron layer)")
    ours = run_fixed(network, x.astype(np.int64), reset_interval=reset_interval, reset_offset=reset_offset).spikes
    # Lava builds no host-side readout (average)
    return _compare(path, network.chip_part(), x, ours, reset_interval, reset_offset)


def _check_netx_builds(network: Network) -> None:
    """Refuse, in one line naming the layer, what neither lava-dl's netx nor
    :mod:`converters.lava_build` builds in Lava (see ``lava_build.check_rf``)."""
    from converters.lava_build import check_rf

    check_rf(network)


def _compare(path: Path, network: Network, x: np.ndarray, ours: dict[int, Any],
             reset_interval: int | None = None, reset_offset: int = 0) -> VerifyResult:
    """Run every sample of ``x`` in Lava from ``path`` and count agreement with ``ours``."""
    totals: dict[int, list[int]] = {}
    first: dict[int, tuple[int, ...] | None] = {}
    counts: dict[int, np.ndarray] = {}
    for sample in range(x.shape[0]):
        lava = run_lava(path, network, x[sample], reset_interval, reset_offset)
        for index, lava_spikes in lava.items():
            mine = ours[index][sample].numpy()
            equal = lava_spikes == mine
            entry = totals.setdefault(index, [0, 0, 0, 0])
            entry[0] += equal.size
            entry[1] += int(equal.sum())
            entry[2] += int(np.count_nonzero(lava_spikes))
            entry[3] += int(np.count_nonzero(mine))
            sent = (lava_spikes != 0).reshape(-1, lava_spikes.shape[-1])
            counts[index] = counts.get(index, 0) + sent.sum(axis=0)
            if first.get(index) is None and not equal.all():
                where = np.argwhere(~equal)
                # earliest time step first
                where = where[np.argsort(where[:, -1], kind="stable")]
                first[index] = (sample, *(int(v) for v in where[0]))
    layers = [
        LayerMatch(index=i, kind=network[i].kind, shape=network.shapes[i], total=v[0], matched=v[1],
                   lava_spikes=v[2], our_spikes=v[3], first_mismatch=first.get(i), graded=_graded(network, i))
        for i, v in sorted(totals.items())
    ]
    return VerifyResult(layers=layers, steps=int(x.shape[-1]), samples=int(x.shape[0]), lava_counts=counts)
