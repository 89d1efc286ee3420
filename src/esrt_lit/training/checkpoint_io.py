"""Checkpoint files: atomic writes and the ``ckpt_path=last`` shortcut."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from esrt_lit.files import atomic_output

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "resolve_ckpt_path"]

log = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`~esrt_lit.files.atomic_output`: a save interrupted at any point
    (exception, SIGKILL, full disk) leaves the previous ``path`` intact."""
    with atomic_output(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` whose local saves are atomic (:func:`atomic_torch_save`).

    Remote paths (``s3://`` ...) fall back to Lightning's own writer. Use it as a Trainer plugin
    (``trainer.plugins``, set in ``conf/trainer/default.yaml``).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO.save_checkpoint got storage_options={storage_options!r}; expected None"
            )
        fs = get_filesystem(path)
        if not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint to resume from: None, a path, or ``last`` (``<output_dir>/checkpoints/last.ckpt``).

    Raises:
        FileNotFoundError: the checkpoint does not exist (naming the key and the path).
    """
    if ckpt_path is None:
        return None
    path = Path(output_dir) / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            " (ckpt_path=last is the last checkpoint of the run resume_dir=<run folder> names)"
            if ckpt_path == "last"
            else ""
        )
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: checkpoint not found: {path}{hint}")
    return str(path)
