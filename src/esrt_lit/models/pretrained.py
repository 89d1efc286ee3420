"""Weights trained by esrt-lit itself and shipped inside the package (the authors released none).

Each is an fp16 state dict of :class:`~esrt_lit.models.ESRT` (about 1.5 MB) in
``esrt_lit/models/weights/``, with its provenance beside it (``esrt_<name>.json``: the command, the
resolved configuration, the commit, the W&B run's summary, its Set5/Set14 scores against bicubic).
Its SHA-256 is checked on every load. They are short-budget weights, trained in hours on a CPU, not the
paper's (see ``docs/training.md``, "Pretrained weights").

Load them by name wherever a checkpoint is accepted (``ckpt_path=pretrained:x4``), or in Python with
``load_network("pretrained:x4")`` (:mod:`esrt_lit.models.loading`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from esrt_lit.models.config import ESRTConfig
from esrt_lit.models.files import CheckpointError, read_checkpoint

__all__ = ["PREFIX", "PRETRAINED", "Pretrained", "pretrained_path", "pretrained_state", "provenance"]

#: How a checkpoint path names shipped weights: ``pretrained:x4``.
PREFIX = "pretrained:"


@dataclass(frozen=True)
class Pretrained:
    """One set of shipped weights.

    Attributes:
        file: the state dict's file name in ``esrt_lit/models/weights/``.
        sha256: its SHA-256.
        config: the ESRT constructor arguments the weights fit.
    """

    file: str
    sha256: str
    config: dict[str, Any]

    @property
    def scale(self) -> int:
        return int(self.config["scale"])


#: The shipped weights by name: the released network (:class:`ESRTConfig`'s defaults), trained by ``experiment=pretrained_<name>``.
PRETRAINED: dict[str, Pretrained] = {
    "x2": Pretrained(
        "esrt_x2.pt",
        "2c020ccaec5f5ef2087acd75bb2c3741f23296f7d213f23235f1da91d2f7c298",
        ESRTConfig(scale=2).as_dict(),
    ),
    "x4": Pretrained(
        "esrt_x4.pt",
        "bf38402cdb1c6306a0be9dd68aecc75b494a4b449db8b29b8e80cd7b71dc578c",
        ESRTConfig(scale=4).as_dict(),
    ),
}


def _folder() -> Path:
    return Path(str(resources.files("esrt_lit.models") / "weights"))


def _entry(name: str) -> Pretrained:
    name = name.removeprefix(PREFIX)
    if name not in PRETRAINED:
        shipped = ", ".join(f"{PREFIX}{n}" for n in PRETRAINED) or "none"
        raise CheckpointError(f"{PREFIX}{name}: no such shipped weights; shipped: {shipped}")
    return PRETRAINED[name]


def pretrained_path(name: str) -> Path:
    """The file of the shipped weights ``name`` (``x4`` or ``pretrained:x4``), its SHA-256 checked.

    Raises:
        CheckpointError: unknown name, or a file missing or not the one shipped (its checksum differs).
    """
    entry = _entry(name)
    path = _folder() / entry.file
    if not path.is_file():
        raise CheckpointError(
            f"{PREFIX}{name.removeprefix(PREFIX)}: {path} is missing from the installed package"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise CheckpointError(
            f"{path}: SHA-256 {digest} is not the shipped {entry.sha256}; the file was changed or damaged "
            "(reinstall esrt-lit)"
        )
    return path


def pretrained_state(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(float32 state dict, ESRT config)`` of the shipped weights ``name`` (checksum checked)."""
    state = read_checkpoint(pretrained_path(name))
    return {k: v.float() for k, v in state.items()}, dict(_entry(name).config)


def provenance(name: str) -> dict[str, Any]:
    """How the shipped weights ``name`` were made (their ``.json`` beside them)."""
    entry = _entry(name)
    return json.loads((_folder() / entry.file).with_suffix(".json").read_text())
