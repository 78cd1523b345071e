"""Channel dependency graph of a network, on networkx.

When output channel ``c`` of a layer goes, other tensors must shrink with it: the
layer's own weight rows, bias, delays and neurons; the next synaptic layer's input
channels (conv) or input columns (dense, through a flatten: a block of ``H*W``
consecutive columns per channel); and, through channel-wise layers (pool, depthwise
conv), the same channel further down. The graph records these couplings once so that
every pruning method shrinks models the same way.

Nodes are IR layer indices with ``kind`` and ``shape``; an edge ``k -> j`` means layer
``j`` consumes the channels of layer ``k``, with ``block`` (inputs per channel: 1 for
conv, ``H*W`` through a flatten) and ``passthrough`` (``j`` keeps the channel count,
so the removal continues past it).

Protected layers never shrink: the input and the network output always, and any layer
the caller names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import networkx as nx
import numpy as np

from neuroprune.errors import PruneError
from neuroprune.ir import Network

__all__ = ["Coupling", "PruneGroup", "DependencyGraph"]


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
        self._consumers: dict[int, list[tuple[int, int]]] = {}
        self._reasons: dict[int, str] = {0: "the network input", output: "the network output"}
        for index in network.synaptic_indices():
            self._consumers[index] = self._find_consumers(index)
        for index, layer in enumerate(network.layers):
            if getattr(layer, "groups", 1) > 1 and not layer.channel_wise:
                producer = network.producer_of(index)
                if producer is not None:
                    self.protected.add(producer)
                    self._reasons[producer] = f"feeding grouped conv layer {index} (groups={layer.groups})"
        for index in self.protected:
            self._reasons.setdefault(index, "protected by the caller")

    # -- structure ---------------------------------------------------------------------
    def _find_consumers(self, index: int) -> list[tuple[int, int]]:
        """(consumer layer, inputs per channel) reached from ``index``'s channels."""
        network = self.network
        block = 1
        for j in range(index + 1, len(network)):
            layer = network[j]
            if layer.passthrough:  # flatten: each channel becomes a block of inputs
                shape = network.shapes[j - 1]
                block *= int(np.prod(shape[1:])) if len(shape) > 1 else 1
                continue
            if layer.synaptic:
                self.graph.add_edge(index, j, block=block, passthrough=layer.channel_wise)
                return [(j, block)]
        return []

    def channels(self, index: int) -> int:
        """Output channels (conv, pool) or neurons (dense) of layer ``index``."""
        return int(self.network.shapes[index][0])

    def prunable(self) -> list[int]:
        """Layers whose output channels can be removed (synaptic, not protected, not a
        channel-wise pass-through layer, which follows its producer)."""
        result = []
        for index in self.network.synaptic_indices():
            layer = self.network[index]
            if index in self.protected or layer.channel_wise:
                continue
            if self._consumers.get(index):
                result.append(index)
        return result

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
        couplings = [Coupling(index, "out", keep)]
        current = index
        while True:
            consumers = self._consumers.get(current, [])
            if not consumers:
                break
            consumer, block = consumers[0]
            if not self.graph.edges[current, consumer]["passthrough"]:
                columns = (keep[:, None] * block + np.arange(block)[None, :]).reshape(-1)
                couplings.append(Coupling(consumer, "in", columns))
                break
            # channel-wise layer (pool, depthwise conv): its channel c is our channel c
            couplings.append(Coupling(consumer, "out", keep))
            current = consumer
        return PruneGroup(root=index, keep=keep, couplings=tuple(couplings))
