"""Cycle models of the shape transforms around the matmuls and of the non-GEMM (vector) work.

Each is an explicit per-core program (:mod:`.core`) over this core's share, issued with the same
timing rules as the kernels, plus the fork and barrier on more than one core:

* **im2row** (PULP-TrainLib's im2col, either layout of the buffer): per output pixel and per
  (channel, kernel row) -- the channels split over the cores, as the library does, so a 3-channel
  input keeps only 3 cores busy -- a hardware loop over the kernel columns copying one element:
  ``addi`` (input column), a not-taken padding check, a load, a store with post-increment -- the
  store reads the loaded value right away, so 5 cycles per element. Padding positions cost the same
  (the check selects a zero).
* **transpose** (``R x C`` to ``C x R``, rows split over the cores): a strided load and a
  post-incremented store per element, 3 cycles with the load-use stall.
* **block transpose** of convolution weights for the input gradient (``C_out x C_in x kh x kw`` to
  ``C_in x C_out x kh x kw``, each kernel flipped by 180 degrees): per ``(c_in, c_out)`` block two
  pointer updates, then the same copy loop as the transpose.
* **vector operations** (activations, normalisation, pooling, residual adds, the optimizer step):
  a per-element instruction list per kind and stage (:data:`VECTOR_BODIES`), scalar in both FP32 and
  FP16 (paper-era PULP-TrainLib), elements split over the cores.
"""

from __future__ import annotations

import dataclasses
import functools

from trainforge.dataflow.mcu.cluster import ClusterConfig, dtype_bytes
from trainforge.dataflow.mcu.core import CoreSim, Instr, Loop, Node
from trainforge.dataflow.mcu.kernels import core_timing, split
from trainforge.errors import UsageError

