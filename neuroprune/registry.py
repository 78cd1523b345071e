"""Per-kind registries: one lookup that names the supported kinds when a kind is missing.

Every behaviour that differs by layer kind (netx read/write, NIR and ONNX export, cost,
fixed-point step, pruning, ...) lives in a ``dict`` keyed by ``layer.kind``; adding a
kind means adding one entry per registry (``tests/test_registries.py`` lists them all).
"""

from __future__ import annotations

from typing import Mapping, TypeVar

from neuroprune.errors import UnsupportedLayerError

__all__ = ["lookup"]

T = TypeVar("T")


def lookup(registry: Mapping[str, T], kind: str, what: str, where: str = "") -> T:
    """``registry[kind]``, or :class:`UnsupportedLayerError` naming ``what`` is missing
    for ``kind`` (at ``where``, e.g. ``"layer 3"``) and listing the supported kinds."""
    try:
        return registry[kind]
    except KeyError:
        prefix = f"{where}: " if where else ""
        raise UnsupportedLayerError(
            f"{prefix}layer type {kind!r} has no {what}; supported: {', '.join(registry)}"
        ) from None
