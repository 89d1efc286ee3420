"""PSNR as a torchmetrics ``Metric``: the mean of per-image values, reduced correctly across processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric

from esrt_lit.metrics.functional.psnr import psnr

__all__ = ["PSNR", "PerImageMeanMetric"]


class PerImageMeanMetric(Metric):
    """Mean of a per-image score over every image seen, on every process.

    The states are the running ``sum`` of per-image scores and the image count ``total``, both reduced
    with ``"sum"``, so that ``compute`` gives the same mean on 1 or N processes however the images are
    split between them (unequal counts included). Subclasses set ``_score`` to a functional metric
    ``(preds, target, crop_border, test_y_channel) -> [B]``.

    Args:
        crop_border: pixels cropped from each border before scoring (the scale, in the SR protocol).
        test_y_channel: score colour images on the MATLAB Y channel (the protocol).
        **kwargs: passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ``process_group``, ...).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    sum: torch.Tensor
    total: torch.Tensor
    _score: Callable[[torch.Tensor, torch.Tensor, int, bool], torch.Tensor]

    def __init__(self, crop_border: int, test_y_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(crop_border) != crop_border or crop_border < 0:
            raise ValueError(f"crop_border={crop_border!r}; expected a non-negative integer")
        self.crop_border = int(crop_border)
        self.test_y_channel = bool(test_y_channel)
        self.add_state("sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the per-image scores of a batch ``[B, C, H, W]`` (float in [0, 1] or ``uint8``)."""
        values = self._score(preds, target, self.crop_border, self.test_y_channel)
        self.sum += values.sum().to(self.sum)
        self.total += values.numel()

    def compute(self) -> torch.Tensor:
        """Mean per-image score (float64 scalar); ``nan`` before any update."""
        return self.sum / self.total


class PSNR(PerImageMeanMetric):
    """Mean per-image PSNR (dB) on the MATLAB Y channel, with a border crop (peak 255).

    SR papers (ESRT, Lu et al., arXiv 2108.11084, Sec. 4.1) average PSNR per image. torchmetrics'
    ``PeakSignalNoiseRatio`` (with its default ``dim=None``) pools the squared error over every image it
    has seen and converts the pooled MSE to dB, which is a different number (-0.33 dB on Set5 x4); it
    also has no Y conversion, border crop or 8-bit rounding. The maths lives in
    :func:`esrt_lit.metrics.functional.psnr`.

    Example:
        >>> import torch
        >>> metric = PSNR(crop_border=0)
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> metric.update(target + 1 / 255, target)  # MSE 1: 48.1308 dB
        >>> metric.update(target + 10 / 255, target)  # MSE 100: 28.1308 dB
        >>> metric.compute()
        tensor(38.1308, dtype=torch.float64)
    """

    _score = staticmethod(psnr)
