"""The SAT program bench (sim/sat_bench.py + sim/sat_mem_dpi.cpp) on a mock accelerator.

The mock has the accelerator's exact port list (``hw/sat/ports.py``) and copies memory words: its
descriptor is the raw cmd payload read as ``{src: 32, dst: 32, words: 16, hold: 1}``. It accepts a
descriptor in its idle state, issues all reads back to back, collects the responses (with ``hold``
it keeps ``mem_resp__ready`` low until every read was issued), then issues all writes back to back
and returns to idle; ``words == 0`` raises the error flag (code 3) for good. The cocotb side,
``sim/testbenches/tb_sat_bench_mock.py``, checks the final images against a NumPy memmove and the
cycle counts, request trace and counters against a cycle schedule derived by hand from the DRAM
model's contract.
"""

# No `from __future__ import annotations`: amaranth reads Component annotations at runtime.
import pytest
from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import descriptor_layout
from trainforge.hw.sat.ports import (
    COUNTER_NAMES,
    accelerator_signature,
    counters_layout,
    mem_request_layout,
    mem_response_layout,
    status_layout,
)
from trainforge.sim.sat_bench import run_sat_tests, sat_wrapper

DEPTH = 16  #: words the mock buffers per descriptor (the testbench never asks for more)


class MemCopyMock(wiring.Component):
    """Copies ``words`` memory words from ``src`` to ``dst``: reads all, then writes all."""

    def __init__(self, *, config: SatConfig):
        self._config = config
        super().__init__(accelerator_signature(config))

    def elaborate(self, platform):
        m = Module()
        raw = self.cmd.payload.as_value()
        src, dst = Signal(32), Signal(32)
        words, issued, received, written = Signal(16), Signal(16), Signal(16), Signal(16)
        hold = Signal()
        buf = Array(Signal(self._config.mem_bits, name=f"buf{i}") for i in range(DEPTH))
        req, resp = self.mem_req, self.mem_resp
        busy = Signal()

        taken = resp.valid & resp.ready
        with m.If(taken):
            m.d.sync += [buf[received[:4]].eq(resp.payload.data), received.eq(received + 1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [
                        src.eq(raw[0:32]),
                        dst.eq(raw[32:64]),
                        words.eq(raw[64:80]),
                        hold.eq(raw[80]),
                        issued.eq(0),
                        received.eq(0),
                        written.eq(0),
                    ]
                    with m.If(raw[64:80] == 0):
                        m.next = "ERROR"
                    with m.Else():
                        m.next = "READ"
            with m.State("READ"):
                m.d.comb += [busy.eq(1), req.valid.eq(1), req.payload.addr.eq(src + issued), resp.ready.eq(~hold)]
                with m.If(req.ready):
                    m.d.sync += issued.eq(issued + 1)
                    with m.If(issued == words - 1):
                        m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += [busy.eq(1), resp.ready.eq(1)]
                with m.If((received == words) | (taken & (received == words - 1))):
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [
                    busy.eq(1),
                    req.valid.eq(1),
                    req.payload.addr.eq(dst + written),
                    req.payload.write.eq(1),
                    req.payload.data.eq(buf[written[:4]]),
                ]
                with m.If(req.ready):
                    m.d.sync += written.eq(written + 1)
                    with m.If(written == words - 1):
                        m.next = "IDLE"
            with m.State("ERROR"):
                m.d.comb += [self.status.error.eq(1), self.status.error_code.eq(3)]

        m.d.comb += self.status.busy.eq(busy)
        counters = self.counters
        with m.If(busy):
            m.d.sync += counters.busy.eq(counters.busy + 1)
        with m.If(req.valid & ~req.ready):
            m.d.sync += counters.stall_memory.eq(counters.stall_memory + 1)
        with m.If(req.valid & req.ready & ~req.payload.write):
            m.d.sync += counters.macs_issued.eq(counters.macs_issued + 1)
        with m.If(req.valid & req.ready & req.payload.write):
            m.d.sync += counters.macs_useful.eq(counters.macs_useful + 1)
        return m


def test_port_layouts():
    config = SatConfig.preset_named("tiny")
    req = mem_request_layout(config)
    assert [(name, req[name].offset, req[name].width) for name, _ in req] == [
        ("addr", 0, 32),
        ("write", 32, 1),
        ("data", 33, 128),
    ]
    assert mem_response_layout(config).size == 128
    status = status_layout()
    assert [(name, status[name].offset) for name, _ in status] == [("busy", 0), ("error", 1), ("error_code", 2)]
    assert status.size == 5
    counters = counters_layout()
    assert [name for name, _ in counters] == list(COUNTER_NAMES)
    assert [counters[name].offset for name in COUNTER_NAMES] == [48 * i for i in range(12)]
    assert counters.size == 12 * 48
    assert not any(counters[name].shape.signed for name in COUNTER_NAMES)


def _ports(config):
    return [
        {"name": "clk", "width": 1},
        {"name": "rst", "width": 1},
        {"name": "cmd__payload", "width": descriptor_layout(config).size},
        {"name": "cmd__valid", "width": 1},
        {"name": "cmd__ready", "width": 1},
        {"name": "mem_req__payload", "width": 33 + config.mem_bits},
        {"name": "mem_req__valid", "width": 1},
        {"name": "mem_req__ready", "width": 1},
        {"name": "mem_resp__payload", "width": config.mem_bits},
        {"name": "mem_resp__valid", "width": 1},
        {"name": "mem_resp__ready", "width": 1},
        {"name": "status", "width": 5},
        {"name": "counters", "width": 576},
    ]


def test_wrapper_checks_the_port_list():
    config = SatConfig.preset_named("tiny")
    text = sat_wrapper(config, "acc", _ports(config))
    assert "acc dut (" in text
    assert ".mem_resp__ready(resp_ready)" in text
    with pytest.raises(ValueError, match="no port 'counters'"):
        sat_wrapper(config, "acc", _ports(config)[:-1])
    with pytest.raises(ValueError, match=r"mem_req__payload is 161 bits wide, the configuration needs 289"):
        sat_wrapper(config.replace(mem_bits=256), "acc", _ports(config))


@pytest.mark.verilator
def test_mock_programs_on_verilator(tmp_path):
    config = SatConfig.preset_named("tiny")
    run = run_sat_tests(
        MemCopyMock(config=config),
        config=config,
        test_module="trainforge.sim.testbenches.tb_sat_bench_mock",
        run_dir=tmp_path,
        seed=3,
        name="sat_memcopy_mock",
        timeout=300,
    )
    assert run.failures == 0, run.log.read_text()[-4000:]
    assert run.tests == 6
