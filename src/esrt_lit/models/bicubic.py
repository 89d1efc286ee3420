"""The bicubic baseline of every SR table, as a parameter-free network (MATLAB ``imresize``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from esrt_lit.data.imresize import check_factor, imresize

__all__ = ["Bicubic", "is_bicubic"]


def is_bicubic(model_config: Any) -> bool:
    """Whether a model config (a ``_target_`` mapping such as ``conf/model/bicubic.yaml``) builds :class:`Bicubic`."""
    target = model_config.get("_target_", "") if hasattr(model_config, "get") else ""
    return str(target).rsplit(".", 1)[-1] == "Bicubic"


class Bicubic(nn.Module):
    """Upscale by ``scale`` with MATLAB's bicubic ``imresize`` (no parameters).

    Fed the RGB ``uint8`` LR like a network, it scores the RGB pipeline, 0.001-0.02 dB below the
    published bicubic rows, which were made Y-first (see :mod:`esrt_lit.evaluation`).

    Args:
        scale: integer upscaling factor (2, 3, 4, ...).
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = check_factor(scale, "Bicubic: scale")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` float in [0, 1] → ``[B, C, h·s, w·s]``, same dtype and device, not clamped."""
        if x.ndim != 4:
            raise ValueError(f"Bicubic expects a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
        return imresize(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
