"""Amaranth hardware generators (installed as ``trainforge.hw``)."""
