"""Merge a NIR synapse that no neuron follows into the synapse it feeds.

The chip has no layer without neurons, but graphs from other tools often have one: sinabs
and snntorch write ``Conv -> neuron -> SumPool2d/AvgPool2d -> Conv`` with no neuron after
the pooling. Two linear maps in a row are one linear map, so :func:`merge_into_next`
composes them before quantization:

* into one ``Conv2d`` when the second synapse is a convolution without padding or
  dilation (and the first has no dilation): kernel ``K = Wb * Wa`` placed at
  ``i * stride_a``, stride ``stride_a * stride_b``, the first map's padding; the groups of
  either map are kept when the composed kernel is block-diagonal in them;
* into one ``Affine`` over the flattened input when the second synapse is dense (after
  an optional ``Flatten``): ``W = Wb @ M_a``, ``b = b_b + Wb @ b_a`` with ``M_a`` the first
  map as a matrix.

Anything else (a neuron-less synapse last in the graph, or before a padded convolution) is
refused with :class:`UnsupportedLayerError` before anything is written. The merged
weights are floats (e.g. an average pool's 1/k^2 taps times the conv weights) and are
quantized by the following neuron like any other synapse; integer weights stay integers.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from converters.nir_common import _nir
from converters.nir_read import _per_channel, _raw_synapse, _shaped, _Stage
from neuroprune.errors import UnsupportedLayerError

__all__ = ["merge_into_next", "MAX_MATRIX_ENTRIES"]

MAX_MATRIX_ENTRIES = 50_000_000  # a composed dense map larger than this (float64, 400 MB) is refused


def _full(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv kernel ``(out, in/groups, kh, kw)`` as a dense ``(out, in, kh, kw)`` one."""
    out, per_group, kh, kw = weight.shape
    full = np.zeros((out, per_group * groups, kh, kw))
    rows = out // groups
    for g in range(groups):
        full[g * rows:(g + 1) * rows, g * per_group:(g + 1) * per_group] = weight[g * rows:(g + 1) * rows]
    return full


def _grouped(full: np.ndarray, candidates: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The largest of ``candidates`` in which ``full`` is block-diagonal, and its grouped kernel."""
    out, inp = full.shape[:2]
    for groups in sorted(set(candidates), reverse=True):
        if groups < 1 or out % groups or inp % groups:
            continue
        rows, cols = out // groups, inp // groups
        grouped = np.stack([full[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] for g in range(groups)])
        grouped = grouped.reshape(out, cols, *full.shape[2:])
        if groups == 1 or np.array_equal(_full(grouped, groups), full):
            return grouped, groups
    return full, 1  # pragma: no cover - groups=1 always fits


def _compose_conv(wa: np.ndarray, ba: np.ndarray | None, ga: dict[str, Any], wb: np.ndarray,
                  bb: np.ndarray | None, gb: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Kernel, bias and geometry of ``conv_b(conv_a(x))`` (``conv_b`` unpadded, no dilation)."""
    full_a, full_b = _full(wa, int(ga["groups"])), _full(wb, int(gb["groups"]))
    (sah, saw), (kah, kaw) = ga["stride"], full_a.shape[2:]
    kbh, kbw = full_b.shape[2:]
    kernel = np.zeros((full_b.shape[0], full_a.shape[1], (kbh - 1) * sah + kah, (kbw - 1) * saw + kaw))
    for i in range(kbh):
        for j in range(kbw):
            kernel[:, :, i * sah:i * sah + kah, j * saw:j * saw + kaw] += np.einsum(
                "om,mchw->ochw", full_b[:, :, i, j], full_a)
    bias = np.zeros(full_b.shape[0]) if bb is None else np.asarray(bb, dtype=np.float64).reshape(-1).copy()
    if ba is not None:
        bias = bias + np.einsum("omhw,m->o", full_b, np.asarray(ba, dtype=np.float64).reshape(-1))
    kernel, groups = _grouped(kernel, (int(gb["groups"]), int(ga["groups"]), 1))
    geometry = {"stride": (sah * gb["stride"][0], saw * gb["stride"][1]), "padding": tuple(ga["padding"]),
                "dilation": (1, 1), "groups": groups}
    return kernel, bias, geometry


def _conv_matrix(weight: np.ndarray, geometry: dict[str, Any], in_shape: tuple[int, ...],
                 where: str) -> np.ndarray:
    """The convolution as a ``(n_out, n_in)`` matrix over flattened (C, H, W) tensors."""
    import torch

    n_in = int(np.prod(in_shape))
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    out = torch.nn.functional.conv2d(basis, torch.from_numpy(weight), stride=geometry["stride"],
                                     padding=geometry["padding"], dilation=geometry.get("dilation", (1, 1)),
                                     groups=int(geometry["groups"]))
    if out[0].numel() * n_in > MAX_MATRIX_ENTRIES:  # pragma: no cover - large graphs only
        raise UnsupportedLayerError(f"{where}: merging it into the next dense layer needs a "
                                    f"{out[0].numel()}x{n_in} matrix (limit {MAX_MATRIX_ENTRIES} entries)")
    return out.reshape(n_in, -1).T.numpy()


def _scaled(stage: _Stage, weight: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...],
            where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Fold the stage's ``Scale`` node (if any) into its weight and bias."""
    if stage.scale is None:
        return weight, bias
    scale = _shaped(stage.scale.scale, out_shape, "Scale", where)
    rows = weight.shape[0]
    per_row = _per_channel(scale, rows, "Scale", where) if len(out_shape) > 1 else scale.reshape(-1)
    weight = weight * per_row.reshape((rows,) + (1,) * (weight.ndim - 1))
    return weight, None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1) * per_row


