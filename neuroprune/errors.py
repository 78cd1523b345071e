"""Exceptions of neuroprune.

Every message names the thing at fault, the value found and what to do about it, so
the CLI can print it as one line and exit non-zero.
"""

from __future__ import annotations

__all__ = [
    "NeuropruneError",
    "ShapeError",
    "FormatError",
    "UnsupportedLayerError",
    "ChipFileError",
    "FitError",
    "PruneError",
    "CheckpointError",
    "DataError",
    "OutputError",
]


class NeuropruneError(Exception):
    """Base class of every error neuroprune raises on purpose."""


class ShapeError(NeuropruneError, ValueError):
    """A layer's tensors do not agree with the shape flowing into it."""


class FormatError(NeuropruneError, ValueError):
    """A file is missing, unreadable, corrupt or not the format it claims to be."""


class UnsupportedLayerError(NeuropruneError, ValueError):
    """A layer type cannot be represented by the target (file format, chip, model)."""


class ChipFileError(NeuropruneError, ValueError):
    """A chip description has a missing, unknown or out-of-range key."""


class FitError(NeuropruneError):
    """A network violates one or more hardware limits (see ``FitReport``)."""


class PruneError(NeuropruneError, ValueError):
    """A pruning request cannot be met (empty layer, protected layer, bad target)."""


class CheckpointError(NeuropruneError, ValueError):
    """A model or search checkpoint is missing, corrupt or of another kind."""


class DataError(NeuropruneError, ValueError):
    """A data set is missing or its arrays have the wrong shape or type."""


class OutputError(NeuropruneError, ValueError):
    """An output path cannot be written, or writing it would destroy an input."""
