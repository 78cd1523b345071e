"""ANN -> SNN conversion (:func:`to_snn`, :func:`convert`): data-based threshold balancing.

Rate coding with non-leaky integrate-and-fire neurons (``i_decay = 4096``: no current
memory; ``v_decay = 0``: no leak; reset to 0). A neuron driven by ``z`` threshold units
per step fires about ``z`` spikes per step. With ``p_l`` the ``percentile``-th
percentile (default 99.9, Rueckauer et al. 2017) of layer ``l``'s ReLU activations on
the calibration samples, ``lambda_l = p_l / max_rate`` is the activation that fires every
step, so activations ``a_l`` map to rates ``a_l / lambda_l`` (``max_rate`` = 0.5 by
default: reset to zero throws away the voltage above threshold, which costs most at
high rates; measured on a digits CNN, 0.5 instead of 1 gains 2-4 points). In threshold
units the weights become::

    W~_l = W_l * lambda_{l-1} / lambda_l        b~_l = b_l / lambda_l  (per step)

Loihi has one threshold and one weight scale per layer, so per layer
``v_th_mant = round(254 / max|W~_l|)`` and the weight mantissas are
``2 * round(v_th_mant * W~_l / 2)`` clipped to [-256, 254] -- slayer's even 8-bit grid, so
the result also loads into a slayer model exactly -- and the bias mantissa is
``round(v_th_mant * b~_l)``: the ratios weight / threshold are those of the ANN up to
the 8-bit rounding. A last layer without ReLU (logits) is balanced on its positive part;
the class is the output neuron with the most spikes (:meth:`Conversion.predict`).

Input encoding. The chip receives the input mantissa ``round(64 x)`` every step for an
analog ``x`` in [0, 1] -- the convention of :meth:`neuroprune.snn.model.SNN.chip_input`;
:meth:`Conversion.chip_input` builds these integers. Two encodings
(``ConversionConfig.input_encoding``):

- ``"neuron"`` (default; direct encoding by an input neuron layer, any chip, verifiable
  in Lava): the same IF neuron with threshold ``round(64 / input_rate) - 1``, so ``x = 1``
  spikes at ``input_rate`` (default 0.5; ``lambda_0 = 1 / input_rate``); negative inputs
  never spike. A constant drive into a reset-to-zero neuron fires periodically, at rates
  1/n only, so the input is quantized coarsely (x in (0.69, 1) all give 1/2 or 1/3).
  Dense first layers average this out; small convolution kernels do not.
- ``"graded"`` (Loihi 2 graded spikes): no input neurons; the mantissas enter the first
  layer directly (``lambda_0 = 1 / 64`` per mantissa unit), with the first threshold
  capped so ``sum |w| * 64`` stays within the 24-bit current. netx writes
  binary-message synapses, so Lava runs such a file with binary input: this encoding
  is for graded-spike deployments and the fixed-point model.

Measured on the digits test split (359 samples), T = 64, networks trained in plain
torch (tests/converters/test_onnx.py): MLP 64-100-10 ANN 96.7 %, SNN 95.0 % (neuron
input) / 97.2 % (graded); CNN (conv-BN-ReLU-avgpool-conv-ReLU-linear) ANN 96.1 %, SNN
89.4 % (neuron) / 94.7 % (graded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from converters.ann import Ann, AnnLayer, _fit_input
from converters.onnx_read import check_against_onnxruntime, read_ann
from neuroprune.errors import ShapeError
from neuroprune.ir import (LAYER_TYPES, ConvLayer, DenseLayer, FlattenLayer, InputLayer, Layer, Network, Neuron,
                           PoolLayer)
from neuroprune.loihi_arith import DECAY_UNITY, MAX_ACTIVATION, MAX_BIAS_MANT, threshold_for, to_mantissa
from neuroprune.registry import lookup
from neuroprune.validate import check_finite_array, check_int_range

__all__ = ["ConversionConfig", "Conversion", "to_snn", "convert", "INPUT_SCALE"]

INPUT_SCALE = 64  # input mantissa per step for an analog input of 1.0 (as SNN.chip_input)
INPUT_ENCODINGS = ("neuron", "graded")


@dataclass(frozen=True)
class ConversionConfig:
    """Settings of the rate conversion.

    percentile : activation percentile (in %) that maps to ``max_rate``.
    max_rate : spikes per step of a neuron at the percentile activation (0 < r <= 1);
        below 1 keeps neurons where reset-to-zero loses little of the residual voltage.
    input_rate : spikes per step of an input neuron driven by an analog 1.0 (0 < r <= 1).
    max_calibration_samples : calibration samples used for the percentiles.
    input_encoding : ``"neuron"`` (an input neuron layer turns the input mantissas into
        spikes; any chip, verifiable in Lava) or ``"graded"`` (the mantissas go straight
        into the first layer as graded spikes, Loihi 2; no input rate quantization).
    """

    percentile: float = 99.9
    input_rate: float = 0.5
    max_calibration_samples: int = 1000
    max_rate: float = 0.5
    input_encoding: str = "neuron"

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ShapeError(f"percentile={self.percentile} must be in (0, 100]")
        if not 0 < self.input_rate <= 1:
            raise ShapeError(f"input_rate={self.input_rate} must be in (0, 1] spikes per step")
        if not 0 < self.max_rate <= 1:
            raise ShapeError(f"max_rate={self.max_rate} must be in (0, 1] spikes per step")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ShapeError(f"input_encoding={self.input_encoding!r}; use one of {', '.join(INPUT_ENCODINGS)}")
        if self.max_calibration_samples < 1:
            raise ShapeError("max_calibration_samples must be >= 1")


@dataclass(frozen=True, eq=False)
class Conversion:
    """An ANN converted to an SNN.

    ``network`` is the chip network; ``scales[i]`` the activation ``lambda`` of ANN layer
    ``i`` that maps to one spike per step (``nan`` for flatten layers).
    """

    network: Network
    ann: Ann
    scales: tuple[float, ...]
    config: ConversionConfig

    def chip_input(self, x: np.ndarray, steps: int) -> np.ndarray:
        """Input mantissas ``(N, *input_shape, steps)``: ``round(64 x)`` every step."""
        if steps < 1:
            raise ShapeError(f"steps={steps} must be >= 1")
        x = _fit_input(np.asarray(x, dtype=np.float64), self.network.input_shape)
        mantissa = np.round(x * INPUT_SCALE).astype(np.int64)
        return np.repeat(mantissa[..., None], steps, axis=-1)

    def spike_counts(self, x: np.ndarray, steps: int, batch_size: int = 256) -> np.ndarray:
        """Output spike counts ``(N, classes)`` of the bit-exact fixed-point run."""
        from neuroprune.snn.fixed import run_fixed

        x = np.asarray(x)
        counts = []
        for start in range(0, len(x), batch_size):
            result = run_fixed(self.network, self.chip_input(x[start:start + batch_size], steps))
            counts.append(result.output().sum(dim=-1).reshape(min(batch_size, len(x) - start), -1).numpy())
        return np.concatenate(counts) if counts else np.zeros((0, int(np.prod(self.network.output_shape))))

    def predict(self, x: np.ndarray, steps: int) -> np.ndarray:
        """Class per sample: the output neuron with the most spikes (first one on ties)."""
        return self.spike_counts(x, steps).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray, steps: int) -> float:
        """Fraction of samples whose spike-count class equals ``y``."""
        return float(np.mean(self.predict(x, steps) == np.asarray(y)))


def _threshold_and_mantissas(weight: np.ndarray, graded_input: int | None = None) -> tuple[int, np.ndarray]:
    """v_th_mant and even 8-bit mantissas keeping ``weight`` (threshold units) as ratios.

    With ``graded_input`` (the largest input mantissa), the threshold is also capped so
    that no neuron's summed input ``sum_i w_i m_i`` (inputs in [0, graded_input]) can
    overflow the 24-bit current (``MAX_ACTIVATION``).
    """
    largest = float(np.max(np.abs(weight))) if weight.size else 0.0
    v_th = threshold_for(largest)
    while True:
        mantissa = to_mantissa(weight, v_th)
        if graded_input is None or v_th == 1:
            return v_th, mantissa
        rows = mantissa.reshape(mantissa.shape[0], -1).astype(np.int64)
        worst = graded_input * max(int(np.clip(rows, 0, None).sum(axis=1).max()),
                                   int(np.clip(-rows, 0, None).sum(axis=1).max()))
        if worst <= MAX_ACTIVATION:
            return v_th, mantissa
        v_th = max(1, min(v_th - 1, int(v_th * MAX_ACTIVATION / worst * 0.99)))


def to_snn(ann: Ann, calibration: np.ndarray, config: ConversionConfig | None = None,
           name: str | None = None) -> Conversion:
    """Convert ``ann`` to a chip network by data-based threshold balancing.

    Parameters
    ----------
    ann : the float ANN (e.g. from :func:`read_ann`).
    calibration : training samples ``(N, *input_shape)`` (analog values in [0, 1]); the
        first ``config.max_calibration_samples`` set the per-layer percentiles.
    config : :class:`ConversionConfig` (percentile, input rate, input encoding).

    Returns
    -------
    Conversion with the IR network: an input layer (with IF neurons for the ``neuron``
    encoding), then one layer per ANN layer with non-leaky IF neurons
    (``i_decay=4096, v_decay=0``).
    """
    config = config or ConversionConfig()
    x = _fit_input(np.asarray(calibration, dtype=np.float32), ann.input_shape)[: config.max_calibration_samples]
    if len(x) == 0:
        raise ShapeError("no calibration samples")
    activations = ann.forward(x, all_layers=True)
    graded = config.input_encoding == "graded"
    if graded:  # the first layer sees mantissas round(64 x): one mantissa unit is 1/64
        layers: list[Layer] = [InputLayer(shape=ann.input_shape)]
        previous_scale = 1.0 / INPUT_SCALE
    else:
        input_threshold = int(round(INPUT_SCALE / config.input_rate)) - 1
        layers = [InputLayer(shape=ann.input_shape, neuron=_if_neuron(input_threshold))]
        previous_scale = 1.0 / config.input_rate
    scales: list[float] = []
    for layer, activation in zip(ann.layers, activations):
        to_layer = lookup(_SNN_LAYERS, layer.kind, "spiking form", f"ANN layer {layer.name!r}")
        if LAYER_TYPES[layer.kind].passthrough:  # flatten: no neurons, no scale
            layers.append(to_layer(layer, 1.0, 1.0, None))
            scales.append(float("nan"))
            continue
        where = f"{ann.name}: layer {layer.name!r}"
        check_finite_array(activation, "the activation on the calibration samples", where)
        positive = np.maximum(activation, 0.0)
        scale = float(np.percentile(positive, config.percentile))
        if scale <= 0:
            scale = float(positive.max()) or 1.0  # a (nearly) silent layer: any scale works
        scale /= config.max_rate  # the activation that would fire every step
        scales.append(scale)
        gain = previous_scale / scale
        # graded input into the first synaptic layer: keep its summed input within 24 bits
        bound = INPUT_SCALE if graded and len(scales) == 1 else None
        layers.append(to_layer(layer, gain, scale, bound))
        previous_scale = scale
    network = Network(layers, name=name or ann.name)
    return Conversion(network=network, ann=ann, scales=tuple(scales), config=config)


def _snn_flatten(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    return FlattenLayer(name=layer.name)


def _snn_pool(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    taps = np.full((1, layer.kernel[0] * layer.kernel[1]), layer.tap * gain)
    v_th, mantissa = _threshold_and_mantissas(taps, bound)
    return PoolLayer(name=layer.name, kernel=layer.kernel, stride=layer.stride, padding=layer.padding,
                     weight=int(mantissa.flat[0]), neuron=_if_neuron(v_th))


def _snn_weights(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> tuple[int, np.ndarray,
                                                                                          np.ndarray | None]:
    """(threshold, weight mantissas, bias) of a dense or conv layer scaled by ``gain``."""
    v_th, mantissa = _threshold_and_mantissas(np.asarray(layer.weight) * gain, bound)
    bias = None if layer.bias is None else check_int_range(
        np.round(np.asarray(layer.bias) / scale * v_th), "bias mantissa", f"layer {layer.name!r}", -MAX_BIAS_MANT - 1,
        MAX_BIAS_MANT, "the bias is too large against the layer's activations; retrain with weight decay",
    ).astype(np.int32)
    return v_th, mantissa, bias


def _snn_dense(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    v_th, mantissa, bias = _snn_weights(layer, gain, scale, bound)
    return DenseLayer(name=layer.name, weight=mantissa, bias=bias, neuron=_if_neuron(v_th))


def _snn_conv(layer: AnnLayer, gain: float, scale: float, bound: int | None) -> Layer:
    v_th, mantissa, bias = _snn_weights(layer, gain, scale, bound)
    return ConvLayer(name=layer.name, weight=mantissa, bias=bias, neuron=_if_neuron(v_th), stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


#: the IR layer (IF neurons) of each ANN layer kind, from (layer, weight gain, activation scale, input bound)
_SNN_LAYERS: dict[str, Callable[[AnnLayer, float, float, int | None], Layer]] = {
    "dense": _snn_dense,
    "conv": _snn_conv,
    "pool": _snn_pool,
    "flatten": _snn_flatten,
}


def _if_neuron(v_th_mant: int) -> Neuron:
    """Non-leaky integrate-and-fire: no current memory, no voltage decay."""
    return Neuron(kind="CUBA", i_decay=DECAY_UNITY, v_decay=0, v_th_mant=int(v_th_mant))


def convert(path: str | os.PathLike[str], calibration: np.ndarray, config: ConversionConfig | None = None,
            check_samples: int = 64) -> tuple[Conversion, float]:
    """:func:`read_ann`, :func:`check_against_onnxruntime` on the first ``check_samples``
    calibration samples, then :func:`to_snn`. Returns (conversion, relative ANN error)."""
    ann = read_ann(path)
    samples = _fit_input(np.asarray(calibration, dtype=np.float32), ann.input_shape)
    error = check_against_onnxruntime(ann, path, samples[:check_samples]) if check_samples else float("nan")
    return to_snn(ann, samples, config), error
