"""The float ANN read from ONNX: :class:`AnnLayer`, :class:`Ann` and its float32 forward pass.

:mod:`converters.onnx_read` builds an :class:`Ann` from an ONNX graph and
:mod:`converters.ann_to_snn` converts it into a chip network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from neuroprune.errors import ShapeError
from neuroprune.registry import lookup

__all__ = ["AnnLayer", "Ann"]


@dataclass(frozen=True, eq=False)
class AnnLayer:
    """One float layer of an imported ANN.

    ``kind`` is ``dense`` (weight ``(out, in)``), ``conv`` (weight ``(out, in/groups, kH,
    kW)``, torch semantics), ``pool`` (per-channel sum over ``kernel`` times ``tap``, i.e.
    average pooling with ``tap = 1 / (kH kW)``) or ``flatten``. ``relu`` applies a ReLU
    to the output. ``nodes`` names the ONNX nodes merged into the layer.
    """

    kind: str
    name: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    tap: float = 1.0
    relu: bool = False
    nodes: tuple[str, ...] = ()



@dataclass(frozen=True, eq=False)
class Ann:
    """A feed-forward float ANN: ``input_shape`` (no batch axis) and a chain of layers.

    ``output`` is ``"logits"``, ``"softmax"`` or ``"log_softmax"`` (a final softmax of the
    ONNX graph, kept so outputs compare with onnxruntime).
    """

    input_shape: tuple[int, ...]
    layers: tuple[AnnLayer, ...]
    output: str = "logits"
    name: str = "ann"

    def forward(self, x: np.ndarray, all_layers: bool = False) -> Any:
        """Run samples ``x`` (N, *input_shape; other shapes of the same size are reshaped)
        in float32.

        Returns the output ``(N, classes)`` (with the final softmax, if any), or with
        ``all_layers`` the list of every layer's output (before the softmax).
        """
        import torch

        x = _fit_input(np.asarray(x, dtype=np.float32), self.input_shape)
        h = torch.from_numpy(np.ascontiguousarray(x))
        outputs: list[np.ndarray] = []
        with torch.no_grad():
            for layer in self.layers:
                h = lookup(_ANN_FORWARD, layer.kind, "float forward", f"ANN layer {layer.name!r}")(layer, h)
                if layer.relu:
                    h = torch.relu(h)
                outputs.append(h.numpy())
            if all_layers:
                return outputs
            if self.output == "softmax":
                h = torch.softmax(h, dim=1)
            elif self.output == "log_softmax":
                h = torch.log_softmax(h, dim=1)
        return h.numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index (arg-max of the output) per sample."""
        return np.asarray(self.forward(x)).argmax(axis=1)


def _forward_dense(layer: AnnLayer, h: Any) -> Any:
    import torch.nn.functional as F

    return F.linear(h, _tensor(layer.weight), _tensor(layer.bias))


def _forward_conv(layer: AnnLayer, h: Any) -> Any:
    import torch.nn.functional as F

    return F.conv2d(h, _tensor(layer.weight), _tensor(layer.bias), layer.stride, layer.padding, layer.dilation,
                    layer.groups)


def _forward_pool(layer: AnnLayer, h: Any) -> Any:
    import torch
    import torch.nn.functional as F

    channels = h.shape[1]
    taps = torch.full((channels, 1, *layer.kernel), float(layer.tap))
    return F.conv2d(h, taps, None, layer.stride, layer.padding, 1, channels)


def _forward_flatten(layer: AnnLayer, h: Any) -> Any:
    return h.reshape(h.shape[0], -1)


#: the float computation of each ANN layer kind (batch-first torch tensors)
_ANN_FORWARD: dict[str, Callable[[AnnLayer, Any], Any]] = {
    "dense": _forward_dense,
    "conv": _forward_conv,
    "pool": _forward_pool,
    "flatten": _forward_flatten,
}


def _tensor(array: np.ndarray | None) -> Any:
    import torch

    return None if array is None else torch.from_numpy(np.asarray(array, dtype=np.float32))


def _fit_input(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Samples ``(N, ...)`` reshaped to ``(N, *shape)`` when the sizes agree."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape(len(x), *shape)
    raise ShapeError(f"samples of shape {tuple(x.shape[1:])} do not fit the model input {tuple(shape)}")
