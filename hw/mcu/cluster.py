"""The MCU cluster: ``cores`` cores, one shared ideal instruction memory, the banked TCDM, fork and barrier.

Timing (``docs/mcu-core.md``): ``start`` is high in cycle ``s``; cycle 0 is ``s + 1``. The cores
reset to the start state in cycle ``s`` and may issue from cycle ``fork_cycles`` on (cycle 0 with one
core). In the first cycle ``H`` in which every core is halted, the cluster records
``cycles = H + barrier_cycles`` (no barrier with one core), the contract's kernel cycles, and raises
``done`` after the barrier. Every bank of the TCDM grants, in every cycle, the lowest-index core
whose ready load or store addresses it.

The memories are loaded and read back through the ``host_*`` port while the cluster is idle: one
word per cycle, ``host_target`` 0 = instruction memory, 1 = TCDM (word index from the TCDM base),
read data one cycle after the address. So one Verilator build serves every program.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.errors import ConfigError
from trainforge.hw.mcu.core import COUNTERS, TCDM_BASE, CoreTiming, McuCore

__all__ = ["DEFAULT_IMEM_WORDS", "STACK_BYTES", "McuCluster", "core_timing"]

DEFAULT_IMEM_WORDS = 4096
STACK_BYTES = 256


def core_timing(config: ClusterConfig) -> CoreTiming:
    """The per-core timing of ``config`` (``ConfigError`` for values the RTL cannot implement)."""
    return CoreTiming(
        fpu_latency=config.fpu_latency,
        fpu_share=config.fpu_share(),
        branch_penalty=config.branch_penalty,
        load_latency=config.load_latency,
    )


class McuCluster(wiring.Component):
    """The cluster RTL.

    Parameters
    ----------
    config : ClusterConfig
        ``cores``, ``l1_bytes``, ``l1_banks``, ``fpus``, ``fpu_latency``, ``load_latency`` (must be
        2), ``branch_penalty``, ``fork_cycles``, ``barrier_cycles`` are used.
    imem_words : int
        Instruction memory size in 32-bit words (default 4096).

    Members
    -------
    start : In(1)
    args : In(32)
        The argument structure's address (every core's initial ``a0``).
    done : Out(1)
    cycles : Out(32)
        Kernel cycles of the last run (valid with ``done``).
    host_en, host_target, host_we : In(1)
    host_addr, host_wdata : In(32)
    host_rdata : Out(32)
    counters : Out(32 * len(COUNTERS) * cores)
        Every core's counters, core 0 in the low bits.

    Raises
    ------
    trainforge.errors.ConfigError
        A configuration value the RTL cannot implement.
    """

    def __init__(self, *, config: ClusterConfig, imem_words: int = DEFAULT_IMEM_WORDS) -> None:
        if not isinstance(config, ClusterConfig):
            raise TypeError(f"config must be a ClusterConfig, not {config!r}")
        if isinstance(imem_words, bool) or not isinstance(imem_words, int) or not 16 <= imem_words <= 1 << 20:
            raise ValueError(f"imem_words must be an integer in 16..{1 << 20}, not {imem_words!r}")
        core_timing(config)  # validates
        if config.l1_bytes % (4 * config.l1_banks):
            raise ConfigError(
                f"l1_bytes must be a multiple of 4 * l1_banks = {4 * config.l1_banks}, not {config.l1_bytes}"
            )
        if config.l1_bytes < STACK_BYTES * config.cores:
            raise ConfigError(f"l1_bytes={config.l1_bytes} leaves no room for {config.cores} 256-byte stacks")
        self._config, self._imem_words = config, imem_words
        super().__init__(
            {
                "start": In(1),
                "args": In(32),
                "done": Out(1),
                "cycles": Out(32),
                "host_en": In(1),
                "host_target": In(1),
                "host_we": In(1),
                "host_addr": In(32),
                "host_wdata": In(32),
                "host_rdata": Out(32),
                "counters": Out(32 * len(COUNTERS) * config.cores),
            }
        )

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def imem_words(self) -> int:
        return self._imem_words

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        n, banks = cfg.cores, cfg.l1_banks
        words = cfg.l1_bytes // 4
        rows = words // banks
        bank_bits = (banks - 1).bit_length()
        timing = core_timing(cfg)
        fork = cfg.fork_cycles if n > 1 else 0
        barrier = cfg.barrier_cycles if n > 1 else 0

        cores = []
        for i in range(n):
            core = McuCore(timing=timing, hartid=i, stack_top=TCDM_BASE + cfg.l1_bytes - STACK_BYTES * i)
            m.submodules[f"core{i}"] = core
            cores.append(core)

        # ---- instruction memory: one combinational read port per core, host write + read
        imem = Memory(shape=32, depth=self._imem_words, init=[])
        m.submodules.imem = imem
        iw = imem.write_port()
        ir = imem.read_port()
        m.d.comb += [
            iw.addr.eq(self.host_addr),
            iw.data.eq(self.host_wdata),
            iw.en.eq(self.host_en & self.host_we & ~self.host_target),
            ir.addr.eq(self.host_addr),
        ]
        for core in cores:
            port = imem.read_port(domain="comb")
            m.d.comb += [port.addr.eq(core.imem_addr[2:]), core.imem_data.eq(port.data)]

        # ---- TCDM banks with fixed-priority arbitration
        word_of = [Signal(32, name=f"c{i}_word") for i in range(n)]
        for i, core in enumerate(cores):
            m.d.comb += word_of[i].eq((core.req_addr - TCDM_BASE)[2:] & (words - 1))
        bank_of = [w[:bank_bits] if bank_bits else 0 for w in word_of]
        grant = [Signal(name=f"c{i}_grant") for i in range(n)]
        for i, core in enumerate(cores):
            lower = [cores[j].req_valid & (bank_of[j] == bank_of[i]) for j in range(i)]
            m.d.comb += grant[i].eq(core.req_valid & ~Cat(*lower).any() if lower else core.req_valid)
            m.d.comb += core.req_grant.eq(grant[i])
        read_data = []
        host_word = self.host_addr & (words - 1)
        for b in range(banks):
            mem = Memory(shape=32, depth=rows, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            read_data.append(rp.data)
            with m.If(self.host_en):
                m.d.comb += [
                    wp.addr.eq(host_word >> bank_bits),
                    rp.addr.eq(host_word >> bank_bits),
                    wp.data.eq(self.host_wdata),
                ]
                sel = host_word[:bank_bits] == b if bank_bits else 1
                with m.If(self.host_target & self.host_we & sel):
                    m.d.comb += wp.en.eq(0xF)
            with m.Else():
                for i in reversed(range(n)):  # lowest index last: it wins
                    hit = grant[i] & ((bank_of[i] == b) if bank_bits else 1)
                    with m.If(hit):
                        m.d.comb += [
                            wp.addr.eq(word_of[i] >> bank_bits),
                            rp.addr.eq(word_of[i] >> bank_bits),
                            wp.data.eq(cores[i].req_wdata),
                        ]
                        with m.If(cores[i].req_we):
                            m.d.comb += wp.en.eq(cores[i].req_be)
        data_by_bank = Array(read_data)
        for i, core in enumerate(cores):
            last_bank = Signal(max(1, bank_bits), name=f"c{i}_last_bank")
            if bank_bits:
                m.d.sync += last_bank.eq(bank_of[i])
            m.d.comb += core.rdata.eq(data_by_bank[last_bank])
        host_bank = Signal(max(1, bank_bits))
        host_imem = Signal()
        if bank_bits:
            m.d.sync += host_bank.eq(host_word[:bank_bits])
        m.d.sync += host_imem.eq(~self.host_target)
        m.d.comb += self.host_rdata.eq(Mux(host_imem, ir.data, data_by_bank[host_bank]))

        # ---- fork, run, barrier
        g = Signal(32)
        running = Signal()
        waiting = Signal()
        wait = Signal(range(max(2, barrier + 1)))
        done = Signal()
        cycles = Signal(32)
        all_halted = Cat(*(c.halted for c in cores)).all()
        m.d.comb += [self.done.eq(done), self.cycles.eq(cycles)]
        for i, core in enumerate(cores):
            m.d.comb += [core.init.eq(self.start), core.run.eq(running & (g >= fork)), core.args.eq(self.args)]
            for k in range(len(COUNTERS)):
                lo = 32 * (i * len(COUNTERS) + k)
                m.d.comb += self.counters[lo : lo + 32].eq(core.counters[k])
        with m.If(self.start):
            m.d.sync += [g.eq(0), running.eq(1), waiting.eq(0), done.eq(0)]
        with m.Elif(running):
            m.d.sync += g.eq(g + 1)
            with m.If((g >= fork) & all_halted):
                m.d.sync += [running.eq(0), cycles.eq(g + barrier)]
                if barrier:
                    m.d.sync += [waiting.eq(1), wait.eq(barrier - 1)]
                else:
                    m.d.sync += done.eq(1)
        with m.Elif(waiting):
            with m.If(wait == 0):
                m.d.sync += [waiting.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += wait.eq(wait - 1)
        return m
