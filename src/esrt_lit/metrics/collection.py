"""The metrics of the SR tables, named once: every consumer (validation and test logging, the best
checkpoint, the evaluation protocol, the tables of train/eval/report/bench, the export's provenance)
iterates :data:`METRICS` instead of spelling ``"psnr"``/``"ssim"``.

A metric here is a per-image score on the protocol's images (MATLAB Y, ``scale`` pixels cropped) with
its direction: adding one (LPIPS, say, lower is better) is one :class:`SRMetric` entry and its
:class:`~esrt_lit.metrics.psnr.PerImageMeanMetric` subclass; the best-value tracking, the logged keys
(``{stage}/<set>/<name>``) and the table cells follow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torchmetrics import MaxMetric, MinMetric

from esrt_lit.metrics.psnr import PSNR, PerImageMeanMetric
from esrt_lit.metrics.ssim import SSIM

__all__ = ["METRICS", "PRIMARY", "SRMetric", "find_metric", "format_scores", "is_better", "score_images"]


@dataclass(frozen=True)
class SRMetric:
    """One metric of the tables.

    Attributes:
        name: its key in logs and results (``val/Set5/<name>``, ``{"<name>": ...}``).
        metric: the torchmetrics class, built with the border to crop (the scale).
        higher_is_better: the direction, which best-value tracking and bold cells follow.
        spec: the format of a table cell (``.2f`` for PSNR in dB, ``.4f`` for SSIM, as the paper prints them).
    """

    name: str
    metric: type[PerImageMeanMetric]
    higher_is_better: bool
    spec: str

    def build(self, scale: int) -> PerImageMeanMetric:
        """The per-image-mean metric for images of ``scale`` (``scale`` border pixels cropped)."""
        return self.metric(scale)

    def tracker(self) -> MaxMetric | MinMetric:
        """A torchmetrics tracker of the best value so far, in this metric's direction."""
        return MaxMetric() if self.higher_is_better else MinMetric()

    @property
    def tracker_state(self) -> str:
        """The name of :meth:`tracker`'s state (its key in a state dict)."""
        return "max_value" if self.higher_is_better else "min_value"

    def score(self, sr: torch.Tensor, hr: torch.Tensor, scale: int) -> float:
        """The score of one pair (``uint8`` or [0, 1] ``[1, C, H, W]``) on the protocol's Y channel."""
        return float(self.metric._score(sr, hr, scale, True).item())


#: The metrics of the tables, the published ones first in their column order; a new metric is one more
#: entry (docs/extending.md).
METRICS: list[SRMetric] = [
    SRMetric("psnr", PSNR, higher_is_better=True, spec=".2f"),
    SRMetric("ssim", SSIM, higher_is_better=True, spec=".4f"),
]
#: The metric that picks the best checkpoint and the best run (``val/<set>/psnr_best``).
PRIMARY = METRICS[0]


def score_images(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """Every metric of one pair: ``{"psnr": ..., "ssim": ...}``."""
    return {m.name: m.score(sr, hr, scale) for m in METRICS}


def format_scores(scores: Mapping[str, float | None], prefix: str = "") -> str:
    """A table cell as the paper prints it (``33.66/0.9299``) from ``scores[prefix + name]``; ``-``
    when a score is missing."""
    values = [scores.get(f"{prefix}{m.name}") for m in METRICS]
    if any(v is None for v in values):
        return "-"
    return "/".join(format(v, m.spec) for v, m in zip(values, METRICS, strict=True))


def find_metric(name: str) -> SRMetric:
    """The metric of :data:`METRICS` called ``name``.

    Raises:
        KeyError: no such metric (naming the known ones).
    """
    found = next((m for m in METRICS if m.name == name), None)
    if found is None:
        raise KeyError(f"metric {name!r}: not one of {', '.join(m.name for m in METRICS)}")
    return found


def is_better(name: str, value: float, than: float | None) -> bool:
    """Whether ``value`` of metric ``name`` beats ``than`` in the metric's direction (a non-finite value
    never does; anything finite beats None or a non-finite one).

    Raises:
        KeyError: ``name`` is not one of :data:`METRICS`.
    """
    if not math.isfinite(value):
        return False
    if than is None or not math.isfinite(than):
        return True
    return value > than if find_metric(name).higher_is_better else value < than
