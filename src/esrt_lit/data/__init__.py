"""Data: MATLAB-exact resizing, image I/O, datasets and the Lightning data module."""

from __future__ import annotations

from esrt_lit._lazy import lazy_getattr

_LAZY = {
    "imresize": "esrt_lit.data.imresize",
    "read_image": "esrt_lit.data.io",
    "write_image": "esrt_lit.data.io",
    "list_images": "esrt_lit.data.io",
    "modcrop": "esrt_lit.data.io",
    "SRDataModule": "esrt_lit.data.datamodule",
    "EvalDistributedSampler": "esrt_lit.data.datamodule",
    "PairStore": "esrt_lit.data.datasets",
    "SRTrainDataset": "esrt_lit.data.datasets",
    "SREvalDataset": "esrt_lit.data.datasets",
    "ImageRecord": "esrt_lit.data.sources",
    "FolderSource": "esrt_lit.data.sources",
    "PairedSource": "esrt_lit.data.sources",
    "DIV2KSource": "esrt_lit.data.sources",
    "BenchmarkSource": "esrt_lit.data.sources",
    "BenchmarksSource": "esrt_lit.data.sources",
    "SkimageSource": "esrt_lit.data.sources",
    "build_sources": "esrt_lit.data.sources",
    "ResumableDataLoader": "esrt_lit.data.sampling",
    "PairedD4": "esrt_lit.data.transforms",
    "paired_random_crop": "esrt_lit.data.transforms",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
