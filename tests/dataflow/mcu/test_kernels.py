"""Kernel, transform, autotuner and network models: hand-counted cycles, limits, published anchors.

Hand counts use the rules of docs/mcu.md: one instruction per cycle, a load's result usable 2
cycles after it issues (one load-use stall), an FP result after ``fpu_latency`` cycles, 2 bubble
cycles after a taken branch or ``ret``, hardware loops cost their ``lp.setupi``/``lp.setup`` only,
software loops ``li`` + ``addi``/``bnez`` per iteration. The kernel preamble (real instructions, see
``kernel_program``) is 19 instructions without stalls: 7 argument loads, ``csrr``, ``addi`` + ``srli``
(block size), ``mul`` + ``add`` + ``p.minu`` (share), the two not-taken dispatch branches, and 4 for
the pointers (``mul``/``add`` A row, ``mv`` B, ``mul`` C index ``ci``). Each block row's C address
is ``slli`` + ``add`` of the index (rows after the first step it by M first: ``addi``), each block
ends with ``addi ci`` (its columns), each row of blocks starts with ``mv pbj`` and ends with ``addi
pa_row`` (+ ``addi ci`` to the next block row unless the rows are contiguous in C). A
hardware loop whose body is longer than 15 instructions (``lp.setupi``'s reach) uses ``lp.setup``
with its count in a register set once (``li``) after the pointers. ``ret`` costs 3 cycles.
"""

from __future__ import annotations

import pytest

from trainforge.dataflow.mcu.autotune import LIBRARY_MANAGER, candidates, plan_tiles, tune_step
from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.estimate import estimate, load_workload, trained_layers
from trainforge.dataflow.mcu.kernels import KERNELS, kernel_cycles, kernel_names
from trainforge.dataflow.mcu.layers import GemmStep, layer_kind, layer_steps
from trainforge.dataflow.mcu.transforms import im2row_cycles, transpose_cycles, vector_cycles
from trainforge.errors import UsageError
from trainforge.models.workloads import Layer

PREAMBLE, RET = 19, 3
ONE_CORE = ClusterConfig()

# ---------------------------------------------------------------------------------------------
# hand-counted single-core programs


def test_vm_t_simd_by_hand():
    # N=1, K=8, M=4, B transposed. Per output (4 of them): acc init 1, pointers 3, lp.setupi 1,
    # K/2 = 4 iterations of {lw a, lw b, vfmac} with a load-use stall (4 cycles) = 16, then the
    # lane reduction srli + fadd.h, the address (slli, add) and p.sh, addi ci = 6.
    block = 1 + 3 + 1 + 4 * 4 + 6
    cols = 1 + 4 * block  # hardware loop over the 4 outputs (body 14 instructions: lp.setupi)
    rows = 1 + (1 + cols + 1 + 2)  # software loop, 1 iteration: li, mv pbj, addi pa_row, addi + bnez
    expected = PREAMBLE + rows + RET
    assert expected == 136
    assert kernel_cycles("vm_T_SIMD", n=1, k=8, m=4, cores=1, trans_b=True).cycles == expected


def test_naive_fp32_by_hand():
    # N=2, K=3, M=2. Per output: init 1, pointers 3, lp.setupi 1, 3 x {lw, lw, stall, fmadd.s} = 12,
    # address 2 + store 1, addi ci 1 -> 21; two software-loop rows, the first branch taken (+2).
    block = 1 + 3 + 1 + 3 * 4 + 3 + 1
    cols = 1 + 2 * block
    rows = 1 + 2 * (1 + cols + 1 + 2) + 2
    assert PREAMBLE + rows + RET == 119
    assert kernel_cycles("mm", n=2, k=3, m=2, cores=1, dtype="fp32").cycles == 119


def test_unroll_2x4_by_hand():
    # N=2, K=2, M=4: one 2x4 block. Iteration: 2 A + 4 B loads, 8 fmadd.s, no stall = 14.
    # Block: 8 accumulator inits, 3 pointers, lp.setupi, 2 x 14, row 0 (2 address + 4 stores),
    # row 1 (3 address + 4 stores), addi ci. The block (40 instructions) is too long for lp.setupi:
    # its loop count 1 is set by li. The block row ends with addi pa_row, addi ci.
    block = 8 + 3 + 1 + 2 * 14 + (2 + 4) + (3 + 4) + 1
    rows = 1 + (1 + (1 + block) + 2 + 2)
    assert PREAMBLE + 1 + rows + RET == 84
    assert kernel_cycles("mm_unroll_2x4", n=2, k=2, m=4, cores=1, dtype="fp32").cycles == 84


