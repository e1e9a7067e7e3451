"""Whole SAT programs on a Verilator model of the accelerator, with no Python per cycle.

The accelerator top (ports in :mod:`trainforge.hw.sat.ports`) is wrapped in a generated
SystemVerilog module, :data:`SAT_TOP`, that makes its own clock and, on every edge, calls the C++
driver ``sat_mem_dpi.cpp`` through DPI: it feeds the program's descriptors on ``cmd``, models the
DRAM behind ``mem_req`` / ``mem_resp`` and decides when the run has ended. A cocotb test calls
:func:`run_program`, which writes the memory image and the program to a file, pulses reset (the
driver loads the file) and awaits ``done``; the final image, the cycle count, the status and the
counters come back in a :class:`SatRun`.

Timing contract (cycle ``t`` is the t-th clock period after reset release, from 0; a handshake
happens in a cycle where valid and ready are both high; the reset the accelerator and the driver
see is the wrapper's ``rst`` port registered once, for simulation speed, so everything below counts
from that release):

- **cmd**: descriptor ``k`` is valid from the cycle after descriptor ``k - 1`` was accepted
  (descriptor 0 from cycle 0) until it is accepted; :attr:`SatRun.accepted` has the cycles.
- **mem_req**: ready in cycle ``t`` iff no request was accepted yet or ``t >= last + mem_interval``
  (``last`` the previous acceptance): at most one request per ``mem_interval`` cycles. A write
  updates memory when accepted. A read takes its data when accepted (so it sees every earlier
  write) and its response is presented on ``mem_resp`` from cycle ``t_accept + max(mem_latency, 1)``
  on (never in its own acceptance cycle, so latency 0 acts as 1), in acceptance order, at most
  one per cycle; while ``mem_resp__ready`` is low the head response stays presented and later
  ones queue behind it, none is lost.
- **memory**: word addresses of ``mem_bits``-wide words; words ``0 .. n-1`` start as the image,
  words beyond it are kept sparsely (:attr:`SatRun.outside`); a word never loaded nor written
  reads as 0.
- **end**, checked after each cycle's handshakes, first match wins: ``status.error`` is 1 (error
  stop, right away); every descriptor accepted, ``status.busy`` 0 in two consecutive cycles both
  after the last acceptance, and no read response pending (normal end); ``t + 1 == budget``
  (timeout). :attr:`SatRun.cycles` is ``t + 1``: cycles from reset release through the cycle the
  end was detected in. A normal end is thus detected two cycles after the first idle cycle
  ``e``: ``cycles == e + 2`` (``e`` the first cycle of the final idle stretch).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import descriptor_layout
from trainforge.hw.sat.ports import COUNTER_NAMES, counters_layout, mem_request_layout, status_layout
from trainforge.sim import verilator
from trainforge.sim.bulk import BUILD_ARGS, CLOCK_NS, ints_to_records, records_to_ints, words_for

__all__ = [
    "DPI_SOURCE",
    "IN_ENV",
    "OUT_ENV",
    "SAT_TOP",
    "TRACE_DTYPE",
    "SatRun",
    "build_sat",
    "build_verilog",
    "read_trace",
    "run_program",
    "run_sat_tests",
    "sat_wrapper",
]

SAT_TOP = "tf_sat_top"
DPI_SOURCE = Path(__file__).with_name("sat_mem_dpi.cpp")
IN_ENV, OUT_ENV = "TRAINFORGE_SAT_IN", "TRAINFORGE_SAT_OUT"
_MAGIC_IN, _MAGIC_OUT = 0x31534654, 0x4F534654  # "TFS1", "TFSO"
_IN_HEADER, _OUT_HEADER = 12, 16
_REASONS = {1: "idle", 2: "error", 3: "timeout"}
#: dtype of a request trace record (see :func:`read_trace`).
TRACE_DTYPE = np.dtype([("cycle", "<u8"), ("addr", "<u4"), ("write", "<u4")])


@dataclasses.dataclass(frozen=True)
class SatRun:
    """The outcome of one program run.

    Attributes
    ----------
    image : numpy.ndarray
        Final memory, uint32, the shape of the input image (word ``i`` in row ``i``, LSB first).
    cycles : int
        Cycles from reset release to the end of the run (see the module docstring).
    status : dict
        ``busy``, ``error``, ``error_code`` in the last cycle.
    counters : dict
        The performance counters in the last cycle, by name (:data:`~trainforge.hw.sat.ports.COUNTER_NAMES`).
    accepted : list of int
        The cycle each descriptor was accepted on ``cmd``, for those that were (a prefix of the program).
    timed_out : bool
        The cycle budget ran out before the program ended.
    reason : str
        ``"idle"`` (normal end), ``"error"`` or ``"timeout"``.
    outside : dict
        Words written beyond the image: word address to a uint32 row.
    reads, writes : int
        Memory requests accepted.
    sim_s : float
        Wall time of the simulation.
    """

    image: np.ndarray
    cycles: int
    status: dict[str, int]
    counters: dict[str, int]
    accepted: list[int]
    timed_out: bool
    reason: str = "idle"
    outside: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    sim_s: float = 0.0


def _widths(ports: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {p["name"]: int(p["width"]) for p in ports}


def sat_wrapper(config: SatConfig, top: str, ports: Sequence[Mapping[str, Any]]) -> str:
    """SystemVerilog source of :data:`SAT_TOP` around the accelerator module ``top``.

    Parameters
    ----------
    config : SatConfig
        Fixes the widths the ports must have (descriptor, memory word).
    top : str
        Module name of the accelerator in its Verilog.
    ports : sequence of mapping
        ``name`` and ``width`` of each port of ``top`` (``GeneratedVerilog.ports`` format).

    Raises
    ------
    ValueError
        A port is missing or its width disagrees with ``config``.
    """
    width = _widths(ports)
    expected = {
        "clk": 1,
        "rst": 1,
        "cmd__payload": descriptor_layout(config).size,
        "cmd__valid": 1,
        "cmd__ready": 1,
        "mem_req__payload": mem_request_layout(config).size,
        "mem_req__valid": 1,
        "mem_req__ready": 1,
        "mem_resp__payload": config.mem_bits,
        "mem_resp__valid": 1,
        "mem_resp__ready": 1,
        "status": status_layout().size,
    }
    for name, bits in expected.items():
        if name not in width:
            raise ValueError(f"{top} has no port {name!r}; ports: {', '.join(width)}")
        if width[name] != bits:
            raise ValueError(f"{top}.{name} is {width[name]} bits wide, the configuration needs {bits}")
    if "counters" not in width:
        raise ValueError(f"{top} has no port 'counters'; ports: {', '.join(width)}")
    cmd, req, resp, stat, cnt = (
        width[n] for n in ("cmd__payload", "mem_req__payload", "mem_resp__payload", "status", "counters")
    )
    return f"""// Generated by trainforge.sim.sat_bench: program feeder and DRAM model around {top}.
