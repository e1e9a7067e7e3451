"""``trainforge estimate``: one training iteration of a network on the SAT accelerator, scheduled and costed.

Cycles are exact for the descriptor program the scheduler emits (``dataflow/schedule.py`` times it
with the cycle-exact model of the RTL); ``--overlap`` adds a *modelled hardware extension* and says
so. A user mistake prints one ``trainforge: error:`` line and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainforge.cli_common import load_hw, parse_nm, reports_errors
from trainforge.errors import UsageError

__all__ = ["estimate_command"]

out = Console(highlight=False)
METHODS = ("dense", "srste", "bdwp", "transposable")


def load_model(model: str, method: str, n: int, m: int, batch: int | None):
    """A workload of ``method`` from a zoo name or an .onnx / .csv (SCALE-Sim) / .json file."""
    from trainforge.dataflow.mcu.estimate import MODEL_ALIASES
    from trainforge.dataflow.schedule import workload_for
    from trainforge.models.zoo import ZOO, zoo_model

    base = "bdwp" if method == "transposable" else method
    name = MODEL_ALIASES.get(model, model)
    if name in ZOO:
        net, x = zoo_model(name)
        return workload_for(net, x, method, n, m, batch=batch)
    path = Path(model)
    if not path.suffix:
        raise UsageError(f"unknown model {model!r}; valid: {', '.join(ZOO)}, or an .onnx/.csv/.json file")
    if not path.is_file():
        raise UsageError(f"model file {model!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from trainforge.models.topology import onnx_workload

        return onnx_workload(str(path), method=base, n=n, m=m, batch=batch or 1)
    if suffix == ".csv":
        from trainforge.models.topology import read_scalesim_csv

        kwargs: dict[str, Any] = {"method": base, "n": n, "m": m}
        if batch:
            kwargs["batch"] = batch
        return read_scalesim_csv(path, **kwargs)
    if suffix == ".json":
        from trainforge.models.workloads import Workload

        try:
            return Workload.from_json(path.read_text())
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"{model}: not a workload JSON file ({exc})") from None
    raise UsageError(f"model file {model!r}: unsupported extension {suffix!r} (use .onnx, .csv or .json)")


def _sparse_nm(text: str) -> tuple[int, int]:
    n, m = parse_nm(text)
    if not 1 <= n < m:
        raise UsageError(f"--nm needs 1 <= N < M, not {n}:{m}")
    return n, m


def estimate(
    config: Any,
    workload: Any,
    *,
    objective: str = "latency",
    energy_table: Any = None,
    options: Any = None,
    dense_workload: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Schedule ``workload`` (and its dense twin for ``speedup_vs_dense``); return the schedule and a summary."""
    from trainforge.dataflow.schedule import Options, schedule

    options = options or Options(objective=objective, offline=True)
    sched = schedule(config, workload, options, energy_table=energy_table)
    dense = sched if dense_workload is None else schedule(config, dense_workload, options, energy_table=energy_table)
    seconds = sched.cycles / (config.clock_mhz * 1e6)
    counters = sched.timing.counters
    beats = counters["macs_issued"]
    summary = {
        "model": workload.name,
        "method": workload.method,
        "nm": f"{workload.n}:{workload.m}",
        "batch": workload.batch,
        "hw": config.preset,
        "options": options.label(),
        "modelled_extension": bool(options.overlap),
        "cycles": sched.cycles,
        "rtl_cycles": sched.rtl_cycles,
        "seconds": seconds,
        "samples_per_s": workload.batch / seconds,
        "effective_tflops": 2 * sched.macs / seconds / 1e12,
        "utilization": counters["macs_useful"] / (config.pe_count * sched.cycles),
        "issued_utilization": beats / (config.pe_count * sched.cycles),
        "dram_bytes": sched.dram_bytes,
        "energy_j": float(sched.energy.total),
        "energy_breakdown_j": {k: float(v) for k, v in sched.energy.as_dict().items() if k != "total"},
        "speedup_vs_dense": dense.cycles / sched.cycles,
        "ideal_speedup": _ideal(workload),
        "descriptors": len(sched.program),
        "counters": dict(counters),
        "layers": sched.layers,
    }
    if sched.overlap_detail:
        summary["overlap_detail"] = sched.overlap_detail
    return sched, summary


