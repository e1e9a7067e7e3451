"""Lowering of the cycle model's kernel programs to one real assembly program per cluster.

:func:`trainforge.dataflow.mcu.kernels.kernel_program` gives the instruction tree a core issues, with
symbolic registers. :func:`kernel_image` prints the single program every core of the cluster runs
(``docs/mcu-core.md``): the preamble, the dispatch on this core's share (``bgeu start, stop, .Lidle``;
``bne stop, end, .Lpart``), the code of a full share, of the partial share (``.Lpart``) and ``ret``
for idle cores (``.Lidle``). It allocates the symbolic registers onto ``x3..x31`` by liveness over the
program's control flow (``a0`` = ``x10`` holds the argument pointer until its last use), lays out A,
B (or B^T), C and the argument structure in the TCDM, and builds or reads the TCDM image.

Assembly conventions (PULP GCC's syntax): registers are printed ``xN``; Xpulp post-increment accesses
as ``p.lw rd, imm(rs1!)``; a hardware loop is ``lp.setupi L, count, end`` or ``lp.setup L, rs1, end``
with ``L`` = 0 for an innermost loop, 1 for one containing another, and ``end`` a label on the **last
instruction of the body** (the instruction whose issue decrements the counter and jumps back);
a software loop is ``li cnt, count`` / ``top:`` / body / ``addi cnt, cnt, -1`` / ``bnez cnt, top``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from trainforge.dataflow.mcu.cluster import ClusterConfig, dtype_bytes
from trainforge.dataflow.mcu.core import Instr, Label, Loop, Node, loop_setup
from trainforge.dataflow.mcu.kernels import FIXED_REGISTERS, program_parts
from trainforge.errors import UsageError

__all__ = [
    "TCDM_BASE",
    "KernelImage",
    "LoweringError",
    "allocate",
    "flatten",
    "format_instr",
    "kernel_image",
]

TCDM_BASE = 0x1000_0000
"""Byte address of the TCDM's first byte (``docs/mcu-core.md``)."""
STACK_BYTES = 256
"""Each core's stack at the top of the TCDM."""
ALLOCATABLE = tuple(range(3, 32))
"""Registers the allocator may use: x3..x31 (``a0`` = x10 only once the argument pointer is dead)."""

_ACCUMULATE = {"vfmac.h", "vfdotpex.s.h", "p.mac", "pv.shuffle2.h"}  # rd is also a source
_FMA4 = {"fmadd.s", "fmadd.h"}
_LOADS = {"lw", "lh", "lhu", "lb", "lbu", "p.lw", "p.lh", "p.lhu"}
_STORES = {"sw", "sh", "sb", "p.sw", "p.sh", "p.sb"}
_BRANCH2 = {"beq", "bne", "blt", "bge", "bltu", "bgeu"}


class LoweringError(UsageError):
    """A kernel program that cannot be lowered (registers, immediates, TCDM size)."""


# ---------------------------------------------------------------------------------------------
# flattening


@dataclasses.dataclass
class Line:
    """One line of the flat program: an instruction (symbolic registers) and the labels before it.

    Attributes
    ----------
    ins : Instr
    labels : list of str
        Labels naming this instruction's address.
    """

    ins: Instr
    labels: list[str] = dataclasses.field(default_factory=list)


def _contains_hw(body: Sequence[Node]) -> bool:
    return any(isinstance(n, Loop) and n.count and (n.hw or _contains_hw(n.body)) for n in body)


