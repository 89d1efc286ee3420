"""Reading checkpoint files: the project's one ``torch.load``, with errors that name the file.

Files are read with ``weights_only=True``: tensors and plain containers, never pickled code. A file
that holds anything else is refused, and the message says what was expected instead of suggesting to
load it unsafely.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["EXPECTED", "CheckpointError", "read_checkpoint"]

#: What a checkpoint path may hold, for messages.
EXPECTED = (
    "a checkpoint of esrt_lit.train (.ckpt), weights of the released ESRT code (.pth) or an ESRT state dict"
)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or holds no network this project can build; names the file."""


def _reason(err: BaseException) -> str:
    """The first line of torch's message, without its advice."""
    text = str(err)
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return f"it pickles {found.group(1)}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return first.removeprefix("Weights only load failed. ").rstrip(".")


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
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Unsupported operand" in str(err):
            raise CheckpointError(
                f"{path}: holds pickled Python objects ({_reason(err)}), which weights_only loading refuses; "
                f"expected {EXPECTED}, made of tensors and plain containers"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({_reason(err)}); expected {EXPECTED}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({_reason(err)}); expected {EXPECTED}"
        ) from None
