"""Functional SR metrics: per-image PSNR and SSIM on the MATLAB Y channel (one implementation of the maths)."""

from esrt_lit.metrics.functional.psnr import psnr
from esrt_lit.metrics.functional.ssim import ssim

__all__ = ["psnr", "ssim"]
