"""cocotb side of test_constant_drive.py: a constant-driven struct field must read as its constant."""

import cocotb
from cocotb.triggers import Timer


@cocotb.test()
async def constant_field_is_driven(dut):
    for sel, low in ((0, 1), (1, 3)):
        dut.i.value = 1
        dut.sel.value = sel
        await Timer(1, unit="ns")
        assert dut.o.value.to_unsigned() == low | (5 << 4), f"sel={sel}: o={dut.o.value.to_unsigned()}"