def test_unroll_2x4_remainders_by_hand():
    # N=3, K=1, M=5: one 2-row block pass (one 2x4 block + a leftover column done naively for both
    # rows), then the leftover row as a 1x4 block + its naive leftover column.
    block_2x4 = 8 + 3 + 1 + 14 + (2 + 4) + (3 + 4) + 1  # 40
    # init, pa, pb; lp.setupi + {lw, lw, stall, fmadd}; address + store (row 1: + addi ix)
    naive_row0, naive_row1 = 3 + (1 + 4) + 3, 3 + (1 + 4) + 4
    left_cols_2 = 1 + (naive_row0 + naive_row1 + 2)  # lp.setup + (2 rows + addi ci, addi pbj)
    main_rows = 1 + (1 + (1 + block_2x4) + left_cols_2 + 2 + 2)
    block_1x4 = 4 + 3 + 1 + (1 + 4 + 4) + (2 + 4) + 1  # 1 A + 4 B loads + 4 fmadd, no stall
    left_cols_1 = 1 + (naive_row0 + 2)
    left_rows = 1 + (1 + (1 + block_1x4) + left_cols_1 + 1 + 2)  # one row: C rows contiguous, no ci step
    # one li: the loop count 1 shared by the three hardware loops too long for lp.setupi
    expected = PREAMBLE + 1 + main_rows + left_rows + RET
    assert expected == 140
    assert kernel_cycles("mm_unroll_2x4", n=3, k=1, m=5, cores=1, dtype="fp32").cycles == expected


def test_simd_2x4_with_odd_k_by_hand():
    # N=1, K=3, M=2, B not transposed: one iteration {lw a, lw b0, lw b1, 2 pv.shuffle.h, 2 vfmac} = 7;
    # the leftover k: lhu a, pack (a,a) (+1 load-use), lw b, vfmac (+1 load-use) = 6 cycles.
    # Constants: the shuffle mask 0x00010001 (lui + addi) and the cols loop count (li): the block
    # (22 instructions) is too long for lp.setupi.
    block = 1 + 3 + 1 + 7 + 6 + 3 + 1
    rows = 1 + (1 + (1 + block) + 1 + 2)
    assert PREAMBLE + 3 + rows + RET == 53
    result = kernel_cycles("mm_fp16_SIMD_2x4", n=1, k=3, m=2, cores=1)
    assert result.cycles == 53
    assert result.kernel == "mm_fp16_SIMD_2x4"


def test_transpose_by_hand():
    # 2 x 3 FP32 on one core: preamble 7, lp.setup, 2 rows of (2 pointer updates, lp.setup,
    # 3 x {lw, stall, sw}), ret 3
    assert transpose_cycles(rows=2, cols=3, dtype="fp32", cluster=ONE_CORE, cores=1).cycles == 7 + 1 + 2 * (3 + 9) + 3


# ---------------------------------------------------------------------------------------------
# inner loops: instruction counts per iteration (the reference's accounting)

