"""neuroprune: fit, prune and verify spiking neural networks for Loihi-style chips.

Import packages: ``neuroprune`` (IR, SNN substrate, pruning, CLI), ``hw_models``
(chips, cost model, mapper, energy) and ``converters`` (netx, Lava verification, ONNX,
NIR). Importing this package is cheap: torch and Lava load only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
