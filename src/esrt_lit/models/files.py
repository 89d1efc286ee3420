"""Reading checkpoint files: the project's one ``torch.load``, with errors that name the file.

Files are read with ``weights_only=True``: tensors and plain containers, never pickled code. A file
that holds anything else is refused, and the message says what was expected instead of suggesting to
load it unsafely.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from esrt_lit.errors import CheckpointError

__all__ = ["EXPECTED", "CheckpointError", "read_checkpoint"]

#: What a checkpoint path may hold, for messages.
EXPECTED = (
    "a checkpoint of esrt_lit.train (.ckpt), weights of the released ESRT code (.pth) or an ESRT state dict"
)


def _why_unreadable(path: Path, err: BaseException) -> str:
    """What is wrong with a file torch cannot load, without torch's advice (which suggests loading it
    with ``weights_only=False``)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        return f"a damaged archive: {first}" if "weights_only" not in first else "a damaged archive"
    return "neither a PyTorch archive nor a pickle of tensors"


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, not a PyTorch file, or a file holding pickled objects.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file: {EXPECTED}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ... here
        if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err)):
            raise CheckpointError(
                f"{path}: holds pickled Python objects ({found.group(1)}), which loading with weights_only=True "
                f"refuses; expected {EXPECTED}, made of tensors and plain containers"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({_why_unreadable(path, err)}); expected {EXPECTED}"
        ) from None
