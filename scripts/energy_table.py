"""Print an energy table as Markdown (the tables in docs/energy.md).

Run: `.venv/bin/python scripts/energy_table.py` (options: `--energy FILE.yaml` for another table,
`--preset NAME` for the per-access SRAM energies of that SatConfig preset's buffers).

The first table lists every action of the YAML file with its energy, unit, node, source and
derivation note; the second the SRAM access energies the model derives for the preset's A, B and
accumulator buffers from their capacity and line width.
"""

from __future__ import annotations

import argparse
import sys

from trainforge.dataflow.energy import buffer_geometry, load_energy_table, sram_access_pj
from trainforge.errors import TrainforgeError
from trainforge.hw.sat.config import PRESETS, SatConfig


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def render(table, preset: str) -> str:
    lines = [
        f"Table `{table.name}`, schema version {table.version}, {table.technology_nm:g} nm.",
        "",
        "| action | pJ | unit | node | source | note |",
        "|---|---:|---|---:|---|---|",
    ]
    for name, entry in table.actions.items():
        unit = entry.unit + (f" ({entry.capacity_bytes} B)" if entry.capacity_bytes else "")
        node, source, note = f"{entry.technology_nm:g}", _cell(entry.source), _cell(entry.note)
        lines.append(f"| `{name}` | {entry.pj:g} | {unit} | {node} | {source} | {note} |")
    config = SatConfig.preset_named(preset)
    lines += [
        "",
        f"SRAM access energy of the `{preset}` preset's buffers:",
        "",
        "| buffer | capacity (bytes) | line (bits) | pJ per line access | pJ per bit |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, geometry in buffer_geometry(config).items():
        pj = sram_access_pj(table, geometry.capacity_bytes, geometry.line_bits)
        lines.append(
            f"| {name} | {geometry.capacity_bytes} | {geometry.line_bits} | {pj:.2f} | {pj / geometry.line_bits:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energy", metavar="FILE.yaml", help="energy table (default: the shipped sat_45nm)")
    parser.add_argument("--preset", choices=list(PRESETS), default="paper")
    args = parser.parse_args(argv)
    try:
        table = load_energy_table(args.energy)
    except TrainforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(table, args.preset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