# (kernel, trans_b, instructions per iteration, cycles per iteration, MACs per iteration)
INNER = [
    ("mm", False, 3, 4, 1),  # 2 loads + FMA, load-use stall
    ("mm_u2", False, 6, 6, 2),
    ("mm_unroll_2x1", False, 5, 5, 2),
    ("mm_unroll_2x4", False, 14, 14, 8),  # 6 loads + 8 FMA: 4.57 MAC/clk on 8 cores
    ("mm_unroll_4x4", False, 24 + 6, 24 + 6, 16),  # 24 registers: 3 accumulators spilled (lw + sw)
    ("mm_fp16", False, 3, 4, 1),
    ("mm_fp16_SIMD_2x4", False, 7, 7, 4),  # 3 loads + 2 shuffles + 2 vfmac
    ("mm_fp16_SIMD_2x4", True, 5, 5, 4),  # 3 loads + 2 vfmac: 6.4 MAC/clk on 8 cores
    ("mm_fp16_SIMD_4x8", False, 18, 18, 16),  # 6 loads + 4 shuffles + 8 vfmac: ~7.1 MAC/clk
    ("mm_fp16_SIMD_4x8", True, 14, 14, 16),
    ("vm_SIMD_naive", False, 5, 5, 2),  # 3 loads + pack + vfmac
    ("vm_T_SIMD", True, 3, 4, 2),  # 2 loads + vfmac, load-use stall
    ("mm_fp16_dotpex_4x8", True, 14, 14, 16),
    ("mm_fp16_dotpex_4x8", False, 18, 18, 16),  # 6 loads + 4 pair shuffles + 8 vfdotpex
    ("mm_fp16_dotpex_6x8", True, 19, 19, 24),
]


@pytest.mark.parametrize(("name", "trans_b", "instructions", "cycles", "macs"), INNER)
def test_inner_loop_accounting(name, trans_b, instructions, cycles, macs):
    spec = KERNELS[name]
    dtype = spec.fmt
    result = kernel_cycles(name, n=8, k=64, m=8, dtype=dtype, cores=1, trans_b=trans_b)
    assert result.kernel == name
    assert len(result.inner_loop) == instructions
    assert result.inner_cycles == cycles
    assert result.inner_macs == macs


def test_accumulator_raw_when_the_unroll_is_too_small():
    # SIMD_2x4 (not transposed) adds both k-steps into one accumulator back to back: with a
    # 2-cycle FPU the second vfmac waits one cycle; SIMD_4x8 interleaves 4 accumulators: no stall
    for latency, cycles_2x4 in ((1, 7), (2, 8), (3, 9), (4, 10)):
        cluster = ClusterConfig(fpu_latency=latency)
        small = kernel_cycles("mm_fp16_SIMD_2x4", n=8, k=64, m=8, cores=1, cluster=cluster)
        big = kernel_cycles("mm_fp16_SIMD_4x8", n=8, k=64, m=8, cores=1, cluster=cluster)
        assert small.inner_cycles == cycles_2x4
        assert big.inner_cycles == 18


def test_shared_fpu_slows_fpu_bound_kernels():
    shared = ClusterConfig.preset("pulp-shared")
    private = ClusterConfig()
    a = kernel_cycles("mm_fp16_SIMD_4x8", n=64, k=64, m=64, trans_b=True, cluster=private)
    b = kernel_cycles("mm_fp16_SIMD_4x8", n=64, k=64, m=64, trans_b=True, cluster=shared)
    # 6 loads (cycles 0-5), then 8 vfmac at most one per 2 cycles (6, 8, ..., 20): 21 cycles; the
    # compiled order issues all loads first, so the idle FPU slots are not filled
    assert b.inner_cycles == 6 + 2 * 7 + 1
    assert a.inner_cycles == 14
    assert b.cycles > a.cycles
    assert b.mac_per_cycle <= shared.peak_mac_per_cycle("fp16")


# ---------------------------------------------------------------------------------------------
# limits and monotonicity


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_never_above_peak(dtype):
    cluster = ClusterConfig()
    peak = cluster.peak_mac_per_cycle(dtype)
    for name in kernel_names(dtype):
        spec = KERNELS[name]
        for n, k, m in ((1, 128, 128), (64, 64, 64), (17, 33, 9)):
            groups = 8 if spec.parallel == "G" else 1
            for trans_b in spec.layouts:
                r = kernel_cycles(name, n=n, k=k, m=m, groups=groups, dtype=dtype, trans_b=trans_b)
                assert 0 < r.mac_per_cycle <= peak, (name, n, k, m)
                assert r.macs == groups * n * k * m


def test_cycles_grow_with_k_and_shrink_with_cores():
    previous = 0
    for k in range(2, 40):  # (k = 1 falls back to the naive kernel, as the library does)
        c = kernel_cycles("mm_fp16_SIMD_4x8", n=16, k=k, m=16, cores=1).cycles
        assert c > previous
        previous = c
    by_cores = [kernel_cycles("mm_fp16_SIMD_4x8", n=64, k=64, m=64, cores=c, trans_b=True).cycles for c in (1, 2, 4, 8)]
    assert by_cores == sorted(by_cores, reverse=True)
    # more cores than rows leaves cores idle: no faster than one row per core
    assert kernel_cycles("mm_fp16", n=2, k=64, m=64, cores=8).cycles == pytest.approx(
        kernel_cycles("mm_fp16", n=2, k=64, m=64, cores=2).cycles, rel=0.05
    )