def merge_into_next(stages: list[_Stage], index: int, in_shape: tuple[int, ...]) -> list[_Stage]:
    """``stages`` with ``stages[index]`` (a synapse without neuron) merged into the synapse it feeds.

    Raises
    ------
    UnsupportedLayerError when no synapse follows, a Delay sits on either synapse, or the
    composition has no conv or dense form (the next convolution is padded or dilated).
    """
    nir = _nir()
    first = stages[index]
    kind = type(first.synapse).__name__
    where = f"NIR node {first.name!r} ({kind})"
    after = index + 1
    while after < len(stages) and stages[after].kind == "flatten":
        after += 1
    flattens = stages[index + 1:after]
    if after == len(stages) or stages[after].synapse is None:
        raise UnsupportedLayerError(
            f"{where} has no neuron node after it and no synapse follows to merge it into; the chip has no "
            "layer without neurons: add a neuron node (IF, LIF, CubaLIF) after it"
        )
    second = stages[after]
    if first.pre_delay is not None or first.post_delay is not None or second.pre_delay is not None:
        raise UnsupportedLayerError(f"{where} has no neuron node after it and a Delay between it and "
                                    f"{second.name!r}; it cannot be merged into the next synapse")
    wa, ba, ga, mid_shape = _raw_synapse(first, in_shape)
    wa, ba = _scaled(first, wa, ba, mid_shape, where)
    second_in = (int(np.prod(mid_shape)),) if flattens else mid_shape
    wb, bb, gb, _ = _raw_synapse(second, second_in)
    if second.kind == "dense":
        matrix = _conv_matrix(wa, ga, in_shape, where) if wa.ndim == 4 else wa
        bias = np.zeros(wb.shape[0]) if bb is None else bb
        if ba is not None:
            bias = bias + wb @ np.broadcast_to(
                np.asarray(ba).reshape((-1,) + (1,) * (len(mid_shape) - 1)), mid_shape).reshape(-1)
        node = nir.Affine(weight=wb @ matrix, bias=bias)
        merged = _Stage("dense", second.name, synapse=node, neuron=second.neuron, scale=second.scale,
                        post_delay=second.post_delay, meta=second.meta)
        new = ([flattens[0]] if len(in_shape) > 1 else []) + [merged]
        form = "one dense layer over the flattened input"
    elif not flattens and wa.ndim == 4 and tuple(gb["padding"]) == (0, 0) \
            and tuple(gb.get("dilation", (1, 1))) == (1, 1) and tuple(ga.get("dilation", (1, 1))) == (1, 1):
        kernel, bias, geometry = _compose_conv(wa, ba, ga, wb, bb, gb)
        node = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=kernel, bias=bias, **geometry)
        merged = _Stage("conv", second.name, synapse=node, neuron=second.neuron, scale=second.scale,
                        meta=second.meta)
        new = [merged]
        form = f"one convolution (kernel {kernel.shape[2]}x{kernel.shape[3]}, stride {geometry['stride']})"
    else:
        raise UnsupportedLayerError(
            f"{where} has no neuron node after it and feeds {second.name!r} "
            f"({type(second.synapse).__name__}, padding {gb.get('padding')}, dilation {gb.get('dilation')}); "
            "only an unpadded, undilated Conv2d or an Affine/Linear can absorb it: add a neuron node after it"
        )
    warnings.warn(f"{where} has no neuron node after it: merged with {second.name!r} into {form}",
                  stacklevel=3)
    return stages[:index] + new + stages[after + 1:]
