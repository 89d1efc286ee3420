"""SR metrics as the published tables compute them: per-image PSNR/SSIM on MATLAB Y, border cropped.

The classes live here; their functional twins in :mod:`esrt_lit.metrics.functional` (``psnr``, ``ssim``:
the package's ``psnr``/``ssim`` names are the class modules, as in torchmetrics).
"""

from esrt_lit.metrics.collection import METRICS, PRIMARY, SRMetric, format_scores, is_better, score_images
from esrt_lit.metrics.color import prepare_for_scoring, quantize, rgb_to_y
from esrt_lit.metrics.psnr import PSNR, PerImageMeanMetric
from esrt_lit.metrics.ssim import SSIM

__all__ = [
    "METRICS",
    "PRIMARY",
    "PSNR",
    "SSIM",
    "PerImageMeanMetric",
    "SRMetric",
    "format_scores",
    "is_better",
    "prepare_for_scoring",
    "quantize",
    "rgb_to_y",
    "score_images",
]
