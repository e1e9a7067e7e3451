"""Instruction-level timing of one cluster core: the rules an RTL core is held to cycle for cycle.

A kernel is a *program*: a tree of :class:`Instr` and :class:`Loop` nodes with explicit registers.
:class:`CoreSim` issues it in order, one instruction per cycle, with a register scoreboard:

* an instruction issues at ``max(previous issue + 1, ready(source) for every source)``;
* its destination becomes ready ``latency`` cycles after its issue: 1 for ALU, multiply, CSR and
  control instructions, ``load_latency`` for loads (2: one load-use stall), ``fpu_latency`` for FP
  instructions; a post-incremented address register is ready after 1 cycle;
* with a shared FPU, a core issues FP instructions at most every ``fpu_interval`` cycles
  (time-division arbitration between the ``fpu_interval`` cores of one FPU);
* a taken branch (and ``ret``) adds ``branch_penalty`` bubble cycles;
* a hardware loop (``lp.setup``, two nesting levels, as Xpulp) costs one instruction before the loop
  and nothing per iteration; a software loop costs ``li`` before it and ``addi`` + ``bnez`` per
  iteration, the branch taken on every iteration but the last. Loops with no iteration cost nothing.

There are no caches, no branch prediction and no TCDM contention here (one core alone never
conflicts with itself; the cluster model adds contention, :mod:`trainforge.dataflow.mcu.tcdm`).

Simulation is exact and fast: after every loop iteration the *relative* scoreboard (pending ready
times minus the current cycle) is compared with the previous iteration's; once it repeats, every
further iteration is identical, and the remaining ones are added arithmetically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

__all__ = [
    "STALL_CAUSES",
    "UNITS",
    "CoreSim",
    "CoreStats",
    "Instr",
    "Label",
    "Loop",
    "Probe",
    "Timing",
    "count_instructions",
    "fits12",
    "li_instrs",
    "loop_setup",
    "render",
]

UNITS = ("alu", "load", "store", "fpu", "ctrl")
"""Instruction classes: integer/shuffle ALU, TCDM load, TCDM store, FP (scalar and SIMD), control."""

STALL_CAUSES = ("load-use", "fpu-raw", "fpu-share", "branch")
"""Why a core did not issue: a load result not ready, an FP result not ready, the shared FPU busy,
a taken-branch bubble."""


@dataclasses.dataclass(frozen=True, slots=True)
class Instr:
    """One instruction of a kernel program.

    Attributes
    ----------
    op : str
        Mnemonic (``p.lw``, ``vfmac.h``, ``pv.shuffle2.h``, ...), for listings only.
    dst : str or None
        Destination register (a name; the model has as many as the program uses).
    src : tuple of str
        Source registers.
    unit : str
        One of :data:`UNITS`; decides the result latency.
    inc : str or None
        Address register post-incremented by a load or store (Xpulp ``p.lw rd, imm(rs1!)``).
    stream : str or None
        TCDM operand a load or store touches (``"A"``, ``"B"``, ``"C"``), for the contention model.
    offset : int
        Byte offset of the access from the stream's pointer at the start of the loop iteration.
    jump : bool
        A control transfer taken on this core (``ret``, ``j``, a taken conditional branch): adds the
        branch penalty.
    imm : int or None
        The instruction's immediate: a load/store byte offset (from the pointer as the instruction
        finds it), the post-increment of an ``inc`` access (``p.lw rd, imm(rs1!)`` reads
        ``mem[rs1]``, then ``rs1 += imm``), an ALU immediate, a ``li``/``lui`` value.
    target : str or None
        Branch or jump target label.
    """

    op: str
    dst: str | None = None
    src: tuple[str, ...] = ()
    unit: str = "alu"
    inc: str | None = None
    stream: str | None = None
    offset: int = 0
    jump: bool = False
    imm: int | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {self.unit!r}")

    def text(self) -> str:
        """Assembly-like rendering: ``op dst, src...`` with the access and post-increment."""
        operands = [r for r in (self.dst, *self.src) if r is not None]
        if self.imm is not None:
            operands.append(str(self.imm))
        if self.target is not None:
            operands.append(self.target)
        text = f"{self.op} {', '.join(operands)}".rstrip()
        if self.stream is not None:
            text += f"  [{self.stream}{self.offset:+d}]"
        if self.inc is not None:
            text += f"  ({self.inc}!)"
        return text


@dataclasses.dataclass(frozen=True, slots=True)
class Loop:
    """A counted loop.

    Attributes
    ----------
    count : int
        Iterations (0: the loop is skipped and costs nothing).
    body : tuple of Instr and Loop
    hw : bool
        Zero-overhead hardware loop (``lp.setup``) or a software loop (``addi`` + ``bnez``).
    label : str
        Name in listings (``"k"``, ``"cols"``, ...).
    probe : bool
        Record the TCDM access schedule of this loop's steady-state iteration (the kernel's main
        inner loop) for the contention model.
    counter : str
        Software loop: its counter register (``li counter, count`` before the loop, ``addi counter,
        counter, -1`` + ``bnez counter`` per iteration). Hardware loop: the register holding the count
        for ``lp.setup`` (set by the program beforehand), or ``""`` for ``lp.setupi`` (immediate count).
    """

    count: int
    body: tuple[Instr | Loop | Label, ...]
    hw: bool = True
    label: str = ""
    probe: bool = False
    counter: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"loop count must be a non-negative integer, not {self.count!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Label:
    """A branch target in a program (issues nothing).

    Attributes
    ----------
    name : str
    """

    name: str


Node = Instr | Loop | Label


def fits12(value: int) -> bool:
    """True when ``value`` is a 12-bit signed immediate (``addi``, load/store offsets)."""
    return -2048 <= value <= 2047


def li_instrs(dst: str, value: int) -> list[Instr]:
    """``li dst, value`` as the instructions it assembles to: ``addi`` (12-bit) or ``lui`` + ``addi``."""
    value &= 0xFFFFFFFF
    signed = value - (1 << 32) if value & 0x80000000 else value
    if fits12(signed):
        return [Instr("li", dst=dst, imm=signed)]
    hi = ((value + 0x800) >> 12) & 0xFFFFF
    lo = value - ((hi << 12) & 0xFFFFFFFF)
    lo = (lo + 0x800) % 0x1000 - 0x800
    return [Instr("lui", dst=dst, imm=hi), Instr("addi", dst=dst, src=(dst,), imm=lo)]


def loop_setup(loop: Loop, level: int) -> list[Instr]:
    """The instructions a loop issues once before its first iteration (none for 0 iterations)."""
    if loop.count == 0:
        return []
    if loop.hw:
        if loop.counter:
            return [Instr("lp.setup", src=(loop.counter,), unit="ctrl", imm=level)]
        return [Instr("lp.setupi", unit="ctrl", imm=level)]
    return li_instrs(loop.counter or "_cnt", loop.count)


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """The core's timing parameters (taken from :class:`~trainforge.dataflow.mcu.cluster.ClusterConfig`).

    Attributes
    ----------
    load_latency : int
        Issue-to-use distance of a load (2 = one load-use stall).
    fpu_latency : int
        Issue-to-use distance of an FP instruction (1 = no stall).
    branch_penalty : int
        Bubbles after a taken branch.
    fpu_interval : int
        Minimum cycles between two FP instructions of this core (cores sharing its FPU).
    """

    load_latency: int = 2
    fpu_latency: int = 1
    branch_penalty: int = 2
    fpu_interval: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """The TCDM accesses of one steady-state iteration of the probed loop.

    Attributes
    ----------
    period : int
        Cycles of the iteration.
    accesses : tuple of (int, str, int)
        ``(cycle offset in the iteration, stream, byte offset)`` of every load and store.
    """

    period: int
    accesses: tuple[tuple[int, str, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CoreStats:
    """What one core did.

    Attributes
    ----------
    cycles : int
        Cycles from the first issue to the cycle after the last (taken-branch bubbles included).
    instructions : int
        Instructions issued.
    stalls : dict of str to int
        Stall cycles per cause (:data:`STALL_CAUSES`).
    loads, stores, fp_ops : int
        TCDM loads, stores and FP instructions issued.
    probe : Probe or None
        The probed loop's steady-state iteration, when the program has one and it ran.
    """

    cycles: int
    instructions: int
    stalls: dict[str, int]
    loads: int
    stores: int
    fp_ops: int
    probe: Probe | None


class CoreSim:
    """Issue a program on one core (see the module docstring for the rules).

    Parameters
    ----------
    timing : Timing
    """

    def __init__(self, timing: Timing) -> None:
        self._tm = timing
        self.t = 0
        self._ready: dict[str, int] = {}
        self._why: dict[str, str] = {}
        self._fpu_free = 0
        # counters: instructions, loads, stores, fp ops, then one per stall cause
        self._n = [0, 0, 0, 0] + [0] * len(STALL_CAUSES)
        self._probe: Probe | None = None
        self._recording: list[tuple[int, str, int]] | None = None

    # -- issue ---------------------------------------------------------------------------
    def issue(self, ins: Instr, *, taken: bool = False) -> int:
        """Issue one instruction; return its issue cycle."""
        tm = self._tm
        start = self.t
        cycle = start
        why = ""
        ready = self._ready
        for reg in ins.src:
            r = ready.get(reg)
            if r is not None and r > cycle:
                cycle = r
                why = self._why[reg]
        unit = ins.unit
        if unit == "fpu" and self._fpu_free > cycle:
            cycle = self._fpu_free
            why = "fpu-share"
        n = self._n
        if cycle > start:
            n[4 + STALL_CAUSES.index(why)] += cycle - start
        if ins.dst is not None:
            if unit == "load":
                ready[ins.dst] = cycle + tm.load_latency
                self._why[ins.dst] = "load-use"
            elif unit == "fpu":
                ready[ins.dst] = cycle + tm.fpu_latency
                self._why[ins.dst] = "fpu-raw"
            else:
                ready[ins.dst] = cycle + 1
                self._why[ins.dst] = "load-use"  # never stalls: latency 1
        if ins.inc is not None:
            ready[ins.inc] = cycle + 1
            self._why[ins.inc] = "load-use"
        n[0] += 1
        if unit == "load":
            n[1] += 1
        elif unit == "store":
            n[2] += 1
        elif unit == "fpu":
            n[3] += 1
            self._fpu_free = cycle + tm.fpu_interval
        if self._recording is not None and ins.stream is not None:
            self._recording.append((cycle, ins.stream, ins.offset))
        self.t = cycle + 1
        if taken and tm.branch_penalty:
            self.t += tm.branch_penalty
            n[4 + STALL_CAUSES.index("branch")] += tm.branch_penalty
        return cycle

    def run(self, program: Iterable[Node]) -> CoreStats:
        """Issue ``program`` (a sequence of nodes) and return the statistics so far."""
        self._run_body(tuple(program))
        n = self._n
        return CoreStats(
            cycles=self.t,
            instructions=n[0],
            stalls={c: n[4 + i] for i, c in enumerate(STALL_CAUSES)},
            loads=n[1],
            stores=n[2],
            fp_ops=n[3],
            probe=self._probe,
        )

    # -- loops -----------------------------------------------------------------------------
    def _run_body(self, body: Sequence[Node]) -> None:
        for node in body:
            if isinstance(node, Instr):
                self.issue(node, taken=node.jump)
            elif isinstance(node, Loop):
                self._run_loop(node)

    def _signature(self) -> tuple:
        t = self.t
        pending = tuple(sorted((r, v - t, self._why[r]) for r, v in self._ready.items() if v > t))
        return pending, max(0, self._fpu_free - t)

    def _run_loop(self, loop: Loop) -> None:
        n = loop.count
        if n == 0:
            return
        for ins in loop_setup(loop, 0):
            self.issue(ins)
        cnt = loop.counter or "_cnt"
        addi = Instr("addi", dst=cnt, src=(cnt,), unit="alu", imm=-1)
        bnez = Instr("bnez", src=(cnt,), unit="ctrl")
        record = loop.probe and self._probe is None and self._recording is None
        recorded: list[tuple[int, str, int]] = []
        recorded_start = recorded_period = 0
        previous = None
        i = 0
        while i < n:
            t0 = self.t
            counters0 = list(self._n)
            if record:
                self._recording = []
            self._run_body(loop.body)
            if not loop.hw:
                self.issue(addi)
                self.issue(bnez, taken=i < n - 1)
            i += 1
            delta_t = self.t - t0
            if record:
                recorded, recorded_start, recorded_period = self._recording or [], t0, delta_t
                self._recording = None
            signature = self._signature()
            if signature == previous:
                # iteration i started from the same relative state as iteration i-1 did: every
                # further iteration repeats it exactly (a software loop's last one differs: its
                # branch falls through, so it is issued for real)
                if record:
                    record = False  # the recorded iteration is the steady one
                remaining = n - i - (0 if loop.hw else 1)
                if remaining > 0:
                    delta_n = [a - b for a, b in zip(self._n, counters0, strict=True)]
                    self._fast_forward(remaining, delta_t, delta_n)
                    i += remaining
            previous = signature
        if loop.probe and self._probe is None and (recorded or recorded_period):
            accesses = tuple((c - recorded_start, stream, offset) for c, stream, offset in recorded)
            self._probe = Probe(period=recorded_period, accesses=accesses)

    def _fast_forward(self, iterations: int, delta_t: int, delta_n: list[int]) -> None:
        shift = iterations * delta_t
        self.t += shift
        for reg in self._ready:
            self._ready[reg] += shift
        self._fpu_free += shift
        self._n = [a + iterations * d for a, d in zip(self._n, delta_n, strict=True)]


def count_instructions(program: Iterable[Node]) -> int:
    """Instructions a program issues, loop overheads included (no timing)."""
    total = 0
    for node in program:
        if isinstance(node, Instr):
            total += 1
        elif isinstance(node, Loop) and node.count:
            per = count_instructions(node.body) + (0 if node.hw else 2)
            total += len(loop_setup(node, 0)) + node.count * per
    return total


def render(program: Iterable[Node], indent: str = "") -> list[str]:
    """An indented listing of a program (loops with their counts)."""
    lines: list[str] = []
    for node in program:
        if isinstance(node, Instr):
            lines.append(indent + node.text())
        elif isinstance(node, Label):
            lines.append(f"{indent}{node.name}:")
        else:
            kind = "hw loop" if node.hw else "sw loop"
            label = f" {node.label}" if node.label else ""
            lines.append(f"{indent}{kind}{label} x{node.count}:")
            lines.extend(render(node.body, indent + "    "))
    return lines
