"""ONNX import with ANN -> SNN conversion, and ONNX export of a network's ANN equivalent.

The work is split by job; this module gathers the public names:

- :mod:`converters.ann`: the float ANN (:class:`Ann`, :class:`AnnLayer`) and its forward pass;
- :mod:`converters.onnx_read`: ONNX parsing (:func:`read_ann`, :func:`check_against_onnxruntime`);
- :mod:`converters.ann_to_snn`: threshold balancing (:func:`to_snn`, :func:`convert`);
- :mod:`converters.onnx_write`: the ANN-equivalent ONNX graph of a network (:func:`to_onnx`, :func:`write`).
"""

from __future__ import annotations

from converters.ann import Ann, AnnLayer
from converters.ann_to_snn import INPUT_SCALE, Conversion, ConversionConfig, convert, to_snn
from converters.onnx_read import SUPPORTED_OPS, check_against_onnxruntime, read_ann
from converters.onnx_write import to_onnx, write

__all__ = [
    "AnnLayer",
    "Ann",
    "ConversionConfig",
    "Conversion",
    "read_ann",
    "check_against_onnxruntime",
    "to_snn",
    "convert",
    "to_onnx",
    "write",
    "SUPPORTED_OPS",
    "INPUT_SCALE",
]