def _ideal(workload: Any) -> float:
    useful = workload.useful_macs()
    return workload.macs() / useful if useful else 1.0


@reports_errors
def estimate_command(
    hw: Annotated[str, typer.Option("--hw", help="SAT preset (tiny, default, paper) or a CONFIG.yaml.")] = "paper",
    model: Annotated[
        str, typer.Option("--model", help="Zoo name (resnet18, vgg16, deit_s, ...) or .onnx/.csv/.json.")
    ] = "resnet18",
    method: Annotated[str, typer.Option("--method", help="dense, srste, bdwp or transposable.")] = "bdwp",
    nm: Annotated[str, typer.Option("--nm", help="N:M pattern, e.g. 2:8.")] = "2:8",
    batch: Annotated[int | None, typer.Option("--batch", help="Batch size (default: the model's, 1).")] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="Mapping objective: latency, energy or edp.")
    ] = "latency",
    energy: Annotated[str | None, typer.Option("--energy", help="Energy table YAML (default: sat_45nm).")] = None,
    gantt: Annotated[str | None, typer.Option("--gantt", help="Write a Gantt timeline PNG of the iteration.")] = None,
    overlap: Annotated[
        bool, typer.Option("--overlap", help="Modelled hardware extension: PRUNE/UPDATE beside the GEMMs.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Cycles, time, throughput, PE utilisation, DRAM traffic and energy of one training iteration on SAT."""
    from trainforge.dataflow.energy import load_energy_table
    from trainforge.dataflow.mapping import OBJECTIVES
    from trainforge.dataflow.schedule import Options

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1, not {batch}")
    n, m = _sparse_nm(nm)
    config = load_hw(hw)
    if method != "dense" and not config.supports(n, m):
        raise UsageError(f"{n}:{m} is not supported by this configuration (m must divide m_max={config.m_max})")
    table = load_energy_table(energy) if energy else None
    workload = load_model(model, method, n, m, batch)
    dense = load_model(model, "dense", n, m, batch) if method != "dense" else None
    options = Options(objective=objective, offline=True, overlap=overlap)
    sched, summary = estimate(config, workload, options=options, energy_table=table, dense_workload=dense)
    if gantt:
        from trainforge.dataflow.gantt import gantt_png

        gantt_png(config, sched, gantt, title=f"{workload.name} {method} {nm} batch {workload.batch} on {hw}")
        summary["gantt"] = gantt
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=float))
        return
    t = Table(title=f"{workload.name}: one training iteration, {method} {nm}, batch {workload.batch}, SAT {hw}")
    for col in ("layer", "FF", "BP", "WU", "update", "prune", "MACs", "mapping (FF / BP / WU)"):
        t.add_column(col, justify="left" if col in ("layer", "mapping (FF / BP / WU)") else "right")
    for row in summary["layers"]:
        maps = " / ".join(row["mapping"].get(s, "-") for s in ("ff", "bp", "wu"))
        t.add_row(
            row["name"],
            *(f"{row[s]:,}" if row[s] else "-" for s in ("ff", "bp", "wu", "update", "prune")),
            f"{row['macs']:,}",
            maps,
        )
    out.print(t)
    e = summary["energy_breakdown_j"]
    lines = [
        f"cycles {summary['cycles']:,} = {summary['seconds'] * 1e3:.3f} ms at {config.clock_mhz:g} MHz; "
        f"{summary['samples_per_s']:.1f} samples/s; {summary['effective_tflops']:.3f} effective TFLOPS (dense MACs)",
        f"PE utilisation {summary['utilization']:.1%} useful ({summary['issued_utilization']:.1%} issued); "
        f"DRAM {summary['dram_bytes'] / 1e6:.1f} MB",
        f"energy {summary['energy_j'] * 1e3:.3f} mJ: " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in e.items()),
        f"speed-up vs dense {summary['speedup_vs_dense']:.3f}x (ideal {summary['ideal_speedup']:.2f}x)",
    ]
    if overlap:
        lines.append(
            "NOTE: --overlap is a modelled hardware extension (the RTL drains its GEMM pipeline around "
            f"PRUNE and UPDATE); the RTL runs this program in {summary['rtl_cycles']:,} cycles"
        )
    for line in lines:
        out.print(line, markup=False)
