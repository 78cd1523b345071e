"""NIR (Neuromorphic Intermediate Representation, package ``nir``) import and export.

:func:`to_nir` turns an IR :class:`~neuroprune.ir.Network` into a ``nir.NIRGraph``;
:func:`from_nir` turns a chain-shaped NIR graph back into a Network; :func:`write` and
:func:`read` do the same through NIR's HDF5 files (``nir.write`` / ``nir.read``).
Export lives in :mod:`converters.nir_write`, import in :mod:`converters.nir_read` (with
:mod:`converters.nir_merge`), what both share in :mod:`converters.nir_common`; this module
gathers the public names.

Node mapping (one chain ``Input -> ... -> Output``)
---------------------------------------------------
==========================  ==================================================================
IR layer                    NIR nodes
==========================  ==================================================================
``InputLayer``              ``Input`` (+ ``CubaLIF`` when the input layer has a neuron)
``DenseLayer``              ``Affine`` (bias on the synapse) or ``Linear``, then ``CubaLIF``;
                            a per-output delay adds a ``Delay`` between them, a per-input
                            delay a ``Delay`` before the synapse
``RecurrentDenseLayer``     ``Affine``/``Linear``, then ``CubaLIF`` (key ``<name>_rec.lif``)
                            with a cycle ``lif -> Linear(weight_rec) -> lif`` (key
                            ``<name>_rec.w_rec``), the form snntorch writes for ``RLeaky`` /
                            ``RSynaptic``
``ConvLayer``               ``Conv2d`` (``input_shape``, stride, padding, dilation, groups),
                            then ``CubaLIF``
``PoolLayer``               ``SumPool2d``, then ``CubaLIF`` with the pool weight in ``w_in``
                            (a ``Scale`` node holds it when the layer has no neuron)
``FlattenLayer``            ``Flatten`` (``start_dim=0``: NIR shapes carry no batch axis)
``AverageLayer``            ``Linear`` whose row ``i`` is ``1/g`` on the ``i``-th group of ``g``
                            inputs, no neuron after it (a ``Flatten`` first for a map)
``ComplexDenseLayer``       refused: NIR has no complex synapse (write ``.net``)
==========================  ==================================================================

Neurons other than Loihi's CUBA compartment (sigma-delta ``SDNN``, resonate-and-fire
``RF_PHASE``/``RF_IZHIKEVICH``) have no NIR node and are refused in one line naming netx.

Recurrent layers: NIR sums a node's inputs, so the ``CubaLIF`` receives ``W x[t] + W_rec
s[t-1]`` (a cycle carries one step, as the chip's recurrent synapse does; the chip's one step
per feed-forward layer is left out as everywhere, see below). On import, a cycle ``neuron ->
Affine/Linear -> neuron`` whose synapse touches nothing else becomes a ``dense_rec`` layer
behind a dense synapse: both weight matrices are quantized together (one threshold), and a
recurrent ``Affine`` bias (snntorch's ``RLeaky`` writes one) joins the layer's bias, as the
two synapses feed the same neuron input.

Delays: NIR's ``Delay`` is ``y(t) = x(t - tau)`` in the graph's time unit, so a delay of ``d``
chip steps is written as ``tau = d * dt`` and read back as ``tau / dt`` steps (whole steps only).

The average readout is a mean per time step, which a ``Linear`` of ``1/g`` blocks computes
exactly on spikes; import reads such a neuron-less ``Linear`` at the end of the graph back as
``average``.

Import also accepts ``IF`` and ``LIF`` neurons, ``AvgPool2d``, a ``Scale`` right
after any synapse (folded into its weights), and nested graphs (a ``NIRGraph`` node with one
``Input`` and one ``Output``, such as the recurrent subgraph snntorch builds for ``RLeaky``),
whose nodes are read in its place as ``<graph key>.<key>``. ``AvgPool2d`` with neurons becomes a pool layer
whose weight and threshold keep ``w / v_th = 1 / (k^2 threshold)`` exactly when that ratio
is a fraction of chip-sized integers (any weight set whose non-zero entries are all equal is
read this way), else it is quantized like other float weights and a warning gives the error. A synapse with no neuron after it (sinabs'
and snntorch's pooling between two convolutions) is merged into the synapse it feeds
(:mod:`converters.nir_merge`) or refused; a leading batch dimension of 1 on the ``Input``
(norse, nirtorch) is dropped with a warning. Any other node type raises one
:class:`UnsupportedLayerError` listing every such node. (nir's own type check miscounts
the input channels of grouped ``Conv2d`` nodes, so :func:`read` reads without it and
checks shapes itself.)

CUBA parameter mapping (``dt`` = the length of one chip time step in the graph's time unit)
---------------------------------------------------------------------------------------------
The chip (IR units, decays in 1/4096 per step, see :mod:`neuroprune.ir`) computes per step::

    u[t] = u[t-1] * (1 - i_decay/4096) + a[t]          a = sum of weight mantissas of spikes
    v[t] = v[t-1] * (1 - v_decay/4096) + u[t] + bias    spike and v = 0 when v > v_th_mant

(voltages counted in weight-mantissa units, i.e. the chip's ``v`` divided by 2**6).
NIR's CubaLIF, integrated with forward Euler at step ``dt``, computes::

    I[t] = I[t-1] + dt/tau_syn * (-I[t-1] + w_in * (W x + b))
    v[t] = v[t-1] + dt/tau_mem * (v_leak - v[t-1] + r * I[t])

Both agree term by term with

=================  =============================================  =========================
NIR field          export (IR -> NIR)                             import (NIR -> IR)
=================  =============================================  =========================
``tau_syn``        ``dt * 4096 / i_decay`` (``inf`` if 0)          ``i_decay = round(4096 dt / tau_syn)``
``tau_mem``        ``dt * 4096 / v_decay`` (``inf`` if 0)          ``v_decay = round(4096 dt / tau_mem)``
``w_in``           ``tau_syn / dt`` (current gain 1; a pool       input gain ``w_in dt / tau_syn``
                   layer's weight times that)
``r``              ``tau_mem / dt`` (voltage gain 1)               voltage gain ``r dt / tau_mem``
``v_threshold``    ``v_th_mant``                                  ``v_th_mant`` (see below)
``v_reset``        0 (the chip resets to 0)                       must be 0
``v_leak``         ``bias * tau_mem / dt`` if ``i_decay < 4096``  adds ``v_leak dt / tau_mem`` per step to the bias
``Affine.bias``    ``bias`` if ``i_decay = 4096``                 adds ``w_in r dt / tau_mem * b`` per step
=================  =============================================  =========================

``inf`` stands for "no decay"; gains ``inf / inf`` are read as their limit 1. Exported
weights are the IR mantissas (as float32) and the thresholds the ``v_th_mant`` integers,
so ``round(4096 dt / (dt 4096 / d)) == d`` and import returns the same integers: the round
trip IR -> NIR -> IR is exact (:meth:`Network.same_as`). The chip-only fields NIR has no
place for (neuron ``kind``, ``ref_delay``, ``graded_spike``, whether a bias exists,
``weight_bits``, masks, input-layer weight/bias) travel in node ``metadata``; the exact
chip integers are stored there too for readers. Masked layers export their effective
weights (masked synapses as 0); the values under the mask travel in metadata too.

A bias with ``i_decay < 4096`` and ``v_decay = 0`` has no CubaLIF form (it would need
``v_leak = inf``) and is refused. On import, an ``Affine`` bias behind a synaptic time
constant (``i_decay < 4096``) is mapped to its steady-state voltage drive: exact after
the current settles, not during the first ``tau_syn`` steps (a warning says so).

Graphs from other tools carry float weights and thresholds. Import first tries the
exact reading (equal integer thresholds, integer ``gain * W``); otherwise it rescales
each neuron so its threshold is 1 (``v`` is linear and resets to 0, so this changes no
spike) and quantizes per layer: ``v_th_mant = round(254 / max|W'|)`` and weights to
even mantissas in [-256, 254] (slayer's 8-bit grid), keeping ``W / threshold``.

The chip adds one time step per synaptic layer; NIR graphs carry no such delay and none
is added or removed here.

Time unit: export writes ``dt`` = :data:`EXPORT_DT` (1e-4 s) by default and stores it as
graph metadata; import takes ``dt`` from that metadata, else :data:`IMPORT_DT` (1: time
constants in steps). At 1e-4 our CubaLIF nodes are exactly what snntorch's
``import_from_nir`` accepts (``r = tau_mem / 1e-4``, ``w_in dt / tau_syn = 1``). All-zero
delays are written without ``Delay`` nodes (in the synapse's metadata), which norse cannot
read. A ``dt`` longer than a graph's time constants is refused with a value to try.
"""

from __future__ import annotations

from converters.nir_read import IMPORT_DT, SUPPORTED_NODES, from_nir, read
from converters.nir_write import EXPORT_DT, to_nir, write
from neuroprune.loihi_arith import DECAY_UNITY, MAX_V_TH_MANT

__all__ = ["to_nir", "from_nir", "write", "read", "SUPPORTED_NODES", "DECAY_UNITY", "MAX_V_TH_MANT", "EXPORT_DT",
           "IMPORT_DT"]
