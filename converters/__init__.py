"""Everything that crosses a file or library boundary: netx HDF5, Lava, ONNX, NIR."""

__all__: list[str] = []