def flatten(program: Sequence[Node], prefix: str = ".L") -> list[Line]:
    """The program's lines in text order: loops become their setup instructions and labels."""
    lines: list[Line] = []
    pending: list[str] = []
    counter = [0]

    def emit(ins: Instr) -> None:
        lines.append(Line(ins, list(pending)))
        pending.clear()

    def walk(body: Sequence[Node]) -> None:
        for node in body:
            if isinstance(node, Label):
                pending.append(node.name)
            elif isinstance(node, Instr):
                emit(node)
            elif node.count:
                counter[0] += 1
                tag = f"{prefix}{counter[0]}"
                if node.hw:
                    level = 1 if _contains_hw(node.body) else 0
                    (setup,) = loop_setup(node, level)
                    emit(dataclasses.replace(setup, target=f"{tag}end"))
                    first = len(lines)
                    walk(node.body)
                    if len(lines) == first:
                        raise LoweringError("a hardware loop body needs at least one instruction")
                    last = lines[-1]
                    if any(lb.endswith("end") for lb in last.labels) or getattr(last, "_end", False):
                        raise LoweringError("two hardware loops may not end on the same instruction")
                    last.labels.append(f"{tag}end")
                else:
                    cnt = node.counter or "_cnt"
                    for ins in loop_setup(node, 0):
                        emit(ins)
                    pending.append(f"{tag}top")
                    walk(node.body)
                    emit(Instr("addi", dst=cnt, src=(cnt,), imm=-1))
                    emit(Instr("bnez", src=(cnt,), unit="ctrl", target=f"{tag}top"))

    walk(program)
    if pending:
        raise LoweringError(f"labels {pending} at the end of the program")
    return lines


# ---------------------------------------------------------------------------------------------
# register allocation


def _defs_uses(ins: Instr) -> tuple[set[str], set[str]]:
    defs = {r for r in (ins.dst, ins.inc) if r is not None}
    uses = set(ins.src)
    return defs, uses


def _successors(lines: list[Line]) -> list[list[int]]:
    where = {lb: i for i, line in enumerate(lines) for lb in line.labels}
    succ: list[list[int]] = []
    ends: dict[int, int] = {}  # end index -> start index of a hardware loop
    for i, line in enumerate(lines):
        if line.ins.op in ("lp.setup", "lp.setupi"):
            ends[where[line.ins.target]] = i + 1
    for i, line in enumerate(lines):
        ins = line.ins
        nxt = [i + 1] if i + 1 < len(lines) else []
        if ins.op == "ret":
            nxt = []
        elif ins.op in _BRANCH2 or ins.op in ("bnez", "beqz"):
            nxt = [*nxt, where[ins.target]]
        elif ins.op in ("j", "jal"):
            nxt = [where[ins.target]]
        if i in ends:
            nxt = [*nxt, ends[i]]
        succ.append(nxt)
    return succ


def allocate(lines: list[Line]) -> dict[str, int]:
    """Physical registers for the program's symbolic ones, by liveness and graph colouring.

    Raises
    ------
    LoweringError
        More values live at once than ``x3..x31`` hold.
    """
    succ = _successors(lines)
    du = [_defs_uses(line.ins) for line in lines]
    live_in: list[set[str]] = [set() for _ in lines]
    live_out: list[set[str]] = [set() for _ in lines]
    changed = True
    while changed:
        changed = False
        for i in range(len(lines) - 1, -1, -1):
            out: set[str] = set()
            for s in succ[i]:
                out |= live_in[s]
            defs, uses = du[i]
            new_in = uses | (out - defs)
            if out != live_out[i] or new_in != live_in[i]:
                live_out[i], live_in[i] = out, new_in
                changed = True
    entry = live_in[0] - set(FIXED_REGISTERS)
    if entry:
        raise LoweringError(f"registers read before any write: {sorted(entry)}")
    graph: dict[str, set[str]] = {}
    order: list[str] = []
    for i, (defs, uses) in enumerate(du):
        for r in (*sorted(defs), *sorted(uses)):
            if r not in graph:
                graph[r] = set()
                order.append(r)
        for d in defs:
            for other in live_out[i]:
                if other != d:
                    graph[d].add(other)
                    graph.setdefault(other, set()).add(d)
    colour: dict[str, int] = dict(FIXED_REGISTERS)
    pressure = max((len(s - set(FIXED_REGISTERS)) for s in live_out), default=0)
    for attempt in (order, sorted(order, key=lambda r: -len(graph[r]))):
        colour = {r: c for r, c in FIXED_REGISTERS.items()}
        ok = True
        for r in attempt:
            if r in colour:
                continue
            taken = {colour[o] for o in graph[r] if o in colour}
            free = [c for c in ALLOCATABLE if c not in taken]
            if not free:
                ok = False
                break
            colour[r] = free[0]
        if ok:
            return colour
    raise LoweringError(
        f"cannot allocate registers: up to {pressure} values live at once, x3..x31 hold {len(ALLOCATABLE)}"
    )


