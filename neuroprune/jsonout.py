"""JSON output that is always valid JSON: no ``NaN`` or ``Infinity`` tokens.

Python's ``json`` writes non-finite floats as ``NaN``/``Infinity``, which strict
parsers (browsers, ``jq``, most languages) refuse. :func:`finite_json` writes such a
value as ``null`` and names it under ``"non_finite"`` in the top-level object, so a
script sees that a number could not be computed instead of choking on the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["finite_json", "NON_FINITE_KEY"]

NON_FINITE_KEY = "non_finite"


def _clean(value: Any, where: str, found: list[str]) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{where or '(top)'} = {value}")
        return None
    if isinstance(value, dict):
        return {key: _clean(item, f"{where}.{key}" if where else str(key), found) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item, f"{where}[{index}]", found) for index, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist(), where, found)
    return value


def finite_json(data: Any, **dumps_kwargs: Any) -> str:
    """``json.dumps(data)`` with every non-finite float written as ``null``; a top-level
    dict gets ``"non_finite": ["key.path = nan", ...]`` listing them (only when any)."""
    found: list[str] = []
    cleaned = _clean(data, "", found)
    if found and isinstance(cleaned, dict):
        cleaned[NON_FINITE_KEY] = found
    return json.dumps(cleaned, allow_nan=False, **dumps_kwargs)
