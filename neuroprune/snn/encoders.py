"""Input encoders: static samples in [0, 1] → input sequences over time steps.

Layout follows lava-dl slayer: batch first, time last. A batch ``x`` of shape
``(N, C, H, W)`` or ``(N, F)`` becomes ``(N, C, H, W, T)`` or ``(N, F, T)`` (float32, on
the device of ``x``).

- :func:`direct` repeats the analog value every step ("direct current"); the model's
  input neuron layer turns it into spikes.
- :func:`rate` draws Bernoulli spikes with probability ``p = x`` per step.
- :func:`delta` is send-on-delta coding of a linear ramp-in of the image (see there).

Every encoder has the call shape ``encoder(x, steps, generator=None) -> Tensor``;
:func:`get_encoder` looks one up by name.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Protocol

import numpy as np
import torch

from neuroprune.errors import NeuropruneError

__all__ = [
    "Encoder",
    "direct",
    "rate",
    "delta",
    "send_on_delta",
    "get_encoder",
    "ENCODERS",
]


class Encoder(Protocol):
    """Callable turning ``(N, ...)`` samples into ``(N, ..., T)`` input sequences."""

    def __call__(
        self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.float()


def _check_steps(steps: int) -> int:
    if int(steps) != steps or steps < 1:
        raise NeuropruneError(f"encoder: steps (time steps T) must be an integer >= 1, got {steps}")
    return int(steps)


def direct(
    x: torch.Tensor | np.ndarray, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Repeat the analog value at every step: ``out[..., t] = x`` for ``t < steps``.

    ``generator`` is ignored (the encoding is deterministic).
    """
    steps = _check_steps(steps)
    x = _as_tensor(x)
    return x.unsqueeze(-1).expand(*x.shape, steps).contiguous()


def rate(
    x: torch.Tensor | np.ndarray, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Bernoulli spikes: ``out[..., t] = 1`` with probability ``clip(x, 0, 1)``, i.i.d. over t.

    Draws ``u = torch.rand((*x.shape, steps), generator=generator)`` and returns
    ``(u < x[..., None])`` as float, so the result is deterministic under a seeded
    ``generator`` (which is advanced by one draw of that size). The expected spike count
    per step equals ``x``; ``x = 0`` never spikes, ``x = 1`` always does.
    """
    steps = _check_steps(steps)
    x = _as_tensor(x)
    if generator is not None and generator.device != x.device:
        u = torch.rand((*x.shape, steps), generator=generator, device=generator.device)
        u = u.to(x.device)
    else:
        u = torch.rand((*x.shape, steps), generator=generator, device=x.device)
    return (u < x.clamp(0.0, 1.0).unsqueeze(-1)).float()


def send_on_delta(signal: torch.Tensor, threshold: float) -> torch.Tensor:
    """Send-on-delta (ON events) on a time-varying ``signal`` of shape ``(..., T)``.

    A reference ``r`` starts at 0. At step ``t`` a spike is sent when
    ``signal[..., t] - r > threshold``, and then ``r = signal[..., t]``. Decreases are
    not sent (one polarity: inputs here are non-negative ramps).
    """
    if not threshold > 0:
        raise NeuropruneError(f"delta encoder: threshold must be > 0, got {threshold}")
    reference = torch.zeros_like(signal[..., 0])
    out = torch.zeros_like(signal)
    for t in range(signal.shape[-1]):
        fire = (signal[..., t] - reference) > threshold
        out[..., t] = fire.to(signal.dtype)
        reference = torch.where(fire, signal[..., t], reference)
    return out


def delta(
    x: torch.Tensor | np.ndarray,
    steps: int,
    generator: torch.Generator | None = None,
    threshold: float = 0.1,
) -> torch.Tensor:
    """Send-on-delta coding of a static sample ramped in linearly over ``steps``.

    A static image has no change over time, so we define its signal as a linear
    ramp from 0 to ``x``: ``s[..., t] = x * (t + 1) / steps`` for ``t = 0..steps-1``,
    and apply :func:`send_on_delta` with ``threshold`` (same units as ``x``, i.e. a
    fraction of full scale). A pixel of value ``x`` sends about ``x / threshold``
    spikes (at most ``steps``); pixels with ``x <= threshold`` send none.
    ``generator`` is ignored.
    """
    steps = _check_steps(steps)
    x = _as_tensor(x)
    ramp = torch.arange(1, steps + 1, dtype=x.dtype, device=x.device) / steps
    signal = x.unsqueeze(-1) * ramp
    return send_on_delta(signal, threshold)


ENCODERS: dict[str, Callable[..., torch.Tensor]] = {
    "direct": direct,
    "rate": rate,
    "delta": delta,
}


def get_encoder(name: str, **options: float) -> Encoder:
    """The encoder called ``name`` (``direct``, ``rate``, ``delta``), options bound.

    ``options`` are keyword arguments of that encoder, e.g.
    ``get_encoder("delta", threshold=0.05)``.
    """
    try:
        fn = ENCODERS[name]
    except KeyError:
        raise NeuropruneError(
            f"unknown encoder {name!r}; choose one of: {', '.join(sorted(ENCODERS))}"
        ) from None
    if options:
        try:
            inspect.signature(fn).bind(None, 1, None, **options)
        except TypeError:
            raise NeuropruneError(
                f"encoder {name!r} does not take option(s) {', '.join(sorted(options))}"
            ) from None
        return functools.partial(fn, **options)
    return fn
