"""Dataflow mapping, performance and energy models (installed as ``trainforge.dataflow``)."""
