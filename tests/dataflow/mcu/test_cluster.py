"""The cluster: configuration and presets, the core timing rules, and the TCDM bank-conflict model.

Expected cycle counts are worked out by hand in the comments from the rules in docs/mcu.md, not
recorded from the code.
"""

from __future__ import annotations

import pytest

from trainforge.dataflow.mcu.cluster import PRESETS, ClusterConfig
from trainforge.dataflow.mcu.core import CoreSim, Instr, Loop, Timing, count_instructions
from trainforge.dataflow.mcu.tcdm import bank_of, contention
from trainforge.errors import ConfigError
from trainforge.hw.mcu.fp_simd import FPSimdConfig

# ---------------------------------------------------------------------------------------------
# configuration


def test_defaults_are_the_reference_cluster():
    c = ClusterConfig()
    assert (c.cores, c.fpu_count, c.simd_lanes, c.l1_bytes, c.l1_banks) == (8, 8, 2, 128 * 1024, 16)
    assert c.private_fpus
    # the FPU latency comes from the FP16 SIMD datapath RTL's output registers
    assert c.fpu_latency == max(1, FPSimdConfig().pipeline_stages)


def test_presets():
    assert set(PRESETS) >= {"pulp-private", "pulp-shared"}
    shared = ClusterConfig.preset("pulp-shared")
    assert shared.fpu_count == 4
    assert not shared.private_fpus
    assert shared.fpu_share() == 2  # 8 cores on 4 FPUs
    assert shared.fpu_share(1) == 1  # one active core has its FPU alone
    assert ClusterConfig.preset("tutorial").l1_bytes == 256 * 1024
    assert ClusterConfig.preset("pulp-private", cores="4").cores == 4


def test_peak_mac_per_cycle_is_fmas_times_lanes():
    assert ClusterConfig().peak_mac_per_cycle("fp16") == 16
    assert ClusterConfig().peak_mac_per_cycle("fp32") == 8
    assert ClusterConfig.preset("pulp-shared").peak_mac_per_cycle("fp16") == 8
    assert ClusterConfig(simd_lanes=1).peak_mac_per_cycle("bf16") == 8