# ---------------------------------------------------------------------------------------------
# printing


def _check_imm(ins: Instr, lo: int = -2048, hi: int = 2047) -> int:
    imm = ins.imm or 0
    if not lo <= imm <= hi:
        raise LoweringError(f"immediate {imm} of {ins.op} does not fit {lo}..{hi}")
    return imm


def format_instr(ins: Instr, reg: dict[str, int]) -> str:
    """One instruction in PULP GCC syntax with physical registers."""

    def r(name: str) -> str:
        return f"x{reg[name]}"

    op = ins.op
    if op in _LOADS:
        imm = _check_imm(ins)
        return f"{op} {r(ins.dst)}, {imm}({r(ins.src[0])}{'!' if ins.inc else ''})"
    if op in _STORES:
        imm = _check_imm(ins)
        return f"{op} {r(ins.src[0])}, {imm}({r(ins.src[1])}{'!' if ins.inc else ''})"
    if op == "li":
        return f"li {r(ins.dst)}, {_check_imm(ins)}"
    if op == "lui":
        return f"lui {r(ins.dst)}, {_check_imm(ins, 0, 0xFFFFF)}"
    if op == "csrr":
        return f"csrr {r(ins.dst)}, mhartid"
    if op == "ret":
        return "ret"
    if op in ("lp.setupi", "lp.setup"):
        raise AssertionError("loop setups are printed by the lowering")
    if op in _BRANCH2:
        return f"{op} {r(ins.src[0])}, {r(ins.src[1])}, {ins.target}"
    if op in ("bnez", "beqz"):
        return f"{op} {r(ins.src[0])}, {ins.target}"
    if op in _FMA4:
        acc, a, b = ins.src
        return f"{op} {r(ins.dst)}, {r(a)}, {r(b)}, {r(acc)}"
    if op in _ACCUMULATE:
        if ins.src[0] != ins.dst:
            raise AssertionError(f"{op} accumulates into its destination")
        return f"{op} {r(ins.dst)}, {r(ins.src[1])}, {r(ins.src[2])}"
    operands = [r(ins.dst), *(r(s) for s in ins.src)]
    if ins.imm is not None:
        operands.append(str(_check_imm(ins)))
    return f"{op} {', '.join(operands)}"


def _print(lines: list[Line], reg: dict[str, int], counts: dict[int, int]) -> str:
    out: list[str] = []
    for i, line in enumerate(lines):
        out += [f"{lb}:" for lb in line.labels]
        ins = line.ins
        if ins.op == "lp.setupi":
            text = f"lp.setupi {ins.imm}, {counts[i]}, {ins.target}"
        elif ins.op == "lp.setup":
            text = f"lp.setup {ins.imm}, x{reg[ins.src[0]]}, {ins.target}"
        else:
            text = format_instr(ins, reg)
        out.append("    " + text)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# the image


