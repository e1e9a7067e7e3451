"""PyTorch golden models, training algorithms and workloads (installed as ``trainforge.models``)."""

from trainforge.models.nm import magnitude_key, nm_compress, nm_decompress, nm_mask

__all__ = ["magnitude_key", "nm_compress", "nm_decompress", "nm_mask"]