def test_library_fallbacks():
    # SIMD_4x8 needs 4 columns and 2 rows per core; SIMD_2x4 two columns and k >= 2
    assert kernel_cycles("mm_fp16_SIMD_4x8", n=16, k=8, m=2).kernel == "mm_fp16_SIMD_2x4"
    assert kernel_cycles("mm_fp16_SIMD_4x8", n=8, k=8, m=8).kernel == "mm_fp16_SIMD_2x4"  # 1 row per core
    assert kernel_cycles("mm_fp16_SIMD_4x8", n=16, k=1, m=8).kernel == "mm_fp16"
    assert kernel_cycles("mm_unroll_2x4", n=16, k=8, m=3, dtype="fp32").kernel == "mm"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "nope"}, "unknown kernel 'nope'"),
        ({"n": 0}, "n must be a positive integer, not 0"),
        ({"dtype": "fp8"}, "dtype must be one of fp32, fp16, bf16, not 'fp8'"),
        ({"name": "mm_unroll_2x4"}, "kernel 'mm_unroll_2x4' is a fp32 kernel"),
        ({"name": "vm_T_SIMD"}, "kernel 'vm_T_SIMD' does not take B not transposed"),
        ({"cores": 9}, "cores must be <= 8"),
    ],
)
def test_kernel_errors(kwargs, message):
    args = {"name": "mm_fp16", "n": 4, "k": 4, "m": 4, "dtype": "fp16", **kwargs}
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        kernel_cycles(args.pop("name"), **args)


def test_simd_kernels_need_simd_lanes():
    with pytest.raises(UsageError, match="needs FP16 SIMD"):
        kernel_cycles("mm_fp16_SIMD_2x4", n=4, k=4, m=4, cluster=ClusterConfig(simd_lanes=1))


def test_bf16_runs_the_fp16_kernels_at_the_same_speed():
    a = kernel_cycles("mm_fp16_SIMD_4x8", n=32, k=32, m=32, dtype="fp16")
    b = kernel_cycles("mm_fp16_SIMD_4x8", n=32, k=32, m=32, dtype="bf16")
    assert a.cycles == b.cycles


# ---------------------------------------------------------------------------------------------
# published anchors (GVSoC measurements from the PULP-TrainLib tutorial): within 10 %


@pytest.mark.parametrize(
    ("name", "trans_b", "cores", "measured"),
    [
        ("vm_naive", False, 1, 67_386),
        ("vm_SIMD_naive", False, 1, 43_611),
        ("vm_T_SIMD", True, 1, 35_268),
        ("vm_T_SIMD", True, 8, 4_620),
    ],
)
def test_tutorial_fc_input_gradient(name, trans_b, cores, measured):
    result = kernel_cycles(name, n=1, k=128, m=128, cores=cores, trans_b=trans_b)
    assert result.cycles == pytest.approx(measured, rel=0.10)


@pytest.mark.parametrize(("name", "measured"), [("mm", 77_491), ("mm_unroll_2x1", 49_884), ("mm_unroll_2x4", 35_465)])
def test_tutorial_fp32_pointwise_forward(name, measured):
    # 8x8x16 -> 16 pointwise forward: A = W (16 x 16), B = X (16 x 64), one core
    result = kernel_cycles(name, n=16, k=16, m=64, cores=1, dtype="fp32")
    assert result.cycles == pytest.approx(measured, rel=0.10)


def test_fp32_peak_near_pulp_trainlib():
    # PULP-TrainLib (SAMOS 2022): up to 4.39 FP32 MAC/clk on 8 cores
    best = max(
        kernel_cycles(name, n=64, k=576, m=256, dtype="fp32", trans_b=tb).mac_per_cycle
        for name in LIBRARY_MANAGER[("fp32", "conv", "fw")]
        for tb in (False, True)
    )
    assert best == pytest.approx(4.39, rel=0.10)