module {SAT_TOP} (
  output reg clk,
  input wire rst,
  output reg done
);
  // The clock is generated here (Verilator --timing), not by cocotb: no Python runs per edge.
  initial clk = 1'b0;
  always #{CLOCK_NS // 2} clk = ~clk;

  // The accelerator and the driver see `rst` registered (the run starts one cycle later; nothing
  // counts from the port itself): a reset that changes only at clock edges spares Verilator a
  // re-evaluation of every reset-dependent next-state expression on each input-change pass.
  reg rst_q = 1'b0;
  always @(posedge clk) rst_q <= rst;

  import "DPI-C" function void tf_sat_reset(
    input int cmd_bits, input int req_bits, input int resp_bits, input int status_bits, input int counter_bits,
    output bit cmd_valid, output bit [{cmd - 1}:0] cmd_payload, output bit req_ready,
    output bit resp_valid, output bit [{resp - 1}:0] resp_payload);
  import "DPI-C" function int tf_sat_tick(
    input bit cmd_ready, input bit req_valid, input bit [{req - 1}:0] req_payload, input bit resp_ready,
    input bit [{stat - 1}:0] status, input bit [{cnt - 1}:0] counters,
    output bit cmd_valid, output bit [{cmd - 1}:0] cmd_payload, output bit req_ready,
    output bit resp_valid, output bit [{resp - 1}:0] resp_payload);

  reg cmd_valid = 1'b0, req_ready = 1'b0, resp_valid = 1'b0;
  reg [{cmd - 1}:0] cmd_payload = '0;
  reg [{resp - 1}:0] resp_payload = '0;
  wire cmd_ready, req_valid, resp_ready;
  wire [{req - 1}:0] req_payload;
  wire [{stat - 1}:0] status;
  wire [{cnt - 1}:0] counters;
  bit n_cmd_valid, n_req_ready, n_resp_valid;
  bit [{cmd - 1}:0] n_cmd_payload;
  bit [{resp - 1}:0] n_resp_payload;
  initial done = 1'b0;

  {top} dut (
    .clk(clk),
    .rst(rst_q),
    .cmd__payload(cmd_payload),
    .cmd__valid(cmd_valid),
    .cmd__ready(cmd_ready),
    .mem_req__payload(req_payload),
    .mem_req__valid(req_valid),
    .mem_req__ready(req_ready),
    .mem_resp__payload(resp_payload),
    .mem_resp__valid(resp_valid),
    .mem_resp__ready(resp_ready),
    .status(status),
    .counters(counters)
  );

  // Each edge sees the cycle that ends on it and chooses what the next cycle presents.
  always @(posedge clk) begin
    if (rst_q) begin
      tf_sat_reset({cmd}, {req}, {resp}, {stat}, {cnt},
                   n_cmd_valid, n_cmd_payload, n_req_ready, n_resp_valid, n_resp_payload);
      done <= 1'b0;
    end else if (!done) begin
      done <= tf_sat_tick(cmd_ready, req_valid, req_payload, resp_ready, status, counters,
                          n_cmd_valid, n_cmd_payload, n_req_ready, n_resp_valid, n_resp_payload) != 0;
    end
    cmd_valid <= n_cmd_valid;
    cmd_payload <= n_cmd_payload;
    req_ready <= n_req_ready;
    resp_valid <= n_resp_valid;
    resp_payload <= n_resp_payload;
  end
