"""Every per-kind registry covers every layer kind of the IR (``ir.LAYER_TYPES``).

A registry lists the kinds it needs through a class-level fact of the layer classes
(``synaptic``, ``passthrough``, ``on_host``); the few kinds a registry genuinely has no meaning for
are in ``ALLOWED_MISSING``, each with its reason. Adding a layer kind makes this test
name every registry that still lacks it.
"""

from __future__ import annotations

import importlib

import pytest

from neuroprune import ir
from neuroprune.errors import UnsupportedLayerError
from neuroprune.registry import lookup


def _all(cls: type[ir.Layer]) -> bool:
    return True


def _synaptic(cls: type[ir.Layer]) -> bool:
    return cls.synaptic


def _on_chip(cls: type[ir.Layer]) -> bool:
    return not cls.passthrough and not cls.on_host


def _not_input(cls: type[ir.Layer]) -> bool:
    return cls is not ir.InputLayer


def _holds_neurons(cls: type[ir.Layer]) -> bool:
    return cls.synaptic or cls is ir.InputLayer


# (module, registry, which kinds it must hold)
REGISTRIES = [
    ("converters.netx", "_READERS", _all),
    ("converters.netx", "_WRITERS", _all),
    ("converters.nir_write", "_EXPORTERS", _all),
    ("converters.nir_read", "_RAW_SYNAPSES", _synaptic),      # NIR synapse nodes -> weights
    ("converters.nir_read", "_LAYER_BUILDERS", _synaptic),    # synapse + neuron nodes -> IR layer
    ("converters.onnx_write", "_ONNX_EXPORTERS", _all),
    ("converters.ann", "_ANN_FORWARD", _not_input),     # an ANN's input is its input_shape, not a layer
    ("converters.ann_to_snn", "_SNN_LAYERS", _not_input),
    ("hw_models.cost", "COSTERS", _on_chip),     # pass-throughs and host-side readouts hold no compartments
    ("hw_models.cost", "SYNAPSE_BITS", _on_chip),
    ("neuroprune.snn.fixed", "SYNAPSES", _synaptic),     # input neurons and pass-throughs have no synapse
    ("neuroprune.snn.fixed", "RESET_BLOCKS", _holds_neurons),  # netx's periodic reset (reset_interval)
    ("neuroprune.prune.structured", "SLICERS", _synaptic),
    ("neuroprune.prune.spear", "LAYER_FEATURES", _synaptic),
    ("neuroprune.snn.model", "_BLOCK_BUILDERS", _all),
    ("neuroprune.snn.model", "_IR_LAYERS", _all),
    ("neuroprune.snn.model", "_SPECS", _all),
]

# (registry, kind): why the kind has no entry there
ALLOWED_MISSING = {
    ("neuroprune.snn.model._BLOCK_BUILDERS", "pool"):
        "architecture strings build no pooling (strided convs instead, see parse_arch); pool is not trained",
    ("neuroprune.snn.model._IR_LAYERS", "pool"): "models hold no slayer Pool block (see _BLOCK_BUILDERS)",
    ("neuroprune.snn.model._SPECS", "pool"): "a pool layer cannot be converted to a trainable block",
    # average (slayer's Average readout, host-side; read, written, fitted and verified from netx)
    ("converters.ann._ANN_FORWARD", "average"): "ONNX import builds no host-side readout",
    ("converters.ann_to_snn._SNN_LAYERS", "average"): "ONNX import builds no host-side readout",
    ("neuroprune.snn.model._BLOCK_BUILDERS", "average"):
        "training builds no readout block yet (train --neuron sdnn and readouts are later work of the same issue)",
    ("neuroprune.snn.model._IR_LAYERS", "average"): "models hold no slayer Average block (see _BLOCK_BUILDERS)",
    ("neuroprune.snn.model._SPECS", "average"):
        "an average readout cannot be converted to a trainable block yet; `convert` to .pt refuses it in one line",
    # dense_rec (recurrent) and dense_comp (complex) dense layers: read, written and fitted from netx;
    # NIR and ONNX export hold an entry for both (a mapping, or a one-line refusal naming netx)
    **{(registry, kind): reason.format(what=what)
       for kind, what in (("dense_rec", "recurrent"), ("dense_comp", "complex"))
       for registry, reason in (
        ("converters.ann._ANN_FORWARD", "ONNX import builds no {what} layer"),
        ("converters.ann_to_snn._SNN_LAYERS", "ONNX import builds no {what} layer"),
        ("neuroprune.prune.spear.LAYER_FEATURES", "pruning runs on trained checkpoints, which hold no {what} layer"),
        ("neuroprune.snn.model._BLOCK_BUILDERS", "training builds no {what} block yet"),
        ("neuroprune.snn.model._IR_LAYERS", "models hold no {what} slayer block (see _BLOCK_BUILDERS)"),
        ("neuroprune.snn.model._SPECS", "a {what} layer cannot be converted to a trainable block yet"),
    )},
    # convT, unpool (slayer's ConvT/Unpool blocks) and concat (netx skip connections): read, written,
    # fitted, run bit-exactly, verified in Lava (converters.lava_build) and cut by channel (prune.structured)
    **{(registry, kind): reason.format(kind=kind)
       for kind in ("convT", "unpool", "concat")
       for registry, reason in (
        ("converters.nir_write._EXPORTERS",
         "NIR 1.0 has no transposed-conv or concatenation node; `convert` refuses {kind} in one line"),
        ("converters.ann._ANN_FORWARD", "ONNX import builds no {kind} layer"),
        ("converters.ann_to_snn._SNN_LAYERS", "ONNX import builds no {kind} layer"),
        ("neuroprune.snn.model._BLOCK_BUILDERS", "training builds no {kind} block yet"),
        ("neuroprune.snn.model._IR_LAYERS", "models hold no {kind} slayer block (see _BLOCK_BUILDERS)"),
        ("neuroprune.snn.model._SPECS", "a {kind} layer cannot be converted to a trainable block yet"),
    )},
    **{(registry, kind): reason.format(kind=kind)
       for kind in ("convT", "unpool")
       for registry, reason in (
        ("converters.nir_read._RAW_SYNAPSES", "NIR 1.0 has no transposed-conv node to import"),
        ("converters.nir_read._LAYER_BUILDERS", "NIR 1.0 has no transposed-conv node to import"),
    )},
    ("hw_models.cost.COSTERS", "concat"):
        "a concat holds no compartments: it joins its sources' spikes; the mapper charges its consumer's "
        "output axons to its sources",
    ("hw_models.cost.SYNAPSE_BITS", "concat"): "a concat has no synapses",
    # lava-dl 0.6's netx builds no reset for these (NotImplementedError for pool, convT and unpool;
    # its dense_comp block takes no reset_interval); run_fixed(reset_interval=...) refuses them in one line
    **{("neuroprune.snn.fixed.RESET_BLOCKS", kind): "lava-dl's netx builds no periodic reset for it"
       for kind in ("pool", "convT", "unpool", "dense_comp")},
}


