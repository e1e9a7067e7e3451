"""trainforge: design, simulate and verify DNN training hardware.

Subpackages: :mod:`trainforge.hw` (Amaranth generators), :mod:`trainforge.sim` (Verilator and
cocotb harness), :mod:`trainforge.dataflow` (mapping, cost and energy models),
:mod:`trainforge.models` (PyTorch golden models and workloads).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trainforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