endmodule
"""


def _decode(layout, value: int) -> dict[str, int]:
    return {name: (value >> layout[name].offset) & ((1 << layout[name].width) - 1) for name, _ in layout}


def read_trace(path: str | os.PathLike) -> np.ndarray:
    """The request trace a run wrote: a structured array of ``cycle``, ``addr``, ``write`` per accepted request."""
    return np.fromfile(path, dtype=TRACE_DTYPE)


async def run_program(
    dut,
    *,
    config: SatConfig,
    image: np.ndarray,
    program: Sequence[int],
    budget: int,
    trace: str | os.PathLike | None = None,
) -> SatRun:
    """Run ``program`` on the wrapped accelerator with ``image`` as memory; return the outcome.

    Must run inside a cocotb test whose top is :data:`SAT_TOP` (built by :func:`build_sat`).

    Parameters
    ----------
    dut
        cocotb handle of :data:`SAT_TOP`.
    config : SatConfig
        Gives ``mem_bits``, the descriptor width and the DRAM model's ``mem_latency`` and ``mem_interval``.
    image : numpy.ndarray
        Initial memory, shape ``(n_words, mem_bits // 32)``, uint32, word 0 at address 0.
    program : sequence of int
        Descriptor payloads (``isa.encode``), in order.
    budget : int
        Cycles after which the run stops as timed out.
    trace : path, optional
        Write every accepted memory request there (:func:`read_trace`).

    Raises
    ------
    ValueError
        The image has the wrong shape, a descriptor does not fit, or the budget is not positive.
    """
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

    wpw = config.mem_bits // 32
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[1] != wpw:
        raise ValueError(f"image must have shape (n_words, {wpw}) for mem_bits={config.mem_bits}, not {image.shape}")
    if not 1 <= budget < 1 << 64:
        raise ValueError(f"budget must be a positive number of cycles, not {budget!r}")
    cmd_bits = descriptor_layout(config).size
    for k, value in enumerate(program):
        if not 0 <= int(value) < 1 << cmd_bits:
            raise ValueError(f"descriptor {k} ({value:#x}) does not fit in the {cmd_bits}-bit cmd payload")
    records = ints_to_records([int(v) for v in program], cmd_bits)
    trace_bytes = os.fsencode(trace) if trace is not None else b""
    header = np.array(
        [
            _MAGIC_IN,
            wpw,
            len(image),
            words_for(cmd_bits),
            len(program),
            config.mem_latency,
            config.mem_interval,
            budget & 0xFFFF_FFFF,
            budget >> 32,
            len(trace_bytes),
            0,
            0,
        ],
        dtype="<u4",
    )
    in_path, out_path = Path(os.environ[IN_ENV]), Path(os.environ[OUT_ENV])
    out_path.unlink(missing_ok=True)
    with open(in_path, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(np.ascontiguousarray(image, dtype="<u4").tobytes())
        handle.write(np.ascontiguousarray(records, dtype="<u4").tobytes())
        handle.write(trace_bytes)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    wall = time.perf_counter()
    # The driver ends the run by `budget` cycles; the margin only guards against a broken build.
    await with_timeout(RisingEdge(dut.done), (budget + 16) * CLOCK_NS, "ns")
    sim_s = time.perf_counter() - wall
    run = _read_result(out_path, image.shape, sim_s)
    cocotb.log.info(
        "sat program: %d descriptors, %d cycles (%s) in %.3f s", len(program), run.cycles, run.reason, sim_s
    )
    return run


def _read_result(path: Path, shape: tuple[int, ...], sim_s: float) -> SatRun:
    raw = np.fromfile(path, dtype="<u4")
    h = raw[:_OUT_HEADER]
    if len(h) < _OUT_HEADER or h[0] != _MAGIC_OUT:
        raise RuntimeError(f"{path} is not a SAT driver result file")
    reason, cycles = _REASONS[int(h[1])], int(h[2]) | int(h[3]) << 32
    status_value, counter_words, n_accepted, n_words, wpw, n_outside = (int(x) for x in h[4:10])
    at = _OUT_HEADER
    counters_value = records_to_ints(raw[at : at + counter_words].reshape(1, -1))[0]
    at += counter_words
    accepted = raw[at : at + 2 * n_accepted].view("<u8").tolist()
    at += 2 * n_accepted
    image = raw[at : at + n_words * wpw].reshape(shape).copy()
    at += n_words * wpw
    rows = raw[at : at + n_outside * (1 + wpw)].reshape(n_outside, 1 + wpw)
    counters = _decode(counters_layout(), counters_value)
    return SatRun(
        image=image,
        cycles=cycles,
        status=_decode(status_layout(), status_value),
        counters={name: counters[name] for name in COUNTER_NAMES},
        accepted=[int(c) for c in accepted],
        timed_out=reason == "timeout",
        reason=reason,
        outside={int(r[0]): r[1:].copy() for r in rows},
        reads=int(h[10]),
        writes=int(h[11]),
        sim_s=sim_s,
    )


# ---- build and run ---------------------------------------------------------------------------


def build_sat(component, *, config: SatConfig, name: str = "sat_accel", waves: bool = False):
    """Verilog of ``component`` plus the wrapper and the DPI driver, built (cached) with Verilator.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The accelerator top, or anything with its port list (:func:`~trainforge.hw.sat.ports.accelerator_signature`).
    config : SatConfig
    name : str
        Verilog module name given to ``component``.
    waves : bool
        Build with FST tracing.

    Returns
    -------
    trainforge.sim.verilator.VerilatorBuild
        A model whose top is :data:`SAT_TOP`.
    """
    from trainforge.sim.harness import to_verilog

    return build_verilog(to_verilog(component, name=name), config=config, name=name, waves=waves)


def build_verilog(text: str, *, config: SatConfig, name: str, waves: bool = False):
    """Like :func:`build_sat`, from the accelerator's generated Verilog ``text`` (top module ``name``)."""
    from trainforge.sim.harness import verilog_ports

    return verilator.build(
        text,
        top=SAT_TOP,
        ports=["clk", "rst", "done"],
        waves=waves,
        extra_args=BUILD_ARGS,
        extra_sources={
            f"{SAT_TOP}.sv": sat_wrapper(config, name, verilog_ports(text)),
            DPI_SOURCE.name: DPI_SOURCE.read_text(),
        },
    )


def run_sat_tests(
    component,
    *,
    config: SatConfig,
    test_module: str,
    run_dir: Path,
    seed: int = 1,
    name: str = "sat_accel",
    waves: bool = False,
    testcase: str | None = None,
    timeout: float = 600,
    extra_env: Mapping[str, str] | None = None,
) -> verilator.CocotbRun:
    """Build ``component`` with :func:`build_sat` and run the cocotb tests of ``test_module`` on it.

    The tests find the configuration with ``load_config(SatConfig)`` and call :func:`run_program`;
    the driver's files go into ``run_dir``. Failures are reported in the returned counts, never
    by exiting.
    """
    from trainforge.sim.testbenches.common import CONFIG_ENV, METRICS_ENV

    model = build_sat(component, config=config, name=name, waves=waves)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **(extra_env or {}),
        CONFIG_ENV: config.to_json(),
        METRICS_ENV: str(run_dir / "metrics.jsonl"),
        IN_ENV: str(run_dir / "sat_in.bin"),
        OUT_ENV: str(run_dir / "sat_out.bin"),
    }
    return verilator.run_cocotb(
        model,
        top=SAT_TOP,
        test_module=test_module,
        run_dir=run_dir,
        seed=seed,
        env=env,
        waves=waves,
        testcase=testcase,
        timeout=timeout,
    )
