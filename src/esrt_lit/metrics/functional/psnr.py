"""Per-image PSNR as the SR papers compute it (the maths behind :class:`esrt_lit.metrics.PSNR`)."""

from __future__ import annotations

import torch

from esrt_lit.metrics.color import prepare_for_scoring

__all__ = ["psnr"]

PEAK = 255.0


def _psnr_update(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of prepared 8-bit levels ``[B, C, H, W]`` (float64); ``inf`` for identical images."""
    mse = (preds - target).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(PEAK**2 / mse)


def psnr(
    preds: torch.Tensor, target: torch.Tensor, crop_border: int, test_y_channel: bool = True
) -> torch.Tensor:
    r"""Peak signal-to-noise ratio of each image, on 8-bit levels (peak 255).

    .. math:: \text{PSNR} = 10 \log_{10} \frac{255^2}{\frac{1}{N}\sum (\hat y - y)^2}

    computed per image on the MATLAB Y channel with ``crop_border`` pixels dropped from each border,
    after rounding both images to 8-bit levels (see
    :func:`esrt_lit.metrics.color.prepare_for_scoring`, which also documents the grey-image rule).
    Papers report the mean of these per-image values (ESRT, Lu et al., arXiv 2108.11084, Sec. 4.1).

    Args:
        preds: ``[B, C, H, W]`` float in [0, 1] (or ``uint8``), the super-resolved images.
        target: ``[B, C, H, W]`` ground truth, same layout. A 1-channel (grey) target is scored on its
            own channel, and a 3-channel prediction for it is first reduced to grey by its rounded
            channel mean (grey images are fed to RGB models with the channel repeated).
        crop_border: pixels cropped from each border (the scale factor in the SR protocol).
        test_y_channel: score colour images on Y (True, the protocol) instead of R, G, B.

    Returns:
        float64 ``[B]``: one PSNR (dB) per image; ``inf`` where the images are identical.

    Example:
        >>> import torch
        >>> target = torch.zeros(2, 1, 8, 8)
        >>> preds = target.clone()
        >>> preds[0] += 1 / 255  # every level off by one: MSE 1
        >>> preds[1, :, 3:5, 3:5] = 2 / 255  # 4 of the 16 uncropped pixels off by 2: MSE 1
        >>> psnr(preds, target, crop_border=2)
        tensor([48.1308, 48.1308], dtype=torch.float64)
    """
    return _psnr_update(*prepare_for_scoring(preds, target, crop_border, test_y_channel))