@dataclasses.dataclass(frozen=True)
class KernelImage:
    """One kernel, lowered: the program text and its TCDM layout.

    Attributes
    ----------
    name, kernel : str
        The kernel asked for and the one that runs (after any fallback).
    n, k, m, groups, cores : int
    trans_b : bool
    dtype : str
    asm : str
        The one program every core runs (entry at its first instruction).
    args_addr : int
        Address of the argument structure (the start value of ``a0``).
    args : bytes
        The argument structure (little-endian words: A, B, C, P, sA, sB, sC; see
        :data:`~trainforge.dataflow.mcu.kernels.ARG_FIELDS`).
    a_addr, b_addr, c_addr : int
        TCDM addresses of A, B (B^T when ``trans_b``) and C.
    a_bytes, b_bytes, c_bytes : int
    tcdm_bytes_needed : int
        Bytes from the TCDM base that the image occupies (the stacks at the top come on top).
    registers : dict of str to int
        The allocation (symbolic name -> x register), for listings.
    """

    name: str
    kernel: str
    n: int
    k: int
    m: int
    groups: int
    cores: int
    trans_b: bool
    dtype: str
    asm: str
    args_addr: int
    args: bytes
    a_addr: int
    b_addr: int
    c_addr: int
    a_bytes: int
    b_bytes: int
    c_bytes: int
    tcdm_bytes_needed: int
    registers: dict[str, int]

    @property
    def _word(self) -> type:
        return np.uint32 if self.dtype == "fp32" else np.uint16

    def a_shape(self) -> tuple[int, ...]:
        """Shape of A: ``(n, k)`` or ``(groups, n, k)``."""
        return (self.n, self.k) if self.groups == 1 else (self.groups, self.n, self.k)

    def b_shape(self) -> tuple[int, ...]:
        """Shape of B as stored: ``(k, m)``, or ``(m, k)`` when ``trans_b`` (with ``groups`` first)."""
        s = (self.m, self.k) if self.trans_b else (self.k, self.m)
        return s if self.groups == 1 else (self.groups, *s)

    def c_shape(self) -> tuple[int, ...]:
        """Shape of C: ``(n, m)`` or ``(groups, n, m)``."""
        return (self.n, self.m) if self.groups == 1 else (self.groups, self.n, self.m)

    def build_tcdm(self, a: np.ndarray, b: np.ndarray, *, size: int | None = None) -> np.ndarray:
        """The TCDM image (bytes from :data:`TCDM_BASE`) holding A, B (as stored), C = 0 and the args.

        Parameters
        ----------
        a, b : numpy.ndarray
            Bit patterns: ``uint16`` for FP16/BF16, ``uint32`` for FP32, of :meth:`a_shape` and
            :meth:`b_shape` (B already transposed when ``trans_b``).
        size : int, optional
            Image bytes (default :attr:`tcdm_bytes_needed`).
        """
        word = self._word
        for name, arr, shape in (("a", a, self.a_shape()), ("b", b, self.b_shape())):
            arr = np.asarray(arr)
            if arr.dtype != word or arr.shape != shape:
                raise UsageError(f"{name} must be {np.dtype(word).name} of shape {shape}, not {arr.dtype} {arr.shape}")
        image = np.zeros(size or self.tcdm_bytes_needed, dtype=np.uint8)
        for addr, arr in ((self.a_addr, a), (self.b_addr, b)):
            raw = np.ascontiguousarray(arr, dtype=np.dtype(word).newbyteorder("<")).view(np.uint8).ravel()
            off = addr - TCDM_BASE
            image[off : off + raw.size] = raw
        off = self.args_addr - TCDM_BASE
        image[off : off + len(self.args)] = np.frombuffer(self.args, dtype=np.uint8)
        return image

    def read_c(self, image: np.ndarray) -> np.ndarray:
        """C's bit patterns (``uint16`` or ``uint32``, :meth:`c_shape`) from a TCDM image."""
        off = self.c_addr - TCDM_BASE
        raw = np.asarray(image, dtype=np.uint8)[off : off + self.c_bytes]
        return raw.view(np.dtype(self._word).newbyteorder("<")).astype(self._word).reshape(self.c_shape())


