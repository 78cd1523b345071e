"""What NIR export (:mod:`converters.nir_write`) and import (:mod:`converters.nir_read`) share:
the ``nir`` package loader and the prefix of our node metadata keys.
"""

from __future__ import annotations

from typing import Any

from neuroprune.errors import FormatError

_META = "neuroprune"  # prefix of our metadata keys
Shape = tuple[int, ...]


def _nir() -> Any:
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dev dependency
        raise FormatError("NIR support needs the 'nir' package: pip install nir") from None
    return nir
