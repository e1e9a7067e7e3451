"""Verilator + cocotb simulation harness (installed as ``trainforge.sim``)."""
