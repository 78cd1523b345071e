"""Channel dependency graph of a network, on networkx.

When output channel ``c`` of a layer goes, other tensors must shrink with it: the
layer's own weight rows, bias, delays and neurons; the next synaptic layer's input
channels (conv, transposed conv) or input columns (dense, through a flatten: a block of
``H*W`` consecutive columns per channel); through channel-wise layers (pool, unpool,
depthwise conv or transposed conv), the same channel further down; and through a concat,
the channel at its source's offset in the join (its consumer loses that input channel;
a layer read both directly and by a concat loses it on both paths). :func:`cut_plan`
computes these couplings (numpy only, no protection: ``hw_models``' fixes use it too);
the graph adds which layers may lose channels, so that every pruning method shrinks
models the same way.

Nodes are IR layer indices with ``kind`` and ``shape``; an edge ``k -> j`` means layer
``j`` consumes the channels of layer ``k``, with ``block`` (inputs per channel: 1 for
conv, ``H*W`` through a flatten) and ``passthrough`` (``j`` keeps the channel count,
so the removal continues past it).

Protected layers never shrink: the input and the network output always, and any layer
the caller names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from neuroprune.errors import PruneError
from neuroprune.ir import ConcatLayer, Network

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = ["Coupling", "PruneGroup", "DependencyGraph", "cut_plan"]


@dataclass(frozen=True)
class Coupling:
    """One tensor axis that loses entries when channels of the group's root go.

    ``role`` is ``"out"`` (rows of the weight, bias, delays and neurons of ``layer``) or
    ``"in"`` (the input axis of ``layer``'s weight); ``indices`` are the entries kept.
    """

    layer: int
    role: str
    indices: np.ndarray


@dataclass(frozen=True)
class PruneGroup:
    """Everything that shrinks when ``root`` keeps only ``keep`` of its channels."""

    root: int
    keep: np.ndarray
    couplings: tuple[Coupling, ...] = field(default_factory=tuple)

    def layers(self) -> list[int]:
        return sorted({c.layer for c in self.couplings})


class CutBlocked(PruneError):
    """A layer's channels cannot be cut: ``reason`` says what holds them (e.g. a grouped conv reads them)."""

    def __init__(self, root: int, kind: str, reason: str) -> None:
        super().__init__(f"layer {root} ({kind}) is {reason} and cannot lose channels")
        self.root, self.reason = root, reason


def _blocked(network: Network, index: int) -> str | None:
    """Why layer ``index`` cannot follow a cut of its input channels (``None``: it can)."""
    layer = network[index]
    if layer.on_host:
        return f"read by the host-side {layer.kind} layer {index}, which averages fixed groups of its neurons"
    groups = getattr(layer, "groups", 1)
    if layer.synaptic and groups > 1 and not layer.channel_wise:
        return f"feeding grouped {layer.kind} layer {index} (groups={groups})"
    return None


def cut_plan(network: Network, keep: Mapping[int, np.ndarray]) -> list[Coupling]:
    """Every tensor axis that loses entries when each layer ``i`` of ``keep`` keeps only
    its output channels ``keep[i]`` (sorted, unique indices), in layer order.

    The cuts flow forward through the network once: a root's rows go (role ``"out"``); a
    flatten turns each kept channel into its block of ``H*W`` neurons; a channel-wise
    layer (pool, unpool, depthwise conv or transposed conv) keeps the same channels
    (``"out"``) and passes them on; a concat keeps, for each source, the kept channels at
    that source's offset in the join (all of an uncut source's); any other synaptic layer
    loses the matching input entries (``"in"``) and stops the flow. No protection: the
    input and output layers are cut if named (:class:`DependencyGraph` guards them).
    Raises :class:`CutBlocked` when a grouped layer or a host-side readout reads a cut.
    """
    return _propagate(network, keep)[0]


def _propagate(network: Network, keep: Mapping[int, np.ndarray]) -> tuple[list[Coupling], dict[int, np.ndarray]]:
    """:func:`cut_plan`'s couplings, and the output entries kept by every layer a cut reaches."""
    kept: dict[int, np.ndarray] = {}  # output entries kept, per layer a cut reaches
    origin: dict[int, int] = {}  # the root whose cut reached the layer (for errors)
    couplings: list[Coupling] = []
    for index, layer in enumerate(network.layers):
        if isinstance(layer, ConcatLayer):
            sources = network.sources_of(index)
            reached = [source for source in sources if source in kept]
            if reached:
                parts, offset = [], 0
                for source in sources:
                    channels = int(network.shapes[source][0])
                    parts.append(offset + kept.get(source, np.arange(channels)))
                    offset += channels
                kept[index], origin[index] = np.concatenate(parts), origin[reached[0]]
            continue
        root = keep.get(index)
        incoming = kept.get(index - 1) if index else None
        if incoming is not None:
            reason = _blocked(network, index)
            if reason is not None:
                raise CutBlocked(origin[index - 1], network[origin[index - 1]].kind, reason)
            if layer.passthrough:  # flatten: channel c becomes neurons c*block .. c*block + block - 1
                shape = network.shapes[index - 1]
                block = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                kept[index] = (incoming[:, None] * block + np.arange(block)[None, :]).reshape(-1)
                origin[index] = origin[index - 1]
                continue
            if layer.channel_wise:
                if root is not None:
                    raise PruneError(f"layer {index} ({layer.kind}) is channel-wise: it follows the channels of "
                                     f"layer {origin[index - 1]}, cut there")
                couplings.append(Coupling(index, "out", incoming))
                kept[index], origin[index] = incoming, origin[index - 1]
                continue
            couplings.append(Coupling(index, "in", incoming))
        if root is not None:
            if layer.channel_wise or not layer.synaptic:
                what = "channel-wise: it follows its producer's channels" if layer.channel_wise else \
                    "not a layer with synapses"
                raise PruneError(f"layer {index} ({layer.kind}) is {what}; cut the layer that feeds it")
            root = np.asarray(root, dtype=np.int64)
            couplings.append(Coupling(index, "out", root))
            kept[index], origin[index] = root, index
    return couplings, kept


class DependencyGraph:
    """Which tensors shrink together when output channels of a layer are removed.

    Parameters
    ----------
    network : the IR network (only its structure and shapes are used).
    protected : extra layer indices that must keep all their channels.
    """

    def __init__(self, network: Network, protected: Iterable[int] = ()) -> None:
        self.network = network
        self.graph: nx.DiGraph = network.graph
        output = max(network.synaptic_indices(), default=len(network) - 1)
        self.protected = {0, output, *protected}
        self._reasons: dict[int, str] = {0: "the network input", output: "the network output"}
        for index in network.synaptic_indices():
            for source, block in self._feeders(index):
                self.graph.add_edge(source, index, block=block, passthrough=network[index].channel_wise)
        self._prunable: list[int] = []
        for index in network.synaptic_indices():
            if index in self.protected or network[index].channel_wise:
                continue
            try:
                couplings, kept = _propagate(network, {index: np.arange(self.channels(index))})
            except CutBlocked as err:
                self.protected.add(index)
                self._reasons[index] = err.reason
                continue
            if len(network) - 1 in kept:  # e.g. a source of a concat that ends the network
                self.protected.add(index)
                self._reasons[index] = "a source of the network output"
                continue
            # its cut must reach a layer that mixes channels, and no protected layer may lose outputs
            if any(c.role == "in" for c in couplings) and not any(
                    c.role == "out" and c.layer != index and c.layer in self.protected for c in couplings):
                self._prunable.append(index)
        for index in self.protected:
            self._reasons.setdefault(index, "protected by the caller")

    # -- structure ---------------------------------------------------------------------
    def _feeders(self, index: int) -> list[tuple[int, int]]:
        """(layer whose spikes reach layer ``index``, inputs per channel of it), through
        flatten (a block of ``H*W`` inputs per channel) and concat (each source's channels)."""
        network = self.network
        found: list[tuple[int, int]] = []

        def walk(source: int, block: int) -> None:
            layer = network[source]
            if layer.passthrough:
                shape = network.shapes[source - 1]
                walk(source - 1, block * (int(np.prod(shape[1:])) if len(shape) > 1 else 1))
            elif isinstance(layer, ConcatLayer):
                for joined in network.sources_of(source):
                    walk(joined, block)
            else:
                found.append((source, block))

        for source in network.sources_of(index):
            walk(source, 1)
        return found

    def channels(self, index: int) -> int:
        """Output channels (conv, pool) or neurons (dense) of layer ``index``."""
        return int(self.network.shapes[index][0])

    def prunable(self) -> list[int]:
        """Layers whose output channels can be removed (synaptic, not protected, not a
        channel-wise pass-through layer, which follows its producer)."""
        return [index for index in self._prunable if index not in self.protected]

    # -- groups ------------------------------------------------------------------------
    def check(self, index: int, keep_count: int) -> None:
        """Raise :class:`PruneError` if layer ``index`` may not keep ``keep_count`` channels."""
        if not 0 <= index < len(self.network):
            raise PruneError(f"layer {index} does not exist (the network has {len(self.network)} layers)")
        layer = self.network[index]
        if index in self.protected:
            raise PruneError(f"layer {index} ({layer.kind}) is {self._reasons[index]} and cannot lose channels")
        if index not in self.prunable():
            raise PruneError(f"layer {index} ({layer.kind}) has no prunable output channels")
        total = self.channels(index)
        if keep_count < 1:
            raise PruneError(
                f"layer {index} ({layer.kind}): keeping 0 of {total} output channels would disconnect "
                "the network; keep at least 1"
            )
        if keep_count > total:
            raise PruneError(f"layer {index} ({layer.kind}): cannot keep {keep_count} of {total} channels")

    def group(self, index: int, keep: Iterable[int] | np.ndarray) -> PruneGroup:
        """The pruning group of layer ``index`` keeping channels ``keep`` (sorted, unique)."""
        keep = np.unique(np.asarray(list(keep) if not isinstance(keep, np.ndarray) else keep, dtype=np.int64))
        self.check(index, len(keep))
        if keep.min() < 0 or keep.max() >= self.channels(index):
            raise PruneError(f"layer {index}: channel indices must be in [0, {self.channels(index)})")
        couplings = cut_plan(self.network, {index: keep})
        return PruneGroup(root=index, keep=keep, couplings=tuple(couplings))
