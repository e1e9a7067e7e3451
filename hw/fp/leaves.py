"""Leaf arithmetic units as black boxes, for hierarchical resource estimation.

Flat synthesis of a large PE array repeats the same arithmetic unit hundreds of times. Inside
:func:`blackbox_leaves`, the leaf units (:class:`~trainforge.hw.fp.mac.MacUnit`,
:class:`~trainforge.hw.fp.fma.FMA`, :class:`~trainforge.hw.fp.convert.Convert`) elaborate to a
module holding a single :class:`~amaranth.hdl.Instance` of ``tf_leaf_<kind>_<hash>`` with the same
ports, named as Amaranth names a component's top-level ports (``request__payload``, ...), so the
generated Verilog of each distinct leaf configuration plugs straight into the black box. The
component's signature is unchanged, so parents elaborate exactly as before.

Outside the context manager :func:`leaf_stub` returns ``None`` at once and the leaves elaborate
normally: the hook cannot change ordinary elaboration.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

__all__ = ["LeafCollector", "LeafKind", "blackbox_leaves", "leaf_stub"]


@dataclass
class LeafKind:
    """One distinct leaf configuration seen while elaborating under :func:`blackbox_leaves`.

    Attributes
    ----------
    module : str
        Verilog module name of the black box, ``tf_leaf_<kind>_<12 hex digits of the config hash>``.
    kind : str
        ``"mac"``, ``"fma"`` or ``"convert"``.
    params : dict
        The leaf's configuration (JSON-serialisable).
    ports : list of tuple
        ``(name, direction, width)``, direction ``"input"`` or ``"output"``, in signature order.
    build : callable
        Returns a fresh component of this configuration (elaborate it outside the context manager).
    count : int
        Instances elaborated.
    """

    module: str
    kind: str
    params: dict[str, Any]
    ports: list[tuple[str, str, int]]
    build: Callable[[], wiring.Component] = field(repr=False)
    count: int = 0


class LeafCollector:
    """Distinct leaf configurations and their instance counts, by black-box module name."""

    def __init__(self) -> None:
        self.kinds: dict[str, LeafKind] = {}

    def counts(self) -> dict[str, int]:
        """Instances per black-box module."""
        return {name: kind.count for name, kind in sorted(self.kinds.items())}

    def blackbox_verilog(self) -> str:
        """``(* blackbox *)`` declarations of every leaf module, for reading the top into yosys."""
        text = []
        for kind in self.kinds.values():
            ports = ",\n".join(f"  {direction} wire [{width - 1}:0] {name}" for name, direction, width in kind.ports)
            text.append(f"(* blackbox *)\nmodule {kind.module}(\n{ports}\n);\nendmodule\n")
        return "\n".join(text)


_ACTIVE: contextvars.ContextVar[LeafCollector | None] = contextvars.ContextVar("tf_blackbox_leaves", default=None)


@contextlib.contextmanager
def blackbox_leaves() -> Iterator[LeafCollector]:
    """Within the block, leaf arithmetic units elaborate to black-box instances; yields the collector.

    Elaboration is lazy in Amaranth (it happens when the design is converted), so convert the
    top-level design inside the block.
    """
    collector = LeafCollector()
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def leaf_stub(
    component: wiring.Component,
    kind: str,
    params: dict[str, Any],
    build: Callable[[], wiring.Component],
    *,
    sync: bool = False,
) -> Module | None:
    """A black-box stand-in for ``component`` when :func:`blackbox_leaves` is active, else ``None``.

    Parameters
    ----------
    component : wiring.Component
        The leaf being elaborated (its signature gives the ports).
    kind : str
        Short name of the leaf type, part of the module name.
    params : dict
        Everything that determines the leaf's hardware (JSON-serialisable); equal ``params`` of
        equal ``kind`` must mean identical hardware.
    build : callable
        Builds a fresh component of the same configuration.
    sync : bool
        The leaf has registers in the ``sync`` domain: the black box gets ``clk`` and ``rst``.
    """
    collector = _ACTIVE.get()
    if collector is None:
        return None
    digest = hashlib.sha256(json.dumps([kind, params], sort_keys=True).encode()).hexdigest()[:12]
    module = f"tf_leaf_{kind}_{digest}"
    ports: list[tuple[str, str, int]] = []
    connections: dict[str, Value] = {}
    if sync:
        ports += [("clk", "input", 1), ("rst", "input", 1)]
        connections.update(i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"))
    for path, member, value in component.signature.flatten(component):
        name = "__".join(map(str, path))
        value = Value.cast(value)
        inward = member.flow == Flow.In
        ports.append((name, "input" if inward else "output", len(value)))
        connections[("i_" if inward else "o_") + name] = value
    leaf = collector.kinds.get(module)
    if leaf is None:
        leaf = collector.kinds[module] = LeafKind(module, kind, params, ports, build)
    leaf.count += 1
    m = Module()
    m.submodules.leaf = Instance(module, **connections)
    return m
