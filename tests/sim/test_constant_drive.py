"""The always @* hazard: a field driven only by a constant must not be lost in Verilator.

yosys writes such a field in an ``always @*`` block with an empty sensitivity list, which by IEEE
never runs; ``to_verilog`` emits ``always_comb`` instead. Without that, ``o[6:4]`` reads 0, not 5.
"""

# No `from __future__ import annotations`: wiring.Component reads its annotations as members.
import re

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from trainforge.sim import verilator
from trainforge.sim.harness import to_verilog

pytestmark = pytest.mark.verilator

LAYOUT = data.StructLayout({"a": 4, "op": 3})


class Inner(wiring.Component):
    x: In(LAYOUT)
    y: Out(7)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.x.as_value())
        return m


class ConstantField(wiring.Component):
    i: In(4)
    sel: In(1)
    o: Out(7)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = Inner()
        m.d.comb += [inner.x.a.eq(self.i), inner.x.op.eq(5)]
        with m.If(self.sel):
            m.d.comb += inner.x.a.eq(3)
        m.d.comb += self.o.eq(inner.y)
        return m


def test_constant_field_survives_verilator(tmp_path):
    text = to_verilog(ConstantField(), name="const_field")
    assert not re.search(r"always @\*", text)
    model = verilator.build(text, top="const_field", ports=["i", "sel", "o"])
    run = verilator.run_cocotb(model, top="const_field", test_module="tb_constant_drive", run_dir=tmp_path, seed=1)
    assert (run.tests, run.failures) == (1, 0), run.log.read_text()[-2000:]
