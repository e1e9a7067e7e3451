"""Time the bit-exact GEMM golden model (one core; best of ``--repeat`` runs).

Usage: ``.venv/bin/python scripts/bench_golden_gemm.py [--size 256] [--repeat 3] [--no-exact]``

Every case is an ``M = N = K = size`` product of random normal operands. The RNE / FP32 cases run in
float32 arithmetic; the directed-rounding and ``flags=True`` cases run the exact FP oracle per step
(skip them with ``--no-exact``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from trainforge.models import nm_compress
from trainforge.models.golden import gemm, sparse_gemm


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall-clock time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description="Time trainforge.models.golden.")
    parser.add_argument("--size", type=int, default=256, help="M = N = K")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (the best is shown)")
    parser.add_argument("--no-exact", action="store_true", help="skip the slow oracle-path cases")
    args = parser.parse_args()
    s = args.size
    torch.manual_seed(0)
    a16, b16 = torch.randn(s, s).half(), torch.randn(s, s).half()
    abf, bbf = a16.bfloat16(), b16.bfloat16()
    chunk = 32
    cases: list[tuple[str, Callable[[], object]]] = [
        ("fp16 sequential rne", lambda: gemm(a16, b16)),
        ("bf16 sequential rne", lambda: gemm(abf, bbf, fmt="bf16")),
        (f"fp16 systolic {chunk} rne", lambda: gemm(a16, b16, order="systolic", chunk=chunk)),
        (f"fp16 chunked {chunk} rne", lambda: gemm(a16, b16, order="chunked", chunk=chunk)),
        ("fp16 tree rne", lambda: gemm(a16, b16, order="tree")),
        (f"fp16 tree {chunk} rne", lambda: gemm(a16, b16, order="tree", chunk=chunk)),
    ]
    kept = {}  # sparse cases: only n / m of the MACs are performed
    for n, m in ((2, 4), (2, 8)):
        values, indices = nm_compress(b16, n, m, dim=0)
        kept[f"fp16 sparse {n}:{m} sequential rne"] = n / m
        cases.append(
            (
                f"fp16 sparse {n}:{m} sequential rne",
                lambda v=values, i=indices, n=n, m=m: sparse_gemm(a16, v, i, n=n, m=m),
            )
        )
    if not args.no_exact:
        cases += [
            ("fp16 sequential rdn (oracle)", lambda: gemm(a16, b16, rounding="rdn")),
            ("fp16 sequential rne flags (oracle)", lambda: gemm(a16, b16, flags=True)),
            ("fp16 tree rdn (oracle)", lambda: gemm(a16, b16, order="tree", rounding="rdn")),
        ]
    print(f"GEMM {s} x {s} x {s}, best of {args.repeat}")
    print(f"{'case':<38}{'seconds':>10}{'M MAC/s':>10}  (MACs performed: n/m of them when sparse)")
    for name, fn in cases:
        t = best_time(fn, args.repeat)
        macs = s**3 * kept.get(name, 1.0)
        print(f"{name:<38}{t:>10.4f}{macs / t / 1e6:>10.1f}")


if __name__ == "__main__":
    main()
