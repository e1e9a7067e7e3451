"""What every ``trainforge`` command shares: error reporting and the ``--nm`` / ``--hw`` arguments.

The main CLI (:mod:`trainforge.cli`) and its sub-commands (``cli_mcu``, ``cli_cosim``,
``cli_validate``, ``cli_estimate``, ``cli_sweep``) import these, so a user mistake looks the same
everywhere: one ``trainforge: error:`` line and exit code 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from trainforge.errors import TrainforgeError, UsageError

__all__ = ["err", "load_hw", "parse_nm", "reports_errors"]

err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn a :class:`TrainforgeError` into one ``trainforge: error:`` line and an exit code.

    :class:`UsageError` (a user mistake) exits 2; any other :class:`TrainforgeError` exits 1.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrainforgeError as exc:
            first, *rest = str(exc).splitlines() or [type(exc).__name__]
            err.print(f"trainforge: error: {first}", markup=False)
            for line in rest:
                err.print(f"  {line}", markup=False)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None

    return wrapper  # type: ignore[return-value]


def parse_nm(text: str) -> tuple[int, int]:
    """``"N:M"`` as ``(n, m)``; anything else is a :class:`UsageError` (ranges are the caller's to check)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--nm must look like N:M (e.g. 2:4), not {text!r}")
    return int(parts[0]), int(parts[1])


def load_hw(spec: str):
    """A :class:`~trainforge.hw.sat.config.SatConfig` from a preset name or a YAML file of its fields.

    Raises
    ------
    UsageError
        Neither a preset nor a readable YAML mapping of valid fields.
    """
    import yaml

    from trainforge.hw.sat.config import PRESETS, SatConfig

    if spec in PRESETS:
        return SatConfig.preset_named(spec)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--hw {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a YAML file")
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read {spec} as YAML: {first}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{spec} must hold a mapping of SatConfig fields, not {type(values).__name__}")
    try:
        return SatConfig.from_mapping(values)
    except (UsageError, TypeError, ValueError) as exc:
        raise UsageError(f"{spec}: {str(exc).splitlines()[0]}") from None
