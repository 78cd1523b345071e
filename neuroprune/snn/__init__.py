"""SNN substrate on lava-dl slayer CUBA blocks.

Submodules load torch and lava-dl; import them explicitly (``neuroprune.snn.model``,
``neuroprune.snn.fixed``, ``neuroprune.snn.train``, ...).
"""
