"""PyTorch golden models, training algorithms and workloads (installed as ``trainforge.models``)."""

from trainforge.models.nm import magnitude_key, nm_compress, nm_decompress, nm_mask
from trainforge.models.topology import (
    onnx_workload,
    parse_scalesim_csv,
    read_scalesim_csv,
    to_scalesim_csv,
    write_scalesim_csv,
)
from trainforge.models.workloads import (
    METHODS,
    ElementwiseOp,
    GemmOp,
    Layer,
    MaskOp,
    UpdateOp,
    VectorLayer,
    Workload,
    assemble_workload,
    workload,
)
from trainforge.models.zoo import ZOO, zoo_model

__all__ = [
    "METHODS",
    "ZOO",
    "ElementwiseOp",
    "GemmOp",
    "Layer",
    "MaskOp",
    "UpdateOp",
    "VectorLayer",
    "Workload",
    "assemble_workload",
    "magnitude_key",
    "nm_compress",
    "nm_decompress",
    "nm_mask",
    "onnx_workload",
    "parse_scalesim_csv",
    "read_scalesim_csv",
    "to_scalesim_csv",
    "workload",
    "write_scalesim_csv",
    "zoo_model",
]
