"""Typed option values for argparse: a bad value is refused while the command line is
parsed (exit 2, naming the option), before any file is read.

Each converter takes the option's text and returns the value or raises
``argparse.ArgumentTypeError`` with what is wrong and what is allowed; argparse adds
the option name: ``argument --rate: 2.0 is outside [0, 1] ...``.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["finite_float", "positive_float", "nonnegative_float", "probability", "fraction", "open_fraction",
           "percentile", "positive_int", "nonnegative_int", "int_in"]


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no nan, inf)."""
    return _number(text, float)


def _float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
              what: str = "") -> Callable[[str], float]:
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{left}{low:g}, {high:g}{right}"

    def convert(text: str) -> float:
        value = _number(text, float)
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"{value:g} is outside {interval}{what}")
        return value

    convert.__name__ = f"number in {interval}"
    return convert


positive_float = _float_in(0.0, math.inf, low_open=True, high_open=True)
nonnegative_float = _float_in(0.0, math.inf, high_open=True)
probability = _float_in(0.0, 1.0, what=" (a spike rate or probability)")
fraction = _float_in(0.0, 1.0, high_open=True, what=" (a fraction)")
open_fraction = _float_in(0.0, 1.0, low_open=True, what=" (a fraction of the dense network)")
percentile = _float_in(0.0, 100.0, low_open=True, what=" (a percentile)")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (no upper limit without ``high``)."""
    interval = f"[{low}, {'inf' if high is None else high}]"

    def convert(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {interval}")
        return value

    convert.__name__ = f"integer in {interval}"
    return convert


positive_int = int_in(1)
nonnegative_int = int_in(0)
