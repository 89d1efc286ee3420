"""MATLAB ``rgb2ycbcr`` luma (ITU-R BT.601, studio range), the Y channel SR papers score on.

``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for ``R, G, B`` in 0..255, i.e. Y in 16..235. The
ESRT tables (Lu et al., arXiv 2108.11084, Sec. 4.1) are PSNR/SSIM on this Y. ``kornia.color.rgb_to_ycbcr``
is the full-range (JPEG) transform instead, ``Y = 0.299 R + 0.587 G + 0.114 B``: scoring on it costs
about 1.3 dB on Set5 x4, so it must not be used for the metrics.

Like MATLAB, a ``uint8`` image gives a ``uint8`` Y (rounded half away from zero), a float image in
[0, 1] gives an unrounded float Y in [16/255, 235/255].
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch

__all__ = ["Y_COEFFS", "Y_OFFSET", "prepare_for_scoring", "quantize", "rgb_to_y"]

#: Weights of R, G, B (in 0..255) in MATLAB's ``rgb2ycbcr`` Y row, before the division by 255.
Y_COEFFS = (65.481, 128.553, 24.966)
#: Offset of Y in 0..255 units.
Y_OFFSET = 16.0


def _y_levels(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Y in 0..255 units from R, G, B in 0..255 units (float64)."""
    return Y_OFFSET + (Y_COEFFS[0] * r + Y_COEFFS[1] * g + Y_COEFFS[2] * b) / 255.0


@overload
def rgb_to_y(image: torch.Tensor) -> torch.Tensor: ...


@overload
def rgb_to_y(image: np.ndarray) -> np.ndarray: ...


def rgb_to_y(image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Y channel of MATLAB's ``rgb2ycbcr``.

    Args:
        image: torch ``[..., 3, H, W]`` (channels first) or numpy ``[H, W, 3]`` (channels last);
            ``uint8`` in 0..255 or float in [0, 1].

    Returns:
        torch ``[..., 1, H, W]`` or numpy ``[H, W, 1]``: ``uint8`` rounded half away from zero for a
        ``uint8`` input (as MATLAB), else float (same dtype) ``Y / 255`` in [16/255, 235/255].

    Example:
        >>> import torch
        >>> rgb_to_y(torch.tensor([[[255]], [[255]], [[255]]], dtype=torch.uint8)).flatten().tolist()
        [235]
        >>> round(rgb_to_y(torch.tensor([[[1.0]], [[0.0]], [[0.0]]], dtype=torch.float64)).item() * 255, 3)
        81.481
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"rgb_to_y: numpy image of shape {image.shape}; expected (H, W, 3)")
        out = rgb_to_y(torch.from_numpy(image.transpose(2, 0, 1).copy()))
        return np.ascontiguousarray(out.numpy().transpose(1, 2, 0))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"rgb_to_y: got {type(image).__name__}; expected a torch.Tensor or numpy.ndarray")
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: tensor of shape {tuple(image.shape)}; expected (..., 3, H, W)")
    r, g, b = image.unbind(dim=-3)
    if image.dtype == torch.uint8:
        y = _y_levels(r.double(), g.double(), b.double())
        return torch.floor(y + 0.5).clamp(0, 255).to(torch.uint8).unsqueeze(-3)
    if not image.is_floating_point():
        raise TypeError(f"rgb_to_y: dtype {image.dtype}; expected uint8 or a float dtype")
    return (_y_levels(r * 255.0, g * 255.0, b * 255.0) / 255.0).unsqueeze(-3)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """8-bit levels of an image as float64 (the SR protocol scores ``uint8`` images).

    ``uint8`` is taken as is; float in [0, 1] is clamped, scaled by 255 and rounded half away from zero.
    """
    if image.dtype == torch.uint8:
        return image.double()
    if not image.is_floating_point():
        raise TypeError(f"expected a float image in [0, 1] or uint8, got dtype {image.dtype}")
    return torch.floor(image.double().clamp(0, 1) * 255.0 + 0.5)


def prepare_for_scoring(
    preds: torch.Tensor, target: torch.Tensor, crop_border: int, test_y_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the SR protocol scores: 8-bit levels, Y channel if asked, ``crop_border`` cropped.

    Both images are quantized to 8-bit levels (:func:`quantize`). A 3-channel pair is scored on the
    MATLAB Y channel (rounded to an integer, as ``rgb2ycbcr`` on ``uint8``) when ``test_y_channel``, else
    on R, G, B. A 1-channel target (Set14 ``bridge``) is scored on its own channel: its grey value *is*
    its Y, no 16..235 conversion. Grey images are fed to RGB models with the channel repeated, so a
    3-channel prediction for a 1-channel target is reduced to grey by the rounded channel mean.

    Args:
        preds: ``[B, C, H, W]`` (or ``[C, H, W]``) float in [0, 1] or ``uint8``.
        target: same layout; ``C`` is 1 or 3 (any ``C`` equal to ``preds``' when not ``test_y_channel``).
        crop_border: pixels dropped from each of the four borders (the scale, in the SR protocol).
        test_y_channel: score the Y channel of colour images.

    Returns:
        ``(preds, target)`` as float64 levels in 0..255, ``[B, C', H - 2 b, W - 2 b]``.
    """
    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"expected torch tensors, got {type(preds).__name__} and {type(target).__name__}")
    if preds.ndim == 3:
        preds = preds.unsqueeze(0)
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if preds.ndim != 4 or target.ndim != 4:
        raise ValueError(
            f"expected [B, C, H, W] images, got preds {tuple(preds.shape)} and target {tuple(target.shape)}"
        )
    if preds.shape[0] != target.shape[0] or preds.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in batch or spatial size"
        )
    crop_border = int(crop_border)
    if crop_border < 0:
        raise ValueError(f"crop_border={crop_border}; expected >= 0")
    p, t = quantize(preds), quantize(target)
    pc, tc = p.shape[1], t.shape[1]
    if tc == 1 and pc == 3:
        p = torch.floor(p.mean(dim=1, keepdim=True) + 0.5)
    elif pc != tc:
        raise ValueError(f"preds has {pc} channels and target {tc}; expected equal, or 3 for a grey target")
    elif test_y_channel and tc == 3:
        p = rgb_to_y(p.to(torch.uint8)).double()
        t = rgb_to_y(t.to(torch.uint8)).double()
    elif test_y_channel and tc != 1:
        raise ValueError(f"test_y_channel needs 1- or 3-channel images, got {tc} channels")
    if crop_border:
        h, w = p.shape[-2:]
        if h <= 2 * crop_border or w <= 2 * crop_border:
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image")
        p = p[..., crop_border:-crop_border, crop_border:-crop_border]
        t = t[..., crop_border:-crop_border, crop_border:-crop_border]
    return p, t
