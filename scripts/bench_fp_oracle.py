"""Measure the throughput of the exact FP oracle (vectors per second, one core).

Usage: ``.venv/bin/python scripts/bench_fp_oracle.py [--n 2097152]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from trainforge.models import fp


def rate(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs, in vectors per second."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def report(name: str, fn: Callable[[], object], n: int) -> None:
    print(f"{name:<28}{rate(fn, n) / 1e6:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Throughput of trainforge.models.fp.")
    parser.add_argument("--n", type=int, default=1 << 21, help="vectors per measurement")
    n = parser.parse_args().n
    print(f"{'operation':<28}{'M vectors/s':>12}")
    configs = [("fp16", None), ("bf16", None), ("fp32", None), ("fp8e5m2", None), ("fp32", "fp16"), ("fp32", "bf16")]
    for fmt, src in configs:
        a, b, c = fp.random_operands("fma", n, fmt=fmt, src_fmt=src, seed=1)
        for mode in ("rne", "rdn"):
            name = f"fma {src + '->' if src else ''}{fmt} {mode}"
            report(name, lambda a=a, b=b, c=c, f=fmt, s=src, m=mode: fp.fma(a, b, c, fmt=f, src_fmt=s, rounding=m), n)
    for fmt in ("fp16", "bf16", "fp32"):
        a, b = fp.random_operands("add", n, fmt=fmt, seed=2)
        report(f"add {fmt}", lambda a=a, b=b, f=fmt: fp.add(a, b, fmt=f, rounding="rne"), n)
        report(f"mul {fmt}", lambda a=a, b=b, f=fmt: fp.mul(a, b, fmt=f, rounding="rne"), n)
    (a,) = fp.random_operands("convert", n, fmt="fp16", src_fmt="fp32", seed=3)
    report("convert fp32->fp16", lambda: fp.convert(a, src_fmt="fp32", dst_fmt="fp16", rounding="rne"), n)


if __name__ == "__main__":
    main()
