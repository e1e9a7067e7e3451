"""Energy tables shipped with trainforge (YAML, read by :func:`trainforge.dataflow.energy.load_energy_table`)."""