def _registry(module: str, name: str) -> dict:
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module,name,needs", REGISTRIES, ids=[f"{m}.{n}" for m, n, _ in REGISTRIES])
def test_registry_covers_every_layer_kind(module, name, needs):
    registry = _registry(module, name)
    where = f"{module}.{name}"
    required = {kind for kind, cls in ir.LAYER_TYPES.items() if needs(cls)}
    missing = sorted(kind for kind in required - set(registry) if (where, kind) not in ALLOWED_MISSING)
    assert not missing, f"{where} has no entry for layer kinds {missing}"
    unknown = sorted(set(registry) - set(ir.LAYER_TYPES))
    assert not unknown, f"{where} holds kinds {unknown} that ir.LAYER_TYPES does not define"
    stale = sorted(kind for (reg, kind) in ALLOWED_MISSING if reg == where and kind in registry)
    assert not stale, f"{where} now holds {stale}: remove them from ALLOWED_MISSING"


def test_lookup_names_the_missing_kind_and_the_supported_ones():
    assert lookup({"dense": 1}, "dense", "cost") == 1
    with pytest.raises(UnsupportedLayerError,
                       match=r"^layer 3: layer type 'ring' has no hardware cost model; supported: input, dense$"):
        lookup({"input": 0, "dense": 1}, "ring", "hardware cost model", "layer 3")


def test_flatten_has_no_cost_model_and_says_what_has():
    from hw_models.chip import load_chip
    from hw_models.cost import make_coster

    with pytest.raises(UnsupportedLayerError, match=r"'flatten' has no hardware cost model; "
                                                    r"supported: input, dense, dense_rec, dense_comp, conv, convT, pool, unpool"):
        make_coster(ir.FlattenLayer(name="f"), (2, 2, 2), (8,), load_chip("loihi2"))


def test_class_facts_and_network_structure_queries():
    import numpy as np

    neuron = ir.Neuron()
    net = ir.Network([
        ir.InputLayer(shape=(2, 4, 4)),
        ir.ConvLayer(weight=np.ones((3, 2, 1, 1), dtype=np.int32), neuron=neuron),
        ir.ConvLayer(weight=np.ones((3, 1, 1, 1), dtype=np.int32), groups=3, neuron=neuron),  # depthwise
        ir.PoolLayer(kernel=2, neuron=neuron),
        ir.FlattenLayer(),
        ir.DenseLayer(weight=np.ones((4, 12), dtype=np.int32), neuron=neuron),
    ])
    assert [layer.channel_wise for layer in net] == [False, False, True, True, False, False]
    assert [layer.passthrough for layer in net] == [False] * 4 + [True, False]
    assert [layer.shared_weights for layer in net] == [False, True, True, True, False, False]
    assert [net.producer_of(i) for i in range(len(net))] == [None, 0, 1, 2, 3, 3]
    assert net.compartment_indices() == [1, 2, 3, 5]  # an input without neuron holds none
    assert net.source_indices() == [0, 1, 2, 3, 5]
    with_input_neuron = net.replace(0, ir.InputLayer(shape=(2, 4, 4), neuron=neuron))
    assert with_input_neuron.compartment_indices() == [0, 1, 2, 3, 5]