# ---------------------------------------------------------------------------------------------
# transforms and vector work


def test_im2row_costs():
    fp32 = im2row_cycles(pixels=64, channels=8, kh=3, kw=3, dtype="fp32", cluster=ONE_CORE, cores=1)
    fp16 = im2row_cycles(pixels=64, channels=8, kh=3, kw=3, dtype="fp16", cluster=ONE_CORE, cores=1)
    assert fp32.elements == 64 * 8 * 9
    assert fp32.per_element == 5.0  # addi, padding check, load, (stall), store
    assert fp16.per_element == 3.0  # pairs: 6 cycles per 2 elements
    assert fp16.cycles < fp32.cycles
    # the library splits channels over the cores: 3 channels keep 3 cores busy, no more
    three = [
        im2row_cycles(pixels=64, channels=3, kh=3, kw=3, dtype="fp32", cluster=ONE_CORE, cores=c).cycles for c in (3, 8)
    ]
    assert three[0] == three[1]


def test_vector_update_per_element():
    r = vector_cycles(kind="update", stage="update", elements=1000, dtype="fp32", cluster=ONE_CORE, cores=1)
    assert r.per_element == 7.0  # 3 loads, 2 FP ops, 2 stores, no stall
    assert vector_cycles(kind="relu?", stage="ff", elements=0, dtype="fp16", cluster=ONE_CORE).cycles == 0


# ---------------------------------------------------------------------------------------------
# layer mapping and autotuning


def conv(c_in=16, c_out=32, hw=16, k=3, stride=1, groups=1):
    pad = k // 2
    out = (hw + 2 * pad - k) // stride + 1
    return Layer(
        name="c",
        kind="conv",
        rows=out * out,
        c_in=c_in,
        c_out=c_out,
        kernel=(k, k),
        groups=groups,
        weight="w",
        in_spatial=(hw, hw),
        out_spatial=(out, out),
        stride=(stride, stride),
        padding=(pad, pad),
        dilation=(1, 1),
    )


def test_layer_mapping_follows_the_reference_table():
    fw, wg, ig = layer_steps(conv())
    assert (fw.n, fw.k, fw.m) == (32, 9 * 16, 256)
    assert (wg.n, wg.k, wg.m) == (32, 256, 9 * 16)
    assert (ig.n, ig.k, ig.m) == (16, 9 * 32, 256)
    assert [t.kind for t in ig.transforms] == ["im2row", "block_transpose"]
    pw = layer_steps(conv(k=1))
    assert layer_kind(conv(k=1)) == "pointwise"
    assert [(s.n, s.k, s.m, s.b_layout) for s in pw] == [
        (32, 16, 256, "natural"),
        (32, 256, 16, "transposed"),
        (16, 32, 256, "natural"),
    ]
    assert [t.kind for t in pw[2].transforms] == ["transpose"]
    dw = layer_steps(conv(c_in=32, c_out=32, groups=32))
    assert layer_kind(conv(c_in=32, c_out=32, groups=32)) == "depthwise"
    assert [(s.groups, s.n, s.k, s.m) for s in dw] == [(32, 1, 9, 256), (32, 1, 256, 9), (32, 1, 9, 256)]
    # a strided input gradient runs on the dilated dY: 4x the useful MACs
    strided = layer_steps(conv(stride=2), ("ig",))[0]
    assert strided.executed_macs == 4 * strided.macs


def test_library_manager_allows_only_naive_conv_input_gradients():
    ig = layer_steps(conv(), ("ig",))[0]
    assert {name for name, _ in candidates(ig, dtype="fp16", cluster=ONE_CORE, kernels="library")} == {"mm_fp16"}
    assert tune_step(ig, dtype="fp16", kernels="library").kernel == "mm_fp16"
    assert tune_step(ig, dtype="fp16", kernels="all").cycles < tune_step(ig, dtype="fp16", kernels="library").cycles