def _align4(n: int) -> int:
    return -(-n // 4) * 4


def kernel_image(
    name: str,
    *,
    n: int,
    k: int,
    m: int,
    trans_b: bool = False,
    dtype: str = "fp16",
    cores: int = 1,
    cluster: ClusterConfig | None = None,
    groups: int = 1,
    strict: bool = True,
) -> KernelImage:
    """Lower kernel ``name`` to the cluster's program and TCDM layout (see the module docstring).

    Parameters are those of :func:`~trainforge.dataflow.mcu.kernels.kernel_cycles`; ``groups`` > 1
    only for the kernels parallel over groups (depthwise). ``strict=False`` lowers shapes whose 32-bit
    vector accesses are misaligned (odd FP16 row lengths or share starts: the cycle model costs them
    as aligned, the contract's TCDM does not allow them), for timing studies only.

    Raises
    ------
    LoweringError
        Registers that cannot be allocated, an immediate out of range, a layout larger than the
        TCDM (minus the stacks), or (``strict``) a misaligned 32-bit access.
    trainforge.errors.UsageError
        Invalid kernel, shape, dtype or layout (as :func:`kernel_cycles`).
    """
    cluster = ClusterConfig() if cluster is None else cluster
    if cores > cluster.cores:
        raise UsageError(f"cores must be <= {cluster.cores} (the cluster's), not {cores}")
    parts = program_parts(name, n=n, k=k, m=m, groups=groups, trans_b=trans_b, dtype=dtype, cores=cores)
    if strict:
        problem = _misaligned(parts.spec, n=n, k=k, m=m, groups=groups, trans_b=trans_b, cores=cores)
        if problem:
            raise LoweringError(f"{parts.spec.name}: misaligned 32-bit accesses: {problem}")
    e = dtype_bytes(dtype)
    a_bytes, b_bytes, c_bytes = groups * n * k * e, groups * k * m * e, groups * n * m * e
    a_addr = TCDM_BASE
    b_addr = a_addr + _align4(a_bytes)
    c_addr = b_addr + _align4(b_bytes)
    args_addr = c_addr + _align4(c_bytes)
    words = (a_addr, b_addr, c_addr, *parts.args)
    args = b"".join(int(w).to_bytes(4, "little") for w in words)
    needed = args_addr + len(args) - TCDM_BASE
    if needed + STACK_BYTES * cores > cluster.l1_bytes:
        raise LoweringError(
            f"the kernel needs {needed} bytes of TCDM + {STACK_BYTES * cores} of stacks, the cluster has "
            f"{cluster.l1_bytes}"
        )
    program: list[Node] = [*parts.preamble]
    program += [
        Instr("bgeu", src=("start", "stop"), unit="ctrl", target=".Lidle"),
        Instr("bne", src=("stop", "end"), unit="ctrl", target=".Lpart"),
    ]
    if parts.full is not None:
        program += parts.full
    program.append(Label(".Lpart"))
    program += parts.partial if parts.partial is not None else parts.full
    program += [Label(".Lidle"), Instr("ret", src=("ra",), unit="ctrl", jump=True)]
    lines = flatten(program)
    counts = {}
    loops = _loop_counts(program)
    setups = [i for i, line in enumerate(lines) if line.ins.op in ("lp.setupi", "lp.setup")]
    for i, count in zip(setups, loops, strict=True):
        counts[i] = count
        if lines[i].ins.op == "lp.setupi" and not 0 < count < 4096:
            raise LoweringError(f"lp.setupi count {count} out of range")
    reg = allocate(lines)
    asm = _print(lines, reg, counts)
    return KernelImage(
        name=name,
        kernel=parts.spec.name,
        n=n,
        k=k,
        m=m,
        groups=groups,
        cores=cores,
        trans_b=trans_b,
        dtype=dtype,
        asm=asm,
        args_addr=args_addr,
        args=args,
        a_addr=a_addr,
        b_addr=b_addr,
        c_addr=c_addr,
        a_bytes=a_bytes,
        b_bytes=b_bytes,
        c_bytes=c_bytes,
        tcdm_bytes_needed=needed,
        registers={r: x for r, x in reg.items() if r not in FIXED_REGISTERS},
    )


def _misaligned(spec, *, n: int, k: int, m: int, groups: int, trans_b: bool, cores: int) -> str:
    """Why some 32-bit FP16 vector access of the kernel would not be word-aligned ('' if none)."""
    if not spec.simd:
        return ""
    block = -(-{"N": n, "M": m, "G": groups}[spec.parallel] // cores)
    odd_start = spec.parallel == "M" and cores > 1 and block % 2 == 1
    if k % 2 and n * groups > 1:
        return f"A rows of odd length K={k}"
    b_vectors = spec.mode in ("simd", "dotpex", "dw_bitcast") and (trans_b or spec.mode != "dw_bitcast")
    if b_vectors and trans_b and k % 2 and m * groups > 1:
        return f"B^T rows of odd length K={k}"
    if b_vectors and not trans_b and ((m % 2 and k > 1) or odd_start):
        return f"B rows of odd length M={m} or odd column shares"
    # every SIMD epilogue stores pairs of C elements as words
    if m >= 2 and ((m % 2 and n * groups > 1) or odd_start):
        return f"C rows of odd length M={m} or odd column shares"
    return ""


def _loop_counts(program: Sequence[Node]) -> list[int]:
    """Counts of the hardware loops in text order (those that the flattening emits)."""
    out: list[int] = []
    for node in program:
        if isinstance(node, Loop) and node.count:
            if node.hw:
                out.append(node.count)
            out += _loop_counts(node.body)
    return out
