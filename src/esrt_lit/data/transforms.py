"""Paired LR/HR transforms for training: aligned random crop, D4 augmentation, grey to three channels.

The training recipe of ESRT (Lu et al., arXiv 2108.11084, Sec. 4.1) takes random 48x48 LR patches
with the matching ``48*s`` HR patches and augments them with flips and 90° rotations. The crop window
is chosen in LR coordinates and scaled for HR, so that the pair stays aligned to the pixel; the D4
element (one of the 8 flips/rotations/transposes) is drawn once and applied to both images through
albumentations with its size check relaxed (LR and HR sizes differ by design). Arrays become tensors
through :func:`esrt_lit.data.io.image_to_tensor`, the one conversion.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np

__all__ = ["PairedD4", "check_patch_fits", "paired_random_crop", "to_three_channels"]


def check_patch_fits(lr: np.ndarray, patch_size: int, scale: int, source: str | Path) -> None:
    """Raise when an LR image is smaller than the LR patch.

    Args:
        lr: ``uint8`` HWC LR image.
        patch_size: LR patch side.
        scale: SR factor (for the message: the HR size the patch needs).
        source: the file the image came from (named in the error).

    Raises:
        ValueError: ``lr`` is smaller than ``patch_size`` in height or width.
    """
    h, w = lr.shape[:2]
    if h < patch_size or w < patch_size:
        raise ValueError(
            f"{source}: image too small for the patch: LR {w}x{h} (HR {w * scale}x{h * scale}) at x{scale}, "
            f"LR patch {patch_size}x{patch_size}; expected an HR image of at least "
            f"{patch_size * scale}x{patch_size * scale}"
        )


def paired_random_crop(
    lr: np.ndarray, hr: np.ndarray, patch_size: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Crop aligned patches: an LR window of ``patch_size`` and the HR window ``scale`` times larger.

    Args:
        lr: ``uint8`` HWC LR image, ``(h, w, C)``.
        hr: ``uint8`` HWC HR image, ``(h * scale, w * scale, C')``.
        patch_size: LR patch side ``p``.
        scale: SR factor ``s``.
        rng: source of the window offset.

    Returns:
        ``(lr_patch (p, p, C), hr_patch (p*s, p*s, C'), (top, left))`` with the offset in LR pixels.

    Raises:
        ValueError: the HR size is not ``scale`` times the LR size, or the LR is smaller than the patch.
    """
    h, w = lr.shape[:2]
    if hr.shape[0] != h * scale or hr.shape[1] != w * scale:
        raise ValueError(
            f"HR {hr.shape[1]}x{hr.shape[0]} is not x{scale} of LR {w}x{h}; expected HR {w * scale}x{h * scale}"
        )
    check_patch_fits(lr, patch_size, scale, "LR/HR pair")
    top = int(rng.integers(0, h - patch_size + 1))
    left = int(rng.integers(0, w - patch_size + 1))
    hp = patch_size * scale
    lr_patch = lr[top : top + patch_size, left : left + patch_size]
    hr_patch = hr[top * scale : top * scale + hp, left * scale : left * scale + hp]
    return lr_patch, hr_patch, (top, left)


class PairedD4:
    """One random element of the dihedral group D4, applied identically to an LR and an HR patch.

    Uses albumentations' ``D4`` with the HR registered as an additional ``image`` target and the shape
    check off (``is_check_shapes=False``): the transform's parameters (the group element) are drawn
    once per call and applied to every target, so the pair stays aligned. The generator is reseeded on
    every call from ``seed``, so the draw is reproducible and independent in each worker process.
    """

    def __init__(self) -> None:
        self._compose = A.Compose([A.D4(p=1.0)], additional_targets={"hr": "image"}, is_check_shapes=False)

    def __call__(self, lr: np.ndarray, hr: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Apply the same flip/rotation/transpose to ``lr`` and ``hr`` (HWC, square patches)."""
        self._compose.set_random_seed(seed)
        out = self._compose(image=lr, hr=hr)
        return out["image"], out["hr"]


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """Repeat a grey ``(H, W, 1)`` image to ``(H, W, 3)``; colour images are returned unchanged."""
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