def test_autotune_picks_the_minimum():
    step = layer_steps(conv(k=1, hw=8), ("wg",))[0]
    choice = tune_step(step, dtype="fp16", kernels="library")
    # brute force: every candidate with its layout cost (B of a pointwise WG is stored transposed)
    costs = []
    for name, tb in candidates(step, dtype="fp16", cluster=ONE_CORE, kernels="library"):
        c = kernel_cycles(name, n=step.n, k=step.k, m=step.m, trans_b=tb).cycles
        if not tb:
            c += transpose_cycles(rows=step.m, cols=step.k, dtype="fp16", cluster=ONE_CORE).cycles
        costs.append(c)
    assert choice.cycles == min(costs)


def test_tiling_when_l1_is_too_small():
    step = GemmStep(layer="x", step="fw", n=64, k=576, m=1024, macs=64 * 576 * 1024)
    plan = plan_tiles(step, dtype="fp16", cluster=ONE_CORE)
    assert plan.count > 1
    assert plan.dma_bytes > 0
    for (g, n, m), _ in plan.tiles:
        assert 2 * g * (n * 576 + 576 * m + n * m) <= ONE_CORE.l1_usable_bytes
    small = GemmStep(layer="x", step="fw", n=8, k=8, m=8, macs=512)
    assert plan_tiles(small, dtype="fp16", cluster=ONE_CORE).count == 1


# ---------------------------------------------------------------------------------------------
# networks


@pytest.fixture(scope="module")
def resnet8():
    return load_workload("resnet8")


def test_resnet8_step_counts_every_training_mac(resnet8):
    result = estimate(resnet8, dtype="fp16", kernels="library")
    assert result.macs == resnet8.macs()  # FW + WG + IG of every layer (no IG for the first)
    assert 0 < result.mac_per_cycle <= ClusterConfig().peak_mac_per_cycle("fp16")
    fp32 = estimate(resnet8, dtype="fp32", kernels="library")
    assert fp32.cycles > result.cycles
    best = estimate(resnet8, dtype="fp16", kernels="all")
    assert best.cycles <= result.cycles
    d = result.to_dict()
    assert {"mac_per_cycle", "cycles", "ms", "layers"} <= set(d)
    assert d["ms"] == pytest.approx(result.cycles / 400e3)


def test_trained_layers(resnet8):
    assert trained_layers(resnet8, "last:2") == ("stack3.shortcut", "fc")
    last = estimate(resnet8, dtype="fp16", trained="last:1", vector_ops=False)
    steps = {s.step for layer in last.layers for s in layer.steps}
    assert steps == {"fw", "wg"}  # only the classifier's weight gradient, no input gradient anywhere
    assert last.macs == resnet8.macs("ff") + 640
    for bad in ("first:2", "last:0", "last:11", "last:x"):
        with pytest.raises(UsageError):
            trained_layers(resnet8, bad)


def test_more_cores_more_mac_per_cycle(resnet8):
    values = [
        estimate(resnet8, dtype="fp16", cluster=ClusterConfig().with_cores(c), vector_ops=False).mac_per_cycle
        for c in (1, 2, 8)
    ]
    assert values == sorted(values)
    assert all(v <= 2 * c for v, c in zip(values, (1, 2, 8), strict=True))


def test_all_library_step_kinds_have_candidates():
    for (fmt, kind, step), names in LIBRARY_MANAGER.items():
        assert names, (fmt, kind, step)
        assert all(KERNELS[n].fmt == fmt and KERNELS[n].origin == "library" for n in names)


def test_shared_fpu_interval_is_the_teams():
    """docs/mcu-core.md rule 3: a team of 8 on 4 FPUs issues FP every 2 cycles per core even when only
    some cores have work (n=2 rows of C on 8 cores), as on the cluster RTL; a single-core call has its
    FPU alone."""
    shared = ClusterConfig.preset("pulp-shared")
    private = ClusterConfig.preset("pulp-private")
    shape = {"n": 2, "k": 16, "m": 8, "dtype": "fp32", "trans_b": True}
    team = kernel_cycles("mm_unroll_1x4", cores=8, cluster=shared, **shape)
    assert team.stalls.get("fpu-share", 0) > 0
    assert team.cycles > kernel_cycles("mm_unroll_1x4", cores=8, cluster=private, **shape).cycles
    alone = kernel_cycles("mm_unroll_1x4", cores=1, cluster=shared, **shape)
    assert alone.stalls.get("fpu-share", 0) == 0
