"""Typed option values for argparse, and options declared once on config dataclasses.

A bad value is refused while the command line is parsed (exit 2, naming the option),
before any file is read.

Each converter takes the option's text and returns the value or raises
``argparse.ArgumentTypeError`` with what is wrong and what is allowed; argparse adds
the option name: ``argument --rate: 2.0 is outside [0, 1] ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable

__all__ = ["finite_float", "positive_float", "nonnegative_float", "probability", "fraction", "open_fraction",
           "percentile", "positive_int", "nonnegative_int", "int_in", "Option", "option", "add_config_options",
           "config_from_args"]


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


# ------------------------------------------------------------ options declared on configs
@dataclasses.dataclass(frozen=True)
class Option:
    """How one config field appears on the command line."""

    flag: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def option(flag: str, help: str, type: Callable[[str], Any] | None = None, *,
           choices: tuple[str, ...] | None = None, metavar: str | None = None) -> dict[str, Option]:
    """Field metadata that makes a config field a command-line option::

        episodes: int = field(default=60, metadata=option("--episodes", "search episodes", positive_int))

    The field's default is the option's default (shown in ``--help``); a bool field is
    a flag. Several configs may declare the same flag (e.g. ``--criterion``): the first
    declaration's help is shown and every config reads the value.
    """
    return {"cli": Option(flag, help, type, choices, metavar)}


def _options(config_class: type) -> list[tuple[dataclasses.Field, Option]]:
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(config_class) if "cli" in f.metadata]


def add_config_options(group: Any, config_class: type, seen: set[str]) -> None:
    """Add ``config_class``'s declared options to an argparse parser or group, skipping
    flags in ``seen`` (and adding the new ones to it). Defaults stay ``None`` on the
    command line so that :func:`config_from_args` keeps the config's own default."""
    for f, opt in _options(config_class):
        if opt.flag in seen:
            continue
        seen.add(opt.flag)
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.type in (bool, "bool"):
            group.add_argument(opt.flag, dest=opt.dest, action="store_true", default=None, help=opt.help)
            continue
        text = opt.help if default is None else f"{opt.help} (default {default})"
        metavar = opt.metavar
        if metavar is None and opt.choices is None:
            metavar = "N" if str(f.type).startswith("int") else "X" if str(f.type).startswith("float") else "NAME"
        group.add_argument(opt.flag, dest=opt.dest, type=opt.type, choices=opt.choices, metavar=metavar,
                           default=None, help=text.replace("%", "%%"))


def config_from_args(config_class: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """``config_class`` built from the options the user gave (the others keep the
    config's defaults), plus ``fixed`` field values."""
    values = {f.name: getattr(args, opt.dest) for f, opt in _options(config_class)
              if getattr(args, opt.dest, None) is not None}
    return config_class(**values, **fixed)
