"""Degradation models: how an LR image is made from its HR (the ``degradation`` config group).

ESRT (Lu et al., arXiv 2108.11084, Sec. 4.1) is published for bicubic downscaling only. The two other
degradations of the SR literature are those RDN (Zhang et al., "Residual Dense Network for Image
Super-Resolution", CVPR 2018, Sec. 5.1) defined in its released MATLAB test-data script
(``RDN_TestCode/Prepare_TestData_HR_LR.m``, functions ``imresize_BD`` and ``imresize_DN``), on ``uint8``
images, ``HR`` modcropped to a multiple of the scale ``s``:

* :class:`Bicubic` (``BI``): ``imresize(HR, 1/s, 'bicubic')`` (:func:`~esrt_lit.data.imresize.imresize`).
* :class:`BlurDown` (``BD``): ``imfilter(HR, fspecial('gaussian', k, 1.6), 'replicate')`` (a ``uint8``
  result, so rounded half away from zero), then one HR pixel in ``s``: at x3 ``k = 7`` and
  ``imresize(blurred, 1/s, 'nearest')`` (HR pixel ``3 i + 1`` for LR pixel ``i``, 0-based); at x2 and x4
  ``k = 12`` and ``blurred(s/2:s:end-s/2)`` (HR pixel ``s i + s/2 - 1``). See :class:`BlurDown`.
* :class:`BicubicNoise` (``DN``): the bicubic ``uint8`` LR, plus ``30 * randn`` on the 0-255 scale
  (``single``), converted back to ``uint8`` (rounded, saturated to 0..255).

The blur runs on the batch with kornia (``kornia.filters.filter2d``, ``border_type="replicate"`` = the
``imfilter`` option). The noise of an image is drawn from a CPU ``torch.Generator`` seeded by
:func:`image_seed` (a CRC-32 of the image's name and the scale), then moved to the batch's device, so
an evaluation is the same on every run and every machine; without seeds it is drawn on the batch's
device from the global generator. Training gives every patch fresh noise from its per-sample seed
(:class:`~esrt_lit.data.datasets.SRTrainDataset`).

Every degradation takes ``uint8`` images (a ``[..., C, H, W]`` tensor on any device, or a ``uint8``
``[H, W, C]`` numpy image) or float tensors in [0, 1] (quantised to ``uint8`` levels first, as the
script's images are) and returns the LR in the same type, dtype and device.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from kornia.filters import filter2d, get_gaussian_kernel2d

from esrt_lit.data.imresize import check_factor, imresize, round_uint8
from esrt_lit.data.io import image_to_tensor

__all__ = ["Bicubic", "BicubicNoise", "BlurDown", "Degradation", "build_degradation", "image_seed"]

Image = torch.Tensor | np.ndarray


def image_seed(name: str, scale: int) -> int:
    """The noise seed of image ``name`` at ``scale``: ``zlib.crc32`` of ``"<name>|x<scale>"`` (stable
    across processes and machines, unlike Python's salted ``hash``)."""
    return zlib.crc32(f"{name}|x{int(scale)}".encode())


def _to_chw(image: np.ndarray, name: str) -> torch.Tensor:
    if image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError(f"{name}: numpy image {image.dtype} {image.shape}; expected uint8 (H, W, C)")
    return image_to_tensor(image, scale_to_unit=False, packed=True)


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def _check_scale(scale: int, shape: Sequence[int]) -> int:
    scale = check_factor(scale)
    h, w = shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR of {w}x{h} pixels is not a multiple of scale={scale}; modcrop it first")
    return scale


class Degradation:
    """HR → LR. Subclasses define :meth:`downsample` (the deterministic ``uint8`` part), its
    :attr:`clean_key` and :attr:`noise_sigma` (Gaussian noise added after it, 0 for none); :attr:`name`
    names them in logs and tables; the keys are part of the LR caches' keys
    (:class:`~esrt_lit.data.datasets.PairStore`)."""

    name = "degradation"
    noise_sigma = 0.0

    @property
    def clean_key(self) -> str:
        """What the noise-free LR depends on."""
        raise NotImplementedError

    @property
    def cache_key(self) -> str:
        """What the LR with its seeded noise depends on."""
        return self.clean_key

    def downsample(self, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """The noise-free LR of a ``uint8 [..., C, H, W]`` HR (``H``, ``W`` multiples of ``scale``)."""
        raise NotImplementedError

    def add_noise(self, lr: Image, seeds: int | Sequence[int] | None = None) -> Image:
        """A ``uint8`` LR (``[..., C, h, w]`` tensor or ``[h, w, C]`` numpy image) plus
        ``noise_sigma * randn``, rounded and saturated to ``uint8``.

        Args:
            lr: the noise-free LR.
            seeds: one seed per image of the batch (``[B, C, h, w]``) or one for a single image: the noise
                is drawn on the CPU (the same on every machine) and moved to ``lr``'s device; None draws
                it on ``lr``'s device from the global generator.
        """
        if not self.noise_sigma:
            return lr
        if isinstance(lr, np.ndarray):
            return _to_hwc(self.add_noise(_to_chw(lr, self.name), seeds))
        if seeds is None:
            noise = torch.randn(lr.shape, device=lr.device)
        else:
            images = lr.reshape(-1, *lr.shape[-3:])
            seed_list = [seeds] if isinstance(seeds, int) else list(seeds)
            if len(seed_list) != images.shape[0]:
                raise ValueError(f"{len(seed_list)} noise seed(s) for a batch of {images.shape[0]} image(s)")
            noise = torch.stack(
                [
                    torch.randn(img.shape, generator=torch.Generator().manual_seed(seed))
                    for img, seed in zip(images, seed_list, strict=True)
                ]
            ).reshape(lr.shape)
            noise = noise.to(lr.device)
        return round_uint8(lr.to(torch.float32) + self.noise_sigma * noise)

    def __call__(
        self, hr: Image, scale: int, seeds: int | Sequence[int] | None = None, noise: bool = True
    ) -> Image:
        """The LR of ``hr``: a ``uint8`` or [0, 1] float tensor ``[..., C, H, W]``, or a ``uint8``
        ``[H, W, C]`` numpy image, in the same type, dtype and device; ``seeds`` as in :meth:`add_noise`;
        ``noise=False`` stops before the noise."""
        if isinstance(hr, np.ndarray):
            return _to_hwc(self(_to_chw(hr, self.name), scale, seeds, noise))
        if hr.ndim < 3:
            raise ValueError(f"{self.name}: tensor of shape {tuple(hr.shape)}; expected (..., C, H, W)")
        scale = _check_scale(scale, hr.shape)
        if hr.dtype == torch.uint8:
            lr = self.downsample(hr, scale)
            return self.add_noise(lr, seeds) if noise else lr
        if not hr.is_floating_point():
            raise TypeError(f"{self.name}: tensor dtype {hr.dtype}; expected uint8 or a float in [0, 1]")
        lr = self(round_uint8(hr.to(torch.float64) * 255), scale, seeds, noise)
        return (lr.to(torch.float32) / 255).to(hr.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache_key!r})"


class Bicubic(Degradation):
    """``BI``: MATLAB ``imresize(HR, 1/s, 'bicubic')`` on ``uint8`` (ESRT's and every table's LR)."""

    name = "bicubic"

    @property
    def clean_key(self) -> str:
        """The key the bicubic LR caches always had (:mod:`esrt_lit.data.datasets`)."""
        return "matlab-bicubic-v1"

    def downsample(self, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """MATLAB-exact bicubic ``uint8`` LR (:func:`~esrt_lit.data.imresize.imresize`)."""
        return imresize(hr, 1 / scale)


class BlurDown(Degradation):
    """``BD`` (RDN's ``imresize_BD(HR, s, 'Gaussian', 1.6)``): ``imfilter(HR, fspecial('gaussian', k,
    sigma), 'replicate')`` (a ``uint8`` result), then one pixel in ``s`` along each axis.

    RDN's function picks the kernel side and the sampling grid by the scale's parity: an odd ``s``
    takes ``k = 2 ceil(3 sigma) + 1`` (7 at x3 with sigma 1.6, the one RDN benchmarks) and
    ``imresize(blurred, 1/s, 'nearest')``, which keeps HR pixel ``s i + (s - 1) / 2`` (0-based) for LR pixel
    ``i``; an even ``s`` takes ``k = 2 ceil(3 sigma) + 2`` (12 for sigma 1.6, centred between pixels as
    ``fspecial`` does, ``imfilter``'s centre at ``k / 2`` 1-based) and ``blurred(s/2 : s : end - s/2)``,
    HR pixel ``s i + s / 2 - 1``.

    Args:
        sigma: the Gaussian's standard deviation in HR pixels (RDN: 1.6).
        kernel_size: the kernel's side; None follows RDN's rule above.
    """

    name = "bd"

    def __init__(self, sigma: float = 1.6, kernel_size: int | None = None) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma={sigma!r}; expected a positive standard deviation")
        if kernel_size is not None and (
            isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or kernel_size < 1
        ):
            raise ValueError(
                f"kernel_size={kernel_size!r}; expected a positive integer, or None for RDN's rule"
            )
        self.sigma = float(sigma)
        self.kernel_size = None if kernel_size is None else int(kernel_size)

    @property
    def clean_key(self) -> str:
        """Kernel rule and sigma."""
        return f"bd-k{self.kernel_size or 'rdn'}-s{self.sigma:g}-v1"

    def kernel_side(self, scale: int) -> int:
        """The kernel's side at ``scale`` (RDN: 7 at x3, 12 at x2 and x4 for sigma 1.6)."""
        if self.kernel_size is not None:
            return self.kernel_size
        if scale == 3 and self.sigma == 1.6:
            return 7
        return 2 * math.ceil(3 * self.sigma) + (2 if scale % 2 == 0 else 1)

    def kernel(self, scale: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``fspecial('gaussian', k, sigma)`` as ``float64 [1, k, k]``: samples at ``-(k-1)/2 .. (k-1)/2``,
        normalised to sum to one (the product of normalised 1-D Gaussians is the normalised 2-D one)."""
        side = self.kernel_side(scale)
        return get_gaussian_kernel2d(
            (side, side),
            (self.sigma, self.sigma),
            force_even=True,
            device=torch.device(device),
            dtype=torch.float64,
        )

    def downsample(self, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """Blur in float64 (``uint8`` rounding matches MATLAB to the last level), round, subsample. kornia
        pads an even kernel ``k/2 - 1`` before and ``k/2`` after, ``imfilter``'s centre."""
        batch = hr.reshape(-1, *hr.shape[-3:]).to(torch.float64)
        blurred = round_uint8(filter2d(batch, self.kernel(scale, hr.device), border_type="replicate"))
        first = scale // 2 - 1 if scale % 2 == 0 else scale // 2
        lr = blurred[..., first::scale, first::scale]
        return lr.reshape(*hr.shape[:-2], *lr.shape[-2:])


class BicubicNoise(Degradation):
    """``DN`` (RDN's ``imresize_DN``): the bicubic ``uint8`` LR plus Gaussian noise of standard deviation
    ``sigma`` on the 0-255 scale, rounded and saturated to ``uint8``.

    Args:
        sigma: the noise level (RDN: 30).
    """

    name = "dn"

    def __init__(self, sigma: float = 30.0) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma={sigma!r}; expected a positive noise level (0-255 scale)")
        self.noise_sigma = float(sigma)

    @property
    def clean_key(self) -> str:
        """The bicubic LR's."""
        return Bicubic().clean_key

    @property
    def cache_key(self) -> str:
        """The bicubic LR's, the noise level and the seeding."""
        return f"{self.clean_key}+dn-s{self.noise_sigma:g}-crc32-v1"

    def downsample(self, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """The bicubic ``uint8`` LR (:class:`Bicubic`)."""
        return imresize(hr, 1 / scale)


def build_degradation(spec: Any) -> Degradation:
    """A degradation from a config value: None (:class:`Bicubic`), a :class:`Degradation`, or a mapping
    with a ``_target_`` (a ``degradation`` group option, as the data module receives it).

    Raises:
        ValueError: anything else, naming the value.
    """
    if spec is None:
        return Bicubic()
    if isinstance(spec, Mapping) and "_target_" in spec:
        from hydra.utils import instantiate

        spec = instantiate(dict(spec))
    if not isinstance(spec, Degradation):
        raise ValueError(
            f"degradation={spec!r}: expected a degradation (bicubic, bd, dn) or a mapping with a _target_ "
            "in esrt_lit.data.degradations"
        )
    return spec
