"""``Join``: a routing process that joins two spike (or graded) vectors along an axis.

Lava 0.10's compiler cannot compile its own port concatenation (``OutPort.concat_with``
raises ``NotImplementedError("ConcatPorts are not yet supported.")``); this process does
the same routing: it receives both inputs and sends ``concatenate((a, b), axis)`` in the
same time step (no delay, no arithmetic, as a virtual port would).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

__all__ = ["Join", "PyJoinModel"]


class Join(AbstractProcess):
    """In-ports ``inp_a`` of ``shape_a`` and ``inp_b`` of ``shape_b``; out-port ``out``
    of their shapes joined along ``axis``."""

    def __init__(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...], axis: int) -> None:
        super().__init__(shape_a=shape_a, shape_b=shape_b, axis=axis)
        shape = list(shape_a)
        shape[axis] += shape_b[axis]
        self.inp_a, self.inp_b = InPort(shape=shape_a), InPort(shape=shape_b)
        self.out = OutPort(shape=tuple(shape))


@implements(proc=Join, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyJoinModel(PyLoihiProcessModel):
    inp_a: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)
    inp_b: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def run_spk(self) -> None:
        self.out.send(np.concatenate((self.inp_a.recv(), self.inp_b.recv()), axis=self.proc_params["axis"]))
