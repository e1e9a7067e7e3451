"""Check an FMA-family unit on the RTL with a Berkeley TestFloat vector file.

``testfloat_gen`` writes one case per line (``a b c result flags`` for ``f16_mulAdd``, ``a b result
flags`` for ``f16_add`` and ``f16_mul``, hex, flags in RISC-V ``fflags`` order); a file made by
:func:`trainforge.models.testfloat.generate_vectors` has the same layout.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainforge.config import GeneratorConfig
from trainforge.designs import Design, get_design
from trainforge.errors import UsageError
from trainforge.models.fp import ROUNDING_MODES
from trainforge.models.testfloat import read_vectors
from trainforge.sim.harness import SimResult, simulate

__all__ = ["VECTOR_OPS", "VectorCheck", "check_vector_file"]

#: Operations each design checks from a vector file; the first is the default.
VECTOR_OPS: dict[str, tuple[str, ...]] = {
    "fp-fma": ("fmadd", "fmsub", "fnmsub", "fnmadd"),
    "fp-add": ("add", "sub"),
    "fp-mul": ("mul",),
}
_ARITY = {"fmadd": 3, "fmsub": 3, "fnmsub": 3, "fnmadd": 3, "add": 2, "sub": 2, "mul": 2}


@dataclass(frozen=True)
class VectorCheck:
    """Outcome of a vector-file check: counts, speed and the first mismatching lines."""

    vectors: int
    mismatches: int
    vectors_per_s: float
    first_mismatches: list[str] = field(default_factory=list)
    sim: SimResult | None = None


def check_vector_file(
    design: str | Design,
    config: GeneratorConfig,
    path: str | Path,
    *,
    rounding: str,
    op: str | None = None,
    seed: int = 1,
) -> VectorCheck:
    """Run every line of ``path`` through ``design`` on Verilator; compare with the file's answers.

    Raises
    ------
    trainforge.errors.UsageError
        The design takes no vector files, the operation or rounding mode is unknown, or the file
        is missing or malformed (the message names the line).
    """
    design = get_design(design) if isinstance(design, str) else design
    if design.name not in VECTOR_OPS:
        raise UsageError(f"{design.name} does not take vector files; designs that do: {', '.join(VECTOR_OPS)}")
    ops = VECTOR_OPS[design.name]
    op = op or ops[0]
    if op not in ops:
        raise UsageError(f"{design.name} checks operations {', '.join(ops)} from a vector file, not {op!r}")
    if rounding not in ROUNDING_MODES:
        raise UsageError(f"--rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
    columns = read_vectors(path, _ARITY[op])
    if len(columns["result"]) == 0:
        raise UsageError(f"{path} holds no vectors")
    with tempfile.TemporaryDirectory(prefix="trainforge-vectors-") as tmp:
        npz = Path(tmp) / "vectors.npz"
        np.savez(npz, **columns)
        spec = {"npz": str(npz), "op": op, "rounding": rounding}
        result = simulate(
            design,
            config,
            seed=seed,
            test_module="trainforge.sim.testbenches.tb_fp_vectors",
            extra_env={"TRAINFORGE_VECTORS": json.dumps(spec)},
            check=False,
        )
        metrics = next((m for m in result.metrics if m["test"] == "testfloat_file"), None)
        if metrics is None:
            result.raise_for_failure()
            raise UsageError(f"the vector run of {path} recorded no result; log: {result.log}")
    return VectorCheck(
        vectors=metrics["vectors"],
        mismatches=metrics["mismatches"],
        vectors_per_s=metrics["vectors_per_s"],
        first_mismatches=metrics["first_mismatches"],
        sim=result,
    )
