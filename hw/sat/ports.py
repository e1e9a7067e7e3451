"""The SAT accelerator's external ports: memory request/response, status and counter layouts.

The accelerator top (``hw/sat/accelerator.py``) and the testbench's DRAM model and command feeder
(``sim/sat_bench.py``, ``sim/sat_mem_dpi.cpp``) both take their formats from here. After Verilog
generation Amaranth flattens each stream to ``<name>__payload``, ``<name>__valid`` and
``<name>__ready`` and each struct output to one vector (first field in the least significant bits):

=============  =========  ===========================================================================
port           direction  payload
=============  =========  ===========================================================================
``cmd``        in         stream of ``isa.descriptor_layout(config)``
``mem_req``    out        stream of :func:`mem_request_layout`: ``addr`` (word address, bits 0..31),
                          ``write`` (bit 32), ``data`` (``mem_bits``, from bit 33; ignored by reads)
``mem_resp``   in         stream of :func:`mem_response_layout`: read ``data``, in request order
``status``     out        :func:`status_layout`: ``busy``, ``error``, ``error_code`` (``isa.ErrorCode``)
``counters``   out        :func:`counters_layout`: 48-bit performance counters, counted from reset
=============  =========  ===========================================================================
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import descriptor_layout

__all__ = [
    "COUNTER_BITS",
    "COUNTER_NAMES",
    "accelerator_signature",
    "counters_layout",
    "mem_request_layout",
    "mem_response_layout",
    "status_layout",
]

#: Width of every performance counter (wraps after 2**48 events: days at any clock rate we model).
COUNTER_BITS = 48

#: Performance counters, in layout order (LSB first). ``busy``: cycles with ``status.busy``;
#: ``ff``, ``bp``, ``wu``, ``gemm_other``: cycles a GEMM of that tag was executing; ``prune``,
#: ``update``: cycles a PRUNE / UPDATE was executing; ``stall_*``: cycles the array waited, by
#: cause; ``macs_issued``: R x C per array step; ``macs_useful``: kept products of used rows/columns.
COUNTER_NAMES: tuple[str, ...] = (
    "busy",
    "ff",
    "bp",
    "wu",
    "gemm_other",
    "prune",
    "update",
    "stall_operands",
    "stall_accumulator",
    "stall_memory",
    "macs_issued",
    "macs_useful",
)


def mem_request_layout(config: SatConfig) -> data.StructLayout:
    """One memory request: ``addr`` (32-bit word address), ``write``, ``data`` (``config.mem_bits``).

    Addresses count ``mem_bits``-wide words. ``data`` is only meaningful when ``write`` is set.
    """
    return data.StructLayout({"addr": 32, "write": 1, "data": config.mem_bits})


def mem_response_layout(config: SatConfig) -> data.StructLayout:
    """One read response: ``data`` (``config.mem_bits``), returned in the order the reads were accepted."""
    return data.StructLayout({"data": config.mem_bits})


def status_layout() -> data.StructLayout:
    """``busy`` (a program is executing), ``error`` (sticky), ``error_code`` (an ``isa.ErrorCode``, 3 bits)."""
    return data.StructLayout({"busy": 1, "error": 1, "error_code": 3})


def counters_layout() -> data.StructLayout:
    """The performance counters: one 48-bit unsigned field per name of :data:`COUNTER_NAMES`, in order."""
    return data.StructLayout({name: unsigned(COUNTER_BITS) for name in COUNTER_NAMES})


def accelerator_signature(config: SatConfig) -> wiring.Signature:
    """The accelerator top's signature (members ``cmd``, ``mem_req``, ``mem_resp``, ``status``, ``counters``).

    A component passes it to ``super().__init__``; the testbench wrapper relies on exactly these
    members (see the module docstring for their flattened Verilog port names).
    """
    return wiring.Signature(
        {
            "cmd": In(stream.Signature(descriptor_layout(config))),
            "mem_req": Out(stream.Signature(mem_request_layout(config))),
            "mem_resp": In(stream.Signature(mem_response_layout(config))),
            "status": Out(status_layout()),
            "counters": Out(counters_layout()),
        }
    )
