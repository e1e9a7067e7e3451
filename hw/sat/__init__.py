"""The SAT-style N:M sparse training accelerator (installed as ``trainforge.hw.sat``)."""