__all__ = [
    "VECTOR_BODIES",
    "TransformResult",
    "block_transpose_cycles",
    "im2row_cycles",
    "transpose_cycles",
    "vector_cycles",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformResult:
    """Cycles of a transform or vector operation on the cluster.

    Attributes
    ----------
    kind : str
    elements : int
        Elements written (im2row, transposes) or processed (vector operations).
    cores : int
    cycles : int
        Fork + slowest core + barrier.
    per_element : float
        Cycles per element of the slowest core's steady loop (for the documentation).
    """

    kind: str
    elements: int
    cores: int
    cycles: int
    per_element: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


_PRE = (
    Instr("lw", dst="src", src=("args",), unit="load"),
    Instr("lw", dst="dst", src=("args",), unit="load"),
    Instr("lw", dst="n", src=("args",), unit="load"),
    Instr("csrr", dst="id"),
    Instr("mul", dst="start", src=("id", "n")),
    Instr("add", dst="stop", src=("start", "n")),
    Instr("p.minu", dst="stop", src=("stop", "n")),
)
_RET = Instr("ret", unit="ctrl", jump=True)


def _run(programs: list[list[Node]], cluster: ClusterConfig, cores: int) -> int:
    timing = core_timing(cluster, cores)  # the team's FPU share, also for cores without work
    cache: dict[int, int] = {}
    worst = 0
    for program in programs:
        key = id(program)
        if key not in cache:
            cache[key] = CoreSim(timing).run(program).cycles
        worst = max(worst, cache[key])
    return worst + (cluster.fork_cycles + cluster.barrier_cycles if cores > 1 else 0)


def _per_element(body: tuple[Instr, ...], cluster: ClusterConfig) -> float:
    """Steady cycles of one iteration of ``body`` on one core (hardware loop)."""
    timing = core_timing(cluster, 1)
    start = CoreSim(timing).run([Loop(2, body)]).cycles
    return (CoreSim(timing).run([Loop(66, body)]).cycles - start) / 64


def _ld_st(dtype: str) -> tuple[str, str]:
    return ("p.lw", "p.sw") if dtype_bytes(dtype) == 4 else ("p.lh", "p.sh")


def _copy_loop(count: int, dtype: str, *, padding_check: bool) -> Loop:
    ld, st = _ld_st(dtype)
    body: list[Instr] = []
    if padding_check:
        body += [Instr("addi", dst="col", src=("col",)), Instr("bgeu", src=("col", "w_in"), unit="ctrl")]
    body += [
        Instr(ld, dst="x", src=("ps",), unit="load", inc="ps"),
        Instr(st, src=("x", "pd"), unit="store", inc="pd"),
    ]
    return Loop(count, tuple(body), hw=True, label="copy")


def _im2row_pair_body() -> tuple[Instr, ...]:
    return (
        Instr("addi", dst="col", src=("col",)),
        Instr("bgeu", src=("col", "w_in"), unit="ctrl"),
        Instr("bgeu", src=("col", "w_in"), unit="ctrl"),
        Instr("p.lw", dst="x", src=("ps",), unit="load", inc="ps"),
        Instr("p.sw", src=("x", "pd"), unit="store", inc="pd"),
    )


def _im2row_row(kw: int, dtype: str) -> list[Node]:
    """Copy one kernel row of ``kw`` elements: FP16 in pairs (one 32-bit word, two padding checks,
    as the library's FP16 im2col does), an odd last element alone; FP32 element by element."""
    if dtype_bytes(dtype) == 4:
        return [_copy_loop(kw, dtype, padding_check=True)]
    nodes: list[Node] = [Loop(kw // 2, _im2row_pair_body(), hw=True, label="pairs")]
    if kw % 2:
        nodes += list(_copy_loop(1, dtype, padding_check=True).body)
    return nodes


def _programs_by_share(total: int, cores: int, build) -> list[list[Node]]:
    cache: dict[int, list[Node]] = {}
    out = []
    for c in range(cores):
        start, stop = split(total, cores, c)
        share = stop - start
        if share not in cache:
            cache[share] = [*_PRE, *(build(share) if share else ()), _RET]
        out.append(cache[share])
    return out


@functools.lru_cache(maxsize=4096)
def im2row_cycles(
    *, pixels: int, channels: int, kh: int, kw: int, dtype: str, cluster: ClusterConfig, cores: int | None = None
) -> TransformResult:
    """Cycles of an im2row buffer of ``pixels`` rows of ``channels * kh * kw`` elements.

    Parameters
    ----------
    pixels : int
        Output pixels of the convolution (rows of the buffer).
    channels, kh, kw : int
        Channels gathered (split over the cores, as the library does) and the kernel size.
    dtype : str
    cluster : ClusterConfig
    cores : int, optional
        Default: all the cluster's.

    Returns
    -------
    TransformResult
    """
    for name, value in (("pixels", pixels), ("channels", channels), ("kh", kh), ("kw", kw)):
        _check(name, value)
    cores = cluster.cores if cores is None else _check("cores", cores)

    def build(share: int) -> list[Node]:
        row_setup = (
            Instr("p.mac", dst="ps", src=("ch", "hw", "base")),
            Instr("addi", dst="col", src=("c0",)),
            Instr("bgeu", src=("row", "h_in"), unit="ctrl"),
        )
        rows = Loop(share * kh, (*row_setup, *_im2row_row(kw, dtype)), hw=True, label="rows")
        pixel_setup = (
            Instr("addi", dst="wo", src=("wo",)),
            Instr("p.mac", dst="base", src=("ho", "w")),
            Instr("slli", dst="base", src=("base",)),
            Instr("add", dst="base", src=("base", "src")),
        )
        return [Loop(pixels, (*pixel_setup, rows), hw=False, label="pixels")]

    programs = _programs_by_share(channels, cores, build)
    cycles = _run(programs, cluster, cores)
    return TransformResult(
        kind="im2row",
        elements=pixels * channels * kh * kw,
        cores=cores,
        cycles=cycles,
        per_element=_per_element(_copy_loop(64, dtype, padding_check=True).body, cluster)
        if dtype_bytes(dtype) == 4
        else _per_element(_im2row_pair_body(), cluster) / 2,
    )


@functools.lru_cache(maxsize=4096)
def transpose_cycles(
    *, rows: int, cols: int, dtype: str, cluster: ClusterConfig, cores: int | None = None
) -> TransformResult:
    """Cycles of transposing a ``rows x cols`` matrix (rows split over the cores)."""
    _check("rows", rows)
    _check("cols", cols)
    cores = cluster.cores if cores is None else _check("cores", cores)

    def build(share: int) -> list[Node]:
        setup = (Instr("addi", dst="ps", src=("ps",)), Instr("addi", dst="pd", src=("pd",)))
        return [Loop(share, (*setup, _copy_loop(cols, dtype, padding_check=False)), hw=True, label="rows")]

    cycles = _run(_programs_by_share(rows, cores, build), cluster, cores)
    per = _per_element(_copy_loop(64, dtype, padding_check=False).body, cluster)
    return TransformResult(kind="transpose", elements=rows * cols, cores=cores, cycles=cycles, per_element=per)


@functools.lru_cache(maxsize=4096)
def block_transpose_cycles(
    *, c_out: int, c_in: int, window: int, dtype: str, cluster: ClusterConfig, cores: int | None = None
) -> TransformResult:
    """Cycles of reordering conv weights ``C_out x C_in x window`` to ``C_in x C_out x window`` (flipped)."""
    for name, value in (("c_out", c_out), ("c_in", c_in), ("window", window)):
        _check(name, value)
    cores = cluster.cores if cores is None else _check("cores", cores)

    def build(share: int) -> list[Node]:
        block = (
            Instr("p.mac", dst="ps", src=("co", "stride", "w")),
            Instr("addi", dst="ps", src=("ps",)),
            _copy_loop(window, dtype, padding_check=False),
        )
        return [Loop(share, (Loop(c_out, block, hw=True, label="c_out"),), hw=False, label="c_in")]

    cycles = _run(_programs_by_share(c_in, cores, build), cluster, cores)
    per = _per_element(_copy_loop(64, dtype, padding_check=False).body, cluster)
    return TransformResult(
        kind="block_transpose", elements=c_out * c_in * window, cores=cores, cycles=cycles, per_element=per
    )


def _vld(reg: str, ptr: str = "px") -> Instr:
    return Instr("LD", dst=reg, src=(ptr,), unit="load", inc=ptr)


def _vst(reg: str, ptr: str = "py") -> Instr:
    return Instr("ST", src=(reg, ptr), unit="store", inc=ptr)


def _vfp(op: str, dst: str, *src: str) -> Instr:
    return Instr(op, dst=dst, src=src, unit="fpu")


def _valu(op: str, dst: str, *src: str) -> Instr:
    return Instr(op, dst=dst, src=src)


def _vector_bodies() -> dict[tuple[str, str], tuple[Instr, ...]]:
    ld, st, fp, alu = _vld, _vst, _vfp, _valu
    return {
        ("activation", "ff"): (ld("x"), fp("fmax", "y", "x", "zero"), st("y")),
        ("activation", "bp"): (
            ld("x"),
            ld("g", "pg"),
            fp("flt", "t", "zero", "x"),
            alu("neg", "t", "t"),
            alu("and", "y", "g", "t"),
            st("y"),
        ),
        ("normalisation", "ff"): (
            ld("x"),
            fp("fadd", "s", "s", "x"),
            fp("fmadd", "q", "x", "x", "q"),
            ld("x2", "px2"),
            fp("fmadd", "y", "x2", "a", "b"),
            st("y"),
        ),
        ("normalisation", "bp"): (
            ld("x"),
            ld("g", "pg"),
            fp("fadd", "s", "s", "g"),
            fp("fmadd", "q", "g", "x", "q"),
            ld("x2", "px2"),
            ld("g2", "pg2"),
            fp("fmadd", "t", "x2", "a", "b"),
            fp("fmadd", "y", "g2", "c", "t"),
            st("y"),
        ),
        ("normalisation", "wu"): (ld("x"), ld("g", "pg"), fp("fadd", "s", "s", "g"), fp("fmadd", "q", "g", "x", "q")),
        ("elementwise", "ff"): (ld("a"), ld("b", "pg"), fp("fadd", "y", "a", "b"), st("y")),
        ("elementwise", "bp"): (ld("g"), st("g"), st("g", "pz")),
        ("pooling", "ff"): (ld("x"), fp("fadd", "s", "s", "x")),
        ("pooling", "bp"): (fp("fmul", "y", "g", "scale"), st("y")),
        ("reduction", "ff"): (ld("x"), fp("fadd", "s", "s", "x")),
        ("reduction", "bp"): (fp("fmul", "y", "g", "scale"), st("y")),
        ("bias", "ff"): (ld("x"), fp("fadd", "y", "x", "b"), st("y")),
        ("bias", "wu"): (ld("g"), fp("fadd", "s", "s", "g")),
        ("loss", "ff"): (ld("x"), ld("t", "pg"), fp("fsub", "y", "x", "t"), st("y")),
        ("loss", "bp"): (ld("x"), ld("t", "pg"), fp("fsub", "y", "x", "t"), st("y")),
        ("softmax", "ff"): (
            ld("x"),
            fp("fsub", "t", "x", "mx"),
            fp("fexp", "y", "t"),
            fp("fadd", "s", "s", "y"),
            st("y"),
        ),
        ("softmax", "bp"): (ld("y"), ld("g", "pg"), fp("fmul", "t", "y", "g"), fp("fadd", "s", "s", "t"), st("t")),
        ("embedding", "ff"): (ld("x"), st("x")),
        ("embedding", "wu"): (ld("g"), ld("w", "pg"), fp("fadd", "y", "w", "g"), st("y")),
        ("update", "update"): (
            ld("v"),
            ld("g", "pg"),
            ld("w", "pw"),
            fp("fmadd", "v", "v", "mu", "g"),
            st("v", "pv"),
            fp("fnmsub", "w", "lr", "v", "w"),
            st("w", "pw2"),
        ),
    }


VECTOR_BODIES: dict[tuple[str, str], tuple[Instr, ...]] = _vector_bodies()
"""Per-element instruction lists by (kind, stage); ``LD``/``ST`` become ``p.lw``/``p.sw`` or
``p.lh``/``p.sh`` by format. A (kind, stage) not listed uses ``("elementwise", "ff")``."""


@functools.lru_cache(maxsize=4096)
def vector_cycles(
    *, kind: str, stage: str, elements: int, dtype: str, cluster: ClusterConfig, cores: int | None = None
) -> TransformResult:
    """Cycles of a non-GEMM operation over ``elements`` elements (split over the cores).

    Parameters
    ----------
    kind : str
        A workload vector kind (``activation``, ``normalisation``, ...) or ``update``.
    stage : str
        ``ff``, ``bp``, ``wu`` or ``update``.
    elements : int
        Elements processed (0 costs nothing).
    dtype : str
    cluster : ClusterConfig
    cores : int, optional

    Returns
    -------
    TransformResult
    """
    _check("elements", elements, 0)
    cores = cluster.cores if cores is None else _check("cores", cores)
    if elements == 0:
        return TransformResult(kind=f"{kind}:{stage}", elements=0, cores=cores, cycles=0, per_element=0.0)
    ld, st = _ld_st(dtype)
    raw = VECTOR_BODIES.get((kind, stage), VECTOR_BODIES[("elementwise", "ff")])
    body = tuple(
        dataclasses.replace(i, op=ld) if i.op == "LD" else dataclasses.replace(i, op=st) if i.op == "ST" else i
        for i in raw
    )

    def build(share: int) -> list[Node]:
        return [Loop(share, body, hw=True, label="elements")]

    programs = _programs_by_share(elements, cores, build)
    cycles = _run(programs, cluster, cores)
    per = _per_element(body, cluster)
    return TransformResult(kind=f"{kind}:{stage}", elements=elements, cores=cores, cycles=cycles, per_element=per)
