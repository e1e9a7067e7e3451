"""Random floating-point stimulus that exercises the corners: ties, zeros, infinities, subnormals, NaN."""

from __future__ import annotations

import torch

from trainforge.hw.fp.formats import FloatFormat

__all__ = ["corner_case_floats"]


def corner_case_floats(numel: int, fmt: FloatFormat, generator: torch.Generator, *, nan: bool = True) -> torch.Tensor:
    """Return ``numel`` values of ``fmt`` (as its PyTorch dtype) mixing ordinary and corner values.

    About half are ordinary normals of both signs drawn from a small pool, so that equal
    magnitudes (ties) are common; the rest are +-0, +-inf, subnormals, the largest finite
    values, and (if ``nan``) quiet and signalling NaNs with random payloads.
    """
    if fmt.torch_dtype is None:
        raise ValueError(f"format {fmt.name} has no PyTorch dtype")
    width = fmt.width
    int_dtype = {16: torch.int16, 32: torch.int32}[width]
    exp_all_ones = ((1 << fmt.exp_bits) - 1) << fmt.man_bits
    man_mask = (1 << fmt.man_bits) - 1

    def rand_bits(bits: int) -> torch.Tensor:
        return torch.randint(0, 1 << bits, (numel,), generator=generator, dtype=torch.int64)

    pool = rand_bits(width - 1) % (exp_all_ones - (1 << fmt.man_bits)) + (1 << fmt.man_bits)
    pool = pool[torch.randint(0, max(1, numel // 4), (numel,), generator=generator)]  # repeats -> ties
    candidates = [
        pool,  # normals, often repeated
        rand_bits(width - 1) % exp_all_ones,  # any finite magnitude
        torch.zeros(numel, dtype=torch.int64),  # zero
        torch.full((numel,), exp_all_ones, dtype=torch.int64),  # infinity
        rand_bits(fmt.man_bits) % man_mask + 1,  # subnormal
        torch.full((numel,), exp_all_ones - 1, dtype=torch.int64),  # largest finite
    ]
    weights = [40.0, 30.0, 8.0, 5.0, 10.0, 3.0]
    if nan:
        candidates.append(exp_all_ones | (rand_bits(fmt.man_bits) % man_mask + 1))
        weights.append(4.0)
    choice = torch.multinomial(torch.tensor(weights), numel, replacement=True, generator=generator)
    magnitude = torch.stack(candidates)[choice, torch.arange(numel)]
    sign = rand_bits(1) << (width - 1)
    raw = magnitude | sign
    # Reinterpret the low `width` bits as the signed integer type, then as the float type.
    raw = torch.where(raw >= 1 << (width - 1), raw - (1 << width), raw)
    return raw.to(int_dtype).view(fmt.torch_dtype)
