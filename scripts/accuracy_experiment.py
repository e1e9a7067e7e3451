"""Test accuracy of N:M sparse training on scikit-learn's digits: dense, SR-STE, BDWP and PGF.

Trains a small MLP and a small CNN on the 8x8 digits that ship inside scikit-learn (nothing is
downloaded) with every method of ``trainforge.models.sparse_training`` and several N:M patterns,
over several seeds, and reports the mean and standard deviation of the final test accuracy as a
Markdown table (printed, and written to ``--out``).

    .venv/bin/python scripts/accuracy_experiment.py              # the full table, 72 runs, ~4 min
    .venv/bin/python scripts/accuracy_experiment.py --quick      # 1 seed, 2 epochs: a smoke test

Deterministic: the train/test split is fixed, each run seeds its own initialisation and
shuffling, runs use one thread each (``--jobs`` processes in parallel) and deterministic
algorithms, so the table does not depend on ``--jobs``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import torch
from torch import nn

from trainforge.models.sparse_training import MaskDecay, Schedule, StructureDecay, sparsify

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "sparse-training-accuracy.md"
BATCH = 32
LR = 0.05
MOMENTUM = 0.9
TEST_FRACTION = 0.3
SPLIT_SEED = 0


@dataclass(frozen=True)
class Variant:
    """One row of the table: a method, a pattern and optionally a PGF schedule."""

    label: str
    method: str
    n: int = 2
    m: int = 4
    # Builds the schedule from the run's total number of optimizer steps.
    schedule: Callable[[int], Schedule] | None = field(default=None, compare=False)
    schedule_name: str = ""
    bwd_mask_source: str | None = None

    @property
    def pattern(self) -> str:
        return "-" if self.method == "dense" else f"{self.n}:{self.m}"

    def ideal_speedup(self) -> float:
        """Ideal training speed-up of the final pattern (equal MACs per GEMM, docs/sparse-training.md)."""
        r = self.n / self.m
        return {"dense": 1.0, "srste": 3 / (r + 2), "bdwp": 3 / (2 * r + 1), "transposable": 3 / (2 * r + 1)}[
            self.method
        ]


def _sdgf(total: int) -> Schedule:
    # Dense -> 7:8 -> 4:8 -> 2:8 over the first 3/4 of training, then 2:8 to the end.
    return StructureDecay.tightening(2, 8, total_steps=max(1, total * 3 // 4))


def _mdgf(total: int) -> Schedule:
    # Pruned weights fade linearly to zero over the first half of training.
    return MaskDecay(kind="linear", rate=2 / total)


VARIANTS = (
    Variant("dense", "dense"),
    *(Variant("srste", "srste", n, m) for n, m in ((2, 4), (1, 4), (2, 8))),
    *(Variant("bdwp", "bdwp", n, m) for n, m in ((2, 4), (1, 4), (2, 8))),
    *(Variant("bdwp, Bi-Mask bwd", "bdwp", n, m, bwd_mask_source="forward") for n, m in ((1, 4), (2, 8))),
    Variant("bdwp + PGF SDGF", "bdwp", 2, 8, _sdgf, "Dense -> 7:8 -> 4:8 -> 2:8 over 3/4 of the steps"),
    Variant("bdwp + PGF MDGF", "bdwp", 2, 8, _mdgf, "linear mask decay, alpha 1 -> 0 over 1/2 of the steps"),
    Variant("transposable", "transposable", 2, 4),
)


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 2x2
        nn.Flatten(), nn.Linear(256, 10),
    )  # fmt: skip


MODELS: dict[str, Callable[[], nn.Module]] = {"MLP 64-256-128-10": mlp, "CNN 16-32-64 conv + fc": cnn}


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed split: (x_train, y_train, x_test, y_test), images (N, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    train, test = train_test_split(
        range(len(y)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=data.target
    )
    return x[train], y[train], x[test], y[test]


def train_once(model_name: str, variant: Variant, seed: int, epochs: int) -> float:
    """Train one model from scratch and return its final test accuracy in percent."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train, x_test, y_test = digits()
    torch.manual_seed(seed)
    model = MODELS[model_name]()
    steps_per_epoch = math.ceil(len(y_train) / BATCH)
    total = epochs * steps_per_epoch
    schedule = variant.schedule(total) if variant.schedule else None
    # pad: the first conv has C_in=1 and the classifiers C_out=10, which no m divides.
    options = {"bwd_mask_source": variant.bwd_mask_source} if variant.bwd_mask_source else {}
    sparsify(model, variant.method, variant.n, variant.m, schedule=schedule, incompatible="pad", **options)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    shuffle = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=shuffle)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            opt.step()
            lr_schedule.step()
            if schedule is not None:
                schedule.step()
    model.eval()
    with torch.no_grad():
        correct = (model(x_test).argmax(dim=1) == y_test).sum().item()
    return 100.0 * correct / len(y_test)


