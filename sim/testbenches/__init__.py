"""cocotb testbenches, one module per design (run inside the simulator process)."""
