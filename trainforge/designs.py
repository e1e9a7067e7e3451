"""The registry of generators: what ``trainforge verilog`` and ``trainforge sim`` can build.

Adding a design means adding one :class:`Design` entry here; the CLI, the harness and the demo
read this table and need no change.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainforge.config import GeneratorConfig
from trainforge.errors import UsageError
from trainforge.sim.bulk import BulkPorts

__all__ = ["DESIGNS", "Design", "get_design"]


def _load(qualified: str) -> Any:
    module, _, attr = qualified.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Design:
    """One generator.

    Attributes
    ----------
    name : str
        Registry name, also the Verilog module name with ``-`` replaced by ``_``.
    summary : str
        One line for ``trainforge designs``.
    component : str
        ``"module:Class"`` of the Amaranth component; constructed as ``Class(config=...)``.
    config : str
        ``"module:Class"`` of its frozen configuration dataclass.
    testbench : str
        Module holding the cocotb tests.
    golden : str
        The golden model the testbench compares against.
    defaults : mapping
        Parameter values that differ from the configuration class's defaults for this design.
    bulk : BulkPorts or None
        When set, the regression runs on the design wrapped by the bulk stream driver
        (:mod:`trainforge.sim.bulk`), whose cocotb top has only ``clk``, ``rst`` and ``done``.
    program : bool
        The design is an accelerator top executing descriptor programs: the regression runs it
        in the program bench (:mod:`trainforge.sim.sat_bench`: command feeder and DRAM model).
    """

    name: str
    summary: str
    component: str
    config: str
    testbench: str
    golden: str
    bulk: BulkPorts | None = None
    program: bool = False
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def top(self) -> str:
        return self.name.replace("-", "_")

    @property
    def config_type(self) -> type[GeneratorConfig]:
        return _load(self.config)

    def make_config(self, overrides: Mapping[str, Any] | None = None) -> GeneratorConfig:
        """The default configuration with ``overrides`` (strings allowed) applied and validated."""
        return self.config_type.from_mapping({**self.defaults, **(overrides or {})})

    def make_component(self, config: GeneratorConfig):
        return _load(self.component)(config=config)


def _fma_variant(name: str, summary: str, ops: str) -> Design:
    """A design that is the FMA generator restricted to some operations (same testbench and golden)."""
    return dataclasses.replace(_FMA, name=name, summary=summary, defaults={"ops": ops})


_FMA = Design(
    name="fp-fma",
    summary="fused multiply-add, FP16/BF16/FP32 or mixed (FP16xFP16+FP32), 5 rounding modes, IEEE flags",
    component="trainforge.hw.fp.fma:FMA",
    config="trainforge.hw.fp.fma:FMAConfig",
    testbench="trainforge.sim.testbenches.tb_fp_fma",
    golden="trainforge.models.fp (exact oracle)",
    bulk=BulkPorts(source="request", sink="response"),
)

DESIGNS: dict[str, Design] = {
    d.name: d
    for d in (
        Design(
            name="nm-prune",
            summary="online N:M pruning unit (SAT 'SORE'): dense weights in, compressed N:M groups out",
            component="trainforge.hw.nm_prune:NMPrune",
            config="trainforge.hw.nm_prune:NMPruneConfig",
            testbench="trainforge.sim.testbenches.tb_nm_prune",
            golden="trainforge.models.nm_compress / nm_mask",
        ),
        _FMA,
        _fma_variant("fp-add", "floating-point adder/subtractor (the FMA datapath with ops=add)", "add"),
        _fma_variant("fp-mul", "floating-point multiplier (the FMA datapath with ops=mul)", "mul"),
        Design(
            name="fp-simd",
            summary="MCU FP16 SIMD datapath: vfadd/vfsub/vfmul/vfmac.h, vfdotpex.s.h, fmadd.s; OR-ed lane flags",
            component="trainforge.hw.mcu.fp_simd:FPSimd",
            config="trainforge.hw.mcu.fp_simd:FPSimdConfig",
            testbench="trainforge.sim.testbenches.tb_fp_simd",
            golden="trainforge.models.fp (exact oracle)",
            bulk=BulkPorts(source="request", sink="response"),
        ),
        Design(
            name="sat",
            summary="SAT accelerator: PE array (OS|WS, dense|N:M), buffers, DMA, prune and update engines",
            component="trainforge.hw.sat.accelerator:SatAccelerator",
            config="trainforge.hw.sat.config:SatConfig",
            testbench="trainforge.sim.testbenches.tb_sat",
            golden="trainforge.models.sat_golden (bit-exact program executor)",
            program=True,
        ),
        Design(
            name="sat-gemm",
            summary="SAT PE array: output-stationary systolic GEMM tiles, dense and N:M sparse (M:1 select)",
            component="trainforge.hw.sat.gemm_array:GemmArray",
            config="trainforge.hw.sat.gemm_array:GemmArrayConfig",
            testbench="trainforge.sim.testbenches.tb_sat_gemm",
            golden="trainforge.models.fp, step by step in the PE's accumulation order",
            bulk=BulkPorts(source="request", sink="response"),
        ),
        Design(
            name="fp-conv",
            summary="float-to-float conversion among FP32/FP16/BF16/FP8, 5 rounding modes, IEEE flags",
            component="trainforge.hw.fp.convert:Convert",
            config="trainforge.hw.fp.convert:ConvertConfig",
            testbench="trainforge.sim.testbenches.tb_fp_conv",
            golden="trainforge.models.fp (exact oracle)",
            bulk=BulkPorts(source="request", sink="response"),
        ),
        Design(
            name="fp-cmp",
            summary="FPnew NONCOMP group: FMIN/FMAX, FEQ/FLT/FLE, FCLASS (RISC-V F 2.2)",
            component="trainforge.hw.fp.noncomp:NonComp",
            config="trainforge.hw.fp.noncomp:NonCompConfig",
            testbench="trainforge.sim.testbenches.tb_fp_cmp",
            golden="trainforge.models.fp (exact oracle)",
            bulk=BulkPorts(source="request", sink="response"),
        ),
    )
}


def get_design(name: str) -> Design:
    """Look a design up; an unknown name is a :class:`UsageError` listing the valid ones."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise UsageError(f"unknown design {name!r}; valid designs: {', '.join(sorted(DESIGNS))}") from None