def _job(args: tuple[str, int, int, int]) -> tuple[str, int, int, float]:
    model_name, variant_index, seed, epochs = args
    return model_name, variant_index, seed, train_once(model_name, VARIANTS[variant_index], seed, epochs)


def markdown_table(results: dict[tuple[str, int], list[float]]) -> str:
    lines = [
        "| model | method | N:M | test accuracy % (mean ± std) | vs dense (pp) | ideal speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for model_name in MODELS:
        dense = statistics.fmean(results[model_name, 0])
        for index, variant in enumerate(VARIANTS):
            accs = results[model_name, index]
            mean = statistics.fmean(accs)
            std = f"{statistics.stdev(accs):.2f}" if len(accs) > 1 else "n/a"
            delta = "" if variant.method == "dense" else f"{mean - dense:+.2f}"
            lines.append(
                f"| {model_name} | {variant.label} | {variant.pattern} | {mean:.2f} ± {std} | {delta} | "
                f"{variant.ideal_speedup():.2f}x |"
            )
    return "\n".join(lines)


def cpu_seconds() -> float:
    """User and system CPU time of this process and its finished worker processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in usage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs (a smoke test)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 25, quick 2)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes, one thread each (default 2)")
    out_help = f"Markdown output (default {DEFAULT_OUT.relative_to(DEFAULT_OUT.parents[1])})"
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=out_help)
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 25)
    for name, value in (("--seeds", seeds), ("--epochs", epochs), ("--jobs", args.jobs)):
        if value < 1:
            parser.error(f"{name} must be a positive integer, not {value}")

    jobs = [(model, v, seed, epochs) for model in MODELS for v in range(len(VARIANTS)) for seed in range(seeds)]
    start = time.perf_counter()
    cpu_before = cpu_seconds()
    if args.jobs == 1:
        done = [_job(job) for job in jobs]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_job, jobs))
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    results: dict[tuple[str, int], list[float]] = {}
    for model_name, v, _seed, acc in done:
        results.setdefault((model_name, v), []).append(acc)

    x_train, _, x_test, _ = digits()
    command = "scripts/accuracy_experiment.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    settings = (
        f"Generated by `{command}` (torch {torch.__version__}). {len(x_train)} training and {len(x_test)} test "
        f"images (fixed stratified split); {seeds} seed(s), {epochs} epochs, batch {BATCH}, SGD lr {LR} momentum "
        f"{MOMENTUM} with cosine decay; final-epoch test accuracy; std over seeds (n-1).",
        "Layers whose grouped dimension is not a multiple of m (first conv C_in=1, classifiers C_out=10) are "
        "zero-padded (`incompatible='pad'`).",
        "SR-STE lambda 2e-4 (0 under MDGF). BDWP backward mask from the dense weight; `Bi-Mask bwd`: from the "
        "forward-pruned weight (`bwd_mask_source='forward'`). Transposable: exact 2:4.",
        "Ideal speed-up of the final pattern: 3 / (r + 2) forward-only (srste), 3 / (2r + 1) with both sparse "
        "GEMMs, r = N/M.",
    )
    schedules = [f"{v.label}: {v.schedule_name}." for v in VARIANTS if v.schedule_name]
    timing = (
        f"{len(jobs)} training runs in {elapsed:.0f} s wall, {cpu:.0f} s CPU, "
        f"with {args.jobs} process(es) of 1 thread each."
    )
    text = "\n".join(
        [
            "# N:M sparse training accuracy on scikit-learn digits",
            "",
            *(f"- {line}" for line in (*settings, *schedules)),
            "",
            markdown_table(results),
            "",
            timing,
            "",
        ]
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
