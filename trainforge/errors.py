"""Exceptions shared by every part of trainforge.

Each user-facing mistake raises a subclass of :class:`TrainforgeError` whose message is one
line naming the problem and what is valid. The CLI turns :class:`UsageError` into exit code 2
and every other :class:`TrainforgeError` into exit code 1, without a traceback.
"""

from __future__ import annotations


class TrainforgeError(Exception):
    """Base class of all errors raised on purpose by trainforge."""


class UsageError(TrainforgeError, ValueError):
    """The user asked for something that does not exist or is out of range.

    Unknown designs, unknown or invalid parameters, malformed ``KEY=VALUE`` overrides.
    """


class ConfigError(UsageError):
    """A configuration value is invalid; the message names the field and the valid range."""


class ToolchainError(TrainforgeError, RuntimeError):
    """A tool (yosys, Verilator, the C++ compiler, cocotb) is missing or failed to run."""


class SimulationError(TrainforgeError, RuntimeError):
    """A simulation ran but did not produce a usable result (crash, timeout, missing results)."""


class GoldenMismatchError(TrainforgeError, AssertionError):
    """A simulation ran to completion and the design disagreed with its golden model.

    Attributes
    ----------
    result : trainforge.sim.harness.SimResult
        The full result, with the log path and per-test figures.
    """

    def __init__(self, message: str, *, result) -> None:
        super().__init__(message)
        self.result = result
