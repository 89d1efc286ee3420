"""Data: MATLAB-exact resizing, image I/O, datasets and the Lightning data module.

The names are imported lazily (PEP 562): importing the package costs 0.02 s, its modules eagerly
6–7.5 s (Lightning and albumentations, measured on the 2-core CI machine), which every command that
only reads or writes images (``upscale``, ``eval``) would otherwise pay through :mod:`.io`."""

from __future__ import annotations

from esrt_lit._lazy import lazy_getattr

_LAZY = {
    "imresize": "esrt_lit.data.imresize",
    "read_image": "esrt_lit.data.io",
    "write_image": "esrt_lit.data.io",
    "list_images": "esrt_lit.data.io",
    "modcrop": "esrt_lit.data.io",
    "image_to_tensor": "esrt_lit.data.io",
    "tensor_to_image": "esrt_lit.data.io",
    "SRDataModule": "esrt_lit.data.datamodule",
    "EvalDistributedSampler": "esrt_lit.data.datamodule",
    "PairStore": "esrt_lit.data.datasets",
    "SRTrainDataset": "esrt_lit.data.datasets",
    "SREvalDataset": "esrt_lit.data.datasets",
    "ImageRecord": "esrt_lit.data.sources",
    "Record": "esrt_lit.data.sources",
    "Source": "esrt_lit.data.sources",
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
