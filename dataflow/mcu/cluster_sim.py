"""Exact joint timing of the cluster's cores running one assembly program (``docs/mcu-core.md``).

Every core executes the program text itself: an integer interpreter computes addresses, loop counts
and branches (FP and SIMD results are not needed for timing and read as 0; loads return the words of
the argument structure and 0 elsewhere; stores are dropped). Timing follows the contract's issue
rules: one instruction per cycle in order, a source register ready 1 cycle after an ALU / shuffle /
``mul`` / ``p.mac`` / ``csrr`` / control write, ``load_latency`` after a load, ``fpu_latency`` after
an FP instruction, a post-incremented pointer after 1; ``branch_penalty`` bubbles after a taken
branch, ``jal``, ``jalr``/``ret``; an FP instruction at most every ``fpu_share`` cycles per core;
hardware loops jump back at no cost. In every cycle each TCDM bank grants the lowest-index core among
those whose next instruction could issue in that cycle and accesses it; a denied core retries the
next cycle (a ``tcdm`` stall).

:func:`simulate` returns each core's halt cycle (the cycle after ``ret`` and its bubbles, counted
from the first cycle a core may issue) and the kernel's cycles: fork + slowest halt + barrier on more
than one core, the halt cycle on one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # program imports kernels, which imports this module lazily
    from trainforge.dataflow.mcu.cluster import ClusterConfig
    from trainforge.dataflow.mcu.program import KernelImage

__all__ = ["EXIT", "ClusterRun", "CoreRun", "CoreState", "Decoded", "decode", "simulate", "simulate_image"]

EXIT = 0xFFFF_FFFC
"""The start value of ``ra``: a core whose next fetch address is EXIT is halted."""

_LOAD_SIZE = {"lw": 4, "lh": 2, "lhu": 2, "lb": 1, "lbu": 1}
_STORE = {"sw", "sh", "sb"}
_FP = re.compile(r"^(f|vf)")
_BR2 = {"beq", "bne", "blt", "bge", "bltu", "bgeu"}
_ACC = {"vfmac.h", "vfdotpex.s.h", "p.mac", "pv.shuffle2.h"}
_M32 = 0xFFFF_FFFF


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """One instruction of the program text, decoded for timing.

    Attributes
    ----------
    op : str
    rd : int
        Destination register (0: none).
    srcs : tuple of int
        Source registers (x0 left out: always ready).
    rs : tuple of int
        The register operands in text order (for the interpreter).
    imm : int
    target : int
        Branch target / hardware-loop end (an instruction index), -1 if none.
    unit : str
        ``alu``, ``load``, ``store``, ``fpu``, ``ctrl``.
    inc : bool
        Post-increment access.
    text : str
    """

    op: str
    rd: int
    srcs: tuple[int, ...]
    rs: tuple[int, ...]
    imm: int
    target: int
    unit: str
    inc: bool
    text: str


def _reg(tok: str) -> int:
    tok = tok.strip()
    if tok == "zero":
        return 0
    if not tok.startswith("x"):
        raise ValueError(f"register expected, not {tok!r}")
    return int(tok[1:])


def decode(asm: str) -> list[Decoded]:
    """Parse program text (the syntax :func:`~trainforge.dataflow.mcu.program.kernel_image` prints)."""
    raw: list[tuple[str, list[str], str]] = []
    labels: dict[str, int] = {}
    for line in asm.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.endswith(":"):
            labels[line[:-1]] = len(raw)
            continue
        op, _, rest = line.partition(" ")
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        raw.append((op, args, line))
    out: list[Decoded] = []
    for op, args, text in raw:
        rd, rs, imm, target, inc = 0, (), 0, -1, False
        if op.removeprefix("p.") in _LOAD_SIZE or op.removeprefix("p.") in _STORE:
            m = re.fullmatch(r"(-?\d+)\((\w+)(!?)\)", args[1])
            if m is None:
                raise ValueError(f"bad address in {text!r}")
            imm, base, inc = int(m.group(1)), _reg(m.group(2)), m.group(3) == "!"
            if op.removeprefix("p.") in _LOAD_SIZE:
                unit, rd, rs = "load", _reg(args[0]), (base,)
            else:
                unit, rs = "store", (_reg(args[0]), base)
            srcs = rs
        elif op in ("li", "lui"):
            unit, rd, imm = "alu", _reg(args[0]), int(args[1], 0)
            srcs = ()
        elif op == "csrr":
            unit, rd, srcs = "alu", _reg(args[0]), ()
        elif op == "ret":
            unit, srcs, rs = "ctrl", (1,), (1,)
        elif op in _BR2:
            unit, rs = "ctrl", (_reg(args[0]), _reg(args[1]))
            srcs, target = rs, labels[args[2]]
        elif op in ("bnez", "beqz"):
            unit, rs = "ctrl", (_reg(args[0]),)
            srcs, target = rs, labels[args[1]]
        elif op == "lp.setupi":
            unit, imm, target, srcs = "ctrl", int(args[1], 0), labels[args[2]], ()
            rd = 0
            rs = (int(args[0]),)
        elif op == "lp.setup":
            unit, target = "ctrl", labels[args[2]]
            srcs = (_reg(args[1]),)
            rs = (int(args[0]), _reg(args[1]))
        else:
            unit = "fpu" if _FP.match(op) else "alu"
            rd = _reg(args[0])
            regs, imms = [], []
            for a in args[1:]:
                (regs if a.startswith("x") or a == "zero" else imms).append(a)
            rs = tuple(_reg(a) for a in regs)
            imm = int(imms[0], 0) if imms else 0
            srcs = (rd, *rs) if op in _ACC else rs
        srcs = tuple(sorted({s for s in srcs if s != 0}))
        out.append(Decoded(op, rd, srcs, tuple(rs), imm, target, unit, inc, text))
    return out


@dataclasses.dataclass
class CoreState:
    """One core's architectural and timing state.

    Attributes
    ----------
    regs : list of int
    pc : int
        Index of the next instruction (``-1`` once halted).
    loops : list of [start, end, count]
        The two hardware loops.
    t : int
        Earliest cycle of the next issue (previous issue + 1, + bubbles).
    ready : list of int
        Cycle each register's value is usable.
    fpu_free : int
    """

    regs: list[int]
    pc: int = 0
    loops: list[list[int]] = dataclasses.field(default_factory=lambda: [[0, -1, 0], [0, -1, 0]])
    t: int = 0
    ready: list[int] = dataclasses.field(default_factory=lambda: [0] * 32)
    fpu_free: int = 0
    instructions: int = 0
    tcdm_stalls: int = 0
    halt: int = -1


def _sx(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v & 0x8000_0000 else v


_ALU = {
    "mv": lambda a, b, i, d: a,
    "addi": lambda a, b, i, d: a + i,
    "add": lambda a, b, i, d: a + b,
    "sub": lambda a, b, i, d: a - b,
    "mul": lambda a, b, i, d: a * b,
    "p.mac": lambda a, b, i, d: d + a * b,
    "p.minu": lambda a, b, i, d: min(a, b),
    "and": lambda a, b, i, d: a & b,
    "andi": lambda a, b, i, d: a & i,
    "or": lambda a, b, i, d: a | b,
    "ori": lambda a, b, i, d: a | i,
    "xor": lambda a, b, i, d: a ^ b,
    "xori": lambda a, b, i, d: a ^ i,
    "slli": lambda a, b, i, d: a << (i & 31),
    "srli": lambda a, b, i, d: a >> (i & 31),
    "srai": lambda a, b, i, d: _sx(a) >> (i & 31),
    "sll": lambda a, b, i, d: a << (b & 31),
    "srl": lambda a, b, i, d: a >> (b & 31),
    "sra": lambda a, b, i, d: _sx(a) >> (b & 31),
    "slt": lambda a, b, i, d: int(_sx(a) < _sx(b)),
    "sltu": lambda a, b, i, d: int(a < b),
    "slti": lambda a, b, i, d: int(_sx(a) < i),
    "sltiu": lambda a, b, i, d: int(a < (i & _M32)),
    "auipc": lambda a, b, i, d: 0,
}


def address(ins: Decoded, st: CoreState) -> int:
    """Byte address a load or store accesses (post-increment accesses: the base register)."""
    base = st.regs[ins.rs[-1]] if ins.unit == "store" else st.regs[ins.rs[0]]
    return base if ins.inc else (base + ins.imm) & _M32


def execute(ins: Decoded, st: CoreState, memory: dict[int, int], core: int) -> tuple[int, bool]:
    """Execute one instruction's integer semantics; return the next pc and whether it is taken
    (a control transfer that costs the branch penalty)."""
    r = st.regs
    op = ins.op
    nxt = st.pc + 1
    taken = False
    val: int | None = None
    if ins.unit == "load":
        addr = address(ins, st)
        size = _LOAD_SIZE[op.removeprefix("p.")]
        word = memory.get(addr & ~3, 0)
        v = (word >> (8 * (addr & 3))) & ((1 << (8 * size)) - 1)
        if op.removeprefix("p.") in ("lh", "lb") and v >> (8 * size - 1):
            v -= 1 << (8 * size)
        if ins.inc:
            r[ins.rs[0]] = (r[ins.rs[0]] + ins.imm) & _M32
        val = v
    elif ins.unit == "store":
        if ins.inc:
            r[ins.rs[1]] = (r[ins.rs[1]] + ins.imm) & _M32
    elif op in ("li",):
        val = ins.imm
    elif op == "lui":
        val = ins.imm << 12
    elif op == "csrr":
        val = core
    elif op == "ret":
        target = r[1] & ~1
        nxt = -1 if target == EXIT else target // 4
        taken = True
    elif op in _BR2 or op in ("bnez", "beqz"):
        a = r[ins.rs[0]]
        b = r[ins.rs[1]] if op in _BR2 else 0
        cond = {
            "beq": a == b,
            "bne": a != b,
            "bnez": a != b,
            "beqz": a == b,
            "blt": _sx(a) < _sx(b),
            "bge": _sx(a) >= _sx(b),
            "bltu": a < b,
            "bgeu": a >= b,
        }[op]
        if cond:
            nxt, taken = ins.target, True
    elif op in ("lp.setupi", "lp.setup"):
        level = ins.rs[0]
        count = ins.imm if op == "lp.setupi" else r[ins.rs[1]]
        st.loops[level] = [st.pc + 1, ins.target, count]
    elif ins.unit == "fpu" or op.startswith("pv."):
        val = 0  # FP / SIMD values do not steer control or addresses
    else:
        a = r[ins.rs[0]] if ins.rs else 0
        b = r[ins.rs[1]] if len(ins.rs) > 1 else ins.imm & _M32
        val = _ALU[op](a, b, ins.imm, r[ins.rd])
    if val is not None and ins.rd:
        r[ins.rd] = val & _M32
    # hardware loops: the instruction at a loop's end with its counter > 1 jumps back (inner first)
    if not taken:
        for lp in st.loops:
            if lp[1] == st.pc and lp[2] > 0:
                if lp[2] > 1:
                    lp[2] -= 1
                    nxt = lp[0]
                else:
                    lp[2] = 0
                break
    return nxt, taken


@dataclasses.dataclass(frozen=True)
class CoreRun:
    """One core's run.

    Attributes
    ----------
    cycles : int
        Its halt cycle (from the first cycle it may issue).
    instructions : int
    tcdm_stalls : int
        Cycles it was denied a bank.
    """

    cycles: int
    instructions: int
    tcdm_stalls: int


@dataclasses.dataclass(frozen=True)
class ClusterRun:
    """The joint run of all cores.

    Attributes
    ----------
    cycles : int
        Kernel cycles: fork + slowest halt + barrier (more than one core), the halt (one core).
    cores : tuple of CoreRun
    """

    cycles: int
    cores: tuple[CoreRun, ...]


def _issue_time(ins: Decoded, st: CoreState) -> int:
    t = st.t
    for s in ins.srcs:
        if st.ready[s] > t:
            t = st.ready[s]
    if ins.unit == "fpu" and st.fpu_free > t:
        t = st.fpu_free
    return t


def simulate(
    program: Sequence[Decoded] | str,
    *,
    cores: int,
    args_addr: int,
    args: bytes,
    l1_bytes: int,
    banks: int,
    load_latency: int = 2,
    fpu_latency: int = 1,
    branch_penalty: int = 2,
    fpu_share: int = 1,
    fork_cycles: int = 0,
    barrier_cycles: int = 0,
    max_instructions: int = 50_000_000,
) -> ClusterRun:
    """Run ``program`` on ``cores`` cores from the contract's start state (see the module docstring).

    Parameters
    ----------
    program : str or sequence of Decoded
    cores : int
    args_addr : int
        Start value of ``a0``.
    args : bytes
        The argument structure (the only memory the interpreter reads values from).
    l1_bytes : int
        TCDM size (the stacks sit at its top).
    banks : int
        TCDM banks.
    load_latency, fpu_latency, branch_penalty, fpu_share : int
        Issue timing (:class:`~trainforge.dataflow.mcu.cluster.ClusterConfig`).
    fork_cycles, barrier_cycles : int
        Added when ``cores > 1``.
    max_instructions : int
        Safety limit on issued instructions.

    Returns
    -------
    ClusterRun
    """
    from trainforge.dataflow.mcu.program import STACK_BYTES, TCDM_BASE

    code = decode(program) if isinstance(program, str) else list(program)
    memory = {args_addr + 4 * i: int.from_bytes(args[4 * i : 4 * i + 4], "little") for i in range(len(args) // 4)}
    states = []
    for c in range(cores):
        regs = [0] * 32
        regs[1], regs[2], regs[10] = EXIT, TCDM_BASE + l1_bytes - STACK_BYTES * c, args_addr
        states.append(CoreState(regs=regs))
    cand = [_issue_time(code[0], st) for st in states]
    running = set(range(cores))
    issued = 0
    while running:
        now = min(cand[c] for c in running)
        granted: set[int] = set()
        for c in sorted(running):
            if cand[c] != now:
                continue
            st = states[c]
            ins = code[st.pc]
            if ins.unit in ("load", "store"):
                bank = (address(ins, st) >> 2) % banks
                if bank in granted:
                    st.tcdm_stalls += 1
                    cand[c] = now + 1
                    continue
                granted.add(bank)
            _issue(ins, st, now, memory, c, load_latency, fpu_latency, branch_penalty, fpu_share)
            issued += 1
            if st.pc < 0:
                running.discard(c)
            else:
                cand[c] = _issue_time(code[st.pc], st)
        if issued > max_instructions:
            raise RuntimeError(f"more than {max_instructions} instructions issued")
    runs = tuple(CoreRun(st.halt, st.instructions, st.tcdm_stalls) for st in states)
    slowest = max(r.cycles for r in runs)
    cycles = fork_cycles + slowest + barrier_cycles if cores > 1 else slowest
    return ClusterRun(cycles=cycles, cores=runs)


def _issue(
    ins: Decoded,
    st: CoreState,
    now: int,
    memory: dict[int, int],
    core: int,
    load_latency: int,
    fpu_latency: int,
    branch_penalty: int,
    fpu_share: int,
) -> None:
    nxt, taken = execute(ins, st, memory, core)
    if ins.rd:
        st.ready[ins.rd] = now + (load_latency if ins.unit == "load" else fpu_latency if ins.unit == "fpu" else 1)
    if ins.inc:
        st.ready[ins.rs[-1] if ins.unit == "store" else ins.rs[0]] = now + 1
    if ins.unit == "fpu":
        st.fpu_free = now + fpu_share
    st.instructions += 1
    st.t = now + 1 + (branch_penalty if taken else 0)
    st.pc = nxt
    if nxt < 0:
        st.halt = st.t


def simulate_image(image: KernelImage, cluster: ClusterConfig) -> ClusterRun:
    """:func:`simulate` a lowered kernel (:func:`~trainforge.dataflow.mcu.program.kernel_image`) on
    ``image.cores`` cores with ``cluster``'s memory and timing parameters."""
    return simulate(
        image.asm,
        cores=image.cores,
        args_addr=image.args_addr,
        args=image.args,
        l1_bytes=cluster.l1_bytes,
        banks=cluster.l1_banks,
        load_latency=cluster.load_latency,
        fpu_latency=cluster.fpu_latency,
        branch_penalty=cluster.branch_penalty,
        fpu_share=cluster.fpu_share(image.cores),
        fork_cycles=cluster.fork_cycles,
        barrier_cycles=cluster.barrier_cycles,
    )