def test_with_cores_keeps_private_or_shared():
    assert ClusterConfig().with_cores(4).fpu_count == 4
    shared = ClusterConfig.preset("pulp-shared").with_cores(4)
    assert (shared.cores, shared.fpu_count) == (4, 2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cores": 0}, "cores must be an integer in 1..32, not 0"),
        ({"cores": 33}, "cores must be an integer in 1..32, not 33"),
        ({"fpus": 9}, "fpus must be <= cores=8, not 9"),
        ({"fpu_latency": 0}, "fpu_latency must be an integer in 1..4, not 0"),
        ({"simd_lanes": 4}, "simd_lanes must be 1 or 2"),
        ({"l1_banks": 12}, "l1_banks must be a power of two, not 12"),
        ({"l1_bytes": 100}, "l1_bytes must be an integer in 4096..67108864, not 100"),
        ({"dma_bytes_per_cycle": 0}, "dma_bytes_per_cycle must be an integer in 1..1024, not 0"),
    ],
)
def test_invalid_values_are_named(values, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        ClusterConfig(**values)


def test_string_overrides_and_unknown_names():
    assert ClusterConfig.from_mapping({"cores": "4", "fpus": "2"}).fpu_share() == 2
    with pytest.raises(ConfigError, match="cores='four'"):
        ClusterConfig.from_mapping({"cores": "four"})
    with pytest.raises(ConfigError, match="unknown parameter 'wings'"):
        ClusterConfig.from_mapping({"wings": "2"})
    with pytest.raises(ConfigError, match="unknown cluster preset 'gap9'; valid: pulp-private"):
        ClusterConfig.preset("gap9")


# ---------------------------------------------------------------------------------------------
# core timing rules


def ld(dst, ptr="p"):
    return Instr("p.lw", dst=dst, src=(ptr,), unit="load", inc=ptr)


def fma(acc, a, b):
    return Instr("vfmac.h", dst=acc, src=(acc, a, b), unit="fpu")


def test_load_use_stall():
    # lw a; lw b; vfmac acc,a,b: b is used one cycle after its load -> 1 stall, 4 cycles
    stats = CoreSim(Timing()).run([ld("a"), ld("b"), fma("c", "a", "b")])
    assert stats.cycles == 4
    assert stats.stalls["load-use"] == 1
    # with one instruction in between there is no stall
    stats = CoreSim(Timing()).run([ld("a"), ld("b"), Instr("addi", dst="x"), fma("c", "a", "b")])
    assert stats.cycles == 4
    assert stats.stalls["load-use"] == 0


@pytest.mark.parametrize(("latency", "cycles"), [(1, 2), (2, 3), (3, 4), (4, 5)])
def test_fpu_latency_stalls_a_dependent_fma(latency, cycles):
    # two dependent FMAs: the second issues `latency` cycles after the first
    stats = CoreSim(Timing(fpu_latency=latency)).run([fma("c", "a", "b"), fma("c", "a", "b")])
    assert stats.cycles == cycles
    assert stats.stalls["fpu-raw"] == latency - 1


def test_shared_fpu_spaces_fp_instructions():
    # 4 independent FMAs on a core sharing its FPU with one other core: one every 2 cycles
    program = [fma(f"c{i}", "a", "b") for i in range(4)]
    assert CoreSim(Timing(fpu_interval=2)).run(program).cycles == 7
    assert CoreSim(Timing(fpu_interval=1)).run(program).cycles == 4


def test_loop_overheads():
    body = (Instr("addi", dst="x", src=("x",)),)
    # hardware loop: lp.setup + 10 x 1
    assert CoreSim(Timing()).run([Loop(10, body, hw=True)]).cycles == 11
    # software loop: li + 10 x (1 + addi + bnez) + 9 taken-branch penalties of 2
    assert CoreSim(Timing()).run([Loop(10, body, hw=False)]).cycles == 1 + 10 * 3 + 9 * 2
    assert CoreSim(Timing(branch_penalty=0)).run([Loop(10, body, hw=False)]).cycles == 31
    assert CoreSim(Timing()).run([Loop(0, body)]).cycles == 0
    assert count_instructions([Loop(10, body, hw=False)]) == 31


def test_fast_forward_equals_unrolled_issue():
    # a loop nest with loop-carried hazards; the same instructions written out flat must take the
    # same cycles (the flat version cannot use the steady-state shortcut)
    inner = (ld("a", "pa"), ld("b", "pb"), fma("c", "a", "b"), Instr("fadd.h", dst="d", src=("c", "d"), unit="fpu"))
    timing = Timing(fpu_latency=3)
    nested = [
        Loop(
            7,
            (Instr("mv", dst="c", src=("z",)), Loop(13, inner, hw=True), Instr("p.sw", src=("c", "q"), unit="store")),
            hw=True,
        )
    ]
    setup = Instr("lp.setup", unit="ctrl")
    flat = [setup]
    for _ in range(7):
        flat += [Instr("mv", dst="c", src=("z",)), setup, *inner * 13, Instr("p.sw", src=("c", "q"), unit="store")]
    a, b = CoreSim(timing).run(nested), CoreSim(timing).run(flat)
    assert a.instructions == b.instructions
    assert a.cycles == b.cycles
    assert a.stalls == b.stalls


def test_probe_records_the_steady_iteration():
    stats = CoreSim(Timing()).run(
        [
            Loop(
                50,
                (
                    Instr("p.lw", dst="a", src=("pa",), unit="load", inc="pa", stream="A"),
                    ld("b", "pb"),
                    fma("c", "a", "b"),
                ),
                probe=True,
            )
        ]
    )
    assert stats.probe is not None
    assert stats.probe.period == 4
    assert stats.probe.accesses == ((0, "A", 0),)


# ---------------------------------------------------------------------------------------------
# TCDM bank conflicts


def test_bank_of_is_word_interleaved():
    assert [bank_of(a, 16) for a in (0, 3, 4, 60, 64, 68)] == [0, 0, 1, 15, 0, 1]


def _same_stream(cores: int, *, period: int, stride: int, iterations: int, base_step: int = 0):
    return contention(
        period=period,
        accesses=((0, "A", 0),),
        bases=tuple((("A", c * base_step),) for c in range(cores)),
        strides=(("A", stride),),
        iterations=iterations,
        banks=16,
    )


def test_two_cores_one_conflict_then_staggered():
    # cycle 0: both cores ask bank 0, core 0 wins, core 1 retries at cycle 1 and gets it; from then
    # on core 1 is one cycle behind and its accesses (bank i at cycle 2i+1) never meet core 0's
    result = _same_stream(2, period=2, stride=4, iterations=40)
    assert result.per_core == (0, 1)


def test_three_cores_lock_step_spread_out():
    # an access every cycle: core 1 loses once, core 2 twice, then they walk the banks one apart
    result = _same_stream(3, period=1, stride=4, iterations=30)
    assert result.per_core == (0, 1, 2)


def test_a_saturated_bank_serialises():
    # the same word every cycle (stride 0): the bank serves one core per cycle, core 0 has priority,
    # so core 1 waits for all of core 0's 5 accesses
    result = _same_stream(2, period=1, stride=0, iterations=5)
    assert result.per_core == (0, 5)


def test_different_banks_never_conflict():
    # bases one word apart and the same stride: always different banks
    result = _same_stream(8, period=1, stride=4, iterations=100, base_step=4)
    assert result.per_core == (0,) * 8
    assert _same_stream(1, period=1, stride=0, iterations=100).per_core == (0,)


def test_vector_matrix_on_eight_cores_staggers_by_two():
    # vm_T_SIMD parallel over M (K = M = 128, FP16): every core reads A[k] (shared) and its own row
    # of B^T, and both fall in bank k/2 mod 16 -- 2 accesses per 4-cycle iteration. The cores settle
    # 2 cycles apart (core c pays 2c once) and then never meet again.
    result = contention(
        period=4,
        accesses=((0, "A", 0), (1, "B", 0)),
        bases=tuple((("A", 0), ("B", 256 + c * 4096)) for c in range(8)),
        strides=(("A", 4), ("B", 4)),
        iterations=1024,
        banks=16,
    )
    assert result.per_core == (0, 2, 4, 6, 8, 10, 12, 14)
    assert result.per_iteration == 0.0
