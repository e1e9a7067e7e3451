"""The registry of generators: what ``trainforge verilog`` and ``trainforge sim`` can build.

Adding a design means adding one :class:`Design` entry here; the CLI, the harness and the demo
read this table and need no change.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainforge.config import GeneratorConfig
from trainforge.errors import UsageError

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
    """

    name: str
    summary: str
    component: str
    config: str
    testbench: str
    golden: str

    @property
    def top(self) -> str:
        return self.name.replace("-", "_")

    @property
    def config_type(self) -> type[GeneratorConfig]:
        return _load(self.config)

    def make_config(self, overrides: Mapping[str, Any] | None = None) -> GeneratorConfig:
        """The default configuration with ``overrides`` (strings allowed) applied and validated."""
        return self.config_type.from_mapping(dict(overrides or {}))

    def make_component(self, config: GeneratorConfig):
        return _load(self.component)(config=config)


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
    )
}


def get_design(name: str) -> Design:
    """Look a design up; an unknown name is a :class:`UsageError` listing the valid ones."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise UsageError(f"unknown design {name!r}; valid designs: {', '.join(sorted(DESIGNS))}") from None
