"""MATLAB-exact ``imresize(A, scale, 'bicubic')`` for torch tensors and numpy images.

The published SR tables (ESRT, Lu et al., arXiv 2108.11084, Sec. 4.1 and Table 2; and every paper it
compares with) make their LR inputs and their bicubic baseline with MATLAB's ``imresize``. Its
behaviour differs from ``torch.nn.functional.interpolate(..., antialias=True)``, OpenCV and PIL, and
the difference moves PSNR by tenths of a dB, so this module replicates it exactly:

* cubic kernel with ``a = -0.5`` (Keys), support 4;
* when shrinking (``scale < 1``) the kernel is widened by ``1 / scale`` (antialiasing);
* output size ``ceil(scale * size)``; sample ``k`` (1-based) maps to ``u = k / scale + (1 - 1 / scale) / 2``;
* taps that fall outside the image are mirrored symmetrically (``aux = [1:n, n:-1:1]``), weights are
  normalised to sum to one and all-zero tap columns are dropped;
* the two axes are resized one after the other, the axis with the smaller scale first (MATLAB's
  stable ``sort(scale)``: height first on ties);
* the output class equals the input class after *each* axis (``imresizemex``): a ``uint8`` image is
  rounded half away from zero and saturated to 0..255 between the two passes, a float image is not
  rounded at all.

The maths runs in torch (one implementation for both front ends): per-axis weights and mirrored indices
are precomputed in float64 (and cached), and each pass accumulates, tap by tap, a gather along the axis
times its weights. Gathers are used rather than a dense matmul because they never go through TF32 on
GPUs and keep exact results for the dyadic weights of x2/x4, where ``uint8`` rounding ties (``.5``)
really occur.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, overload

import numpy as np
import torch

__all__ = ["check_factor", "imresize", "output_size", "round_uint8"]

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


@lru_cache(maxsize=256)
def _contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices of every output sample along one axis.

    Mirrors MATLAB's private ``contributions`` function.

    Returns:
        ``(weights, indices)``, both ``(out_length, taps)``; weights are float64 and sum to one per row.
    """
    if scale < 1 and antialiasing:

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

        kernel_width = _KERNEL_WIDTH / scale
    else:
        kernel = _cubic
        kernel_width = _KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may be out of range
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, mirror.size)]
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(weights[:, keep]), np.ascontiguousarray(indices[:, keep])


def output_size(
    size: tuple[int, int], scale: float | None = None, output_shape: tuple[int, int] | None = None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """MATLAB's output size and per-axis scale for an ``(H, W)`` input.

    Exactly one of ``scale`` (output is ``ceil(scale * size)``) and ``output_shape`` (scale is
    ``output_shape / size`` per axis) must be given.

    Returns:
        ``((out_h, out_w), (scale_h, scale_w))``.

    Example:
        >>> output_size((255, 171), 1 / 3)
        ((85, 57), (0.3333333333333333, 0.3333333333333333))
        >>> output_size((5, 7), 2)
        ((10, 14), (2.0, 2.0))
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"imresize: input of size {h}x{w}; expected at least 1x1")
    if scale is not None:
        scale = float(scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"imresize: scale={scale}; expected a positive finite number")
        return (math.ceil(scale * h), math.ceil(scale * w)), (scale, scale)
    out_h, out_w = (int(v) for v in output_shape)  # type: ignore[union-attr]
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize: output_shape={output_shape}; expected positive sizes")
    return (out_h, out_w), (out_h / h, out_w / w)


def check_factor(value: Any, key: str = "scale") -> int:
    """``value`` as an integer resize factor (any positive integer; ESRT's own are
    :data:`esrt_lit.models.config.SCALES`).

    Raises:
        ValueError: not a positive integer, naming ``key``.
    """
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or int(value) != value or value < 1:
        raise ValueError(f"{key}={value!r}; expected a positive integer")
    return int(value)


@overload
def round_uint8(x: torch.Tensor) -> torch.Tensor: ...


@overload
def round_uint8(x: np.ndarray) -> np.ndarray: ...


def round_uint8(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """MATLAB's double-to-uint8 conversion: saturate to 0..255, round half away from zero."""
    if isinstance(x, np.ndarray):
        return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)
    return torch.floor(x.clamp(0, 255) + 0.5).to(torch.uint8)


def _resize_axis(x: torch.Tensor, axis: int, weights: np.ndarray, indices: np.ndarray) -> torch.Tensor:
    """Resize ``x`` (float) along ``axis`` (-2 or -1) with precomputed MATLAB contributions.

    Accumulates one tap at a time, in MATLAB's order, so memory stays at twice the output's size.
    """
    w = torch.from_numpy(weights).to(device=x.device, dtype=x.dtype)
    idx = torch.from_numpy(indices).to(device=x.device)
    if axis == -2:
        w = w[:, :, None]  # broadcast over the width
    out = x.index_select(axis, idx[:, 0]) * w[:, 0]
    for tap in range(1, idx.shape[1]):
        out += x.index_select(axis, idx[:, tap]) * w[:, tap]
    return out


def _imresize_torch(
    x: torch.Tensor, scale: float | None, output_shape: tuple[int, int] | None, antialiasing: bool
) -> torch.Tensor:
    if x.ndim < 2:
        raise ValueError(f"imresize: tensor of shape {tuple(x.shape)}; expected (..., H, W)")
    in_h, in_w = x.shape[-2:]
    (out_h, out_w), (scale_h, scale_w) = output_size((in_h, in_w), scale, output_shape)
    is_uint8 = x.dtype == torch.uint8
    if is_uint8:
        work_dtype = torch.float64
    elif x.dtype in (torch.float16, torch.bfloat16):
        work_dtype = torch.float32
    elif x.is_floating_point():
        work_dtype = x.dtype
    else:
        raise TypeError(f"imresize: tensor dtype {x.dtype}; expected a floating dtype or uint8")
    out = x
    # MATLAB: [~, order] = sort(scale) (stable), i.e. the axis with the smaller scale first.
    axes = ((-2, in_h, out_h, scale_h), (-1, in_w, out_w, scale_w))
    if scale_w < scale_h:
        axes = axes[::-1]
    for axis, in_len, out_len, axis_scale in axes:
        weights, indices = _contributions(in_len, out_len, axis_scale, antialiasing)
        out = _resize_axis(out.to(work_dtype), axis, weights, indices)
        if is_uint8:
            out = round_uint8(out)  # imresizemex returns the input's class after every pass
    return out if is_uint8 else out.to(x.dtype)


@overload
def imresize(
    image: torch.Tensor,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> torch.Tensor: ...


@overload
def imresize(
    image: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> np.ndarray: ...


def imresize(
    image: torch.Tensor | np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> torch.Tensor | np.ndarray:
    """Resize like MATLAB's ``imresize(image, scale, 'bicubic')``.

    Args:
        image: a torch tensor ``[..., H, W]`` (e.g. ``[C, H, W]`` or ``[B, C, H, W]``; float of any
            precision, on any device, or ``uint8``), or a numpy image ``[H, W]`` / ``[H, W, C]``
            (``uint8`` or float).
        scale: resize factor, e.g. ``4`` to enlarge or ``1 / 4`` to shrink; the output is
            ``ceil(scale * H) x ceil(scale * W)``.
        output_shape: ``(out_h, out_w)`` instead of ``scale`` (per-axis scale ``out / in``).
        antialiasing: widen the kernel by ``1 / scale`` when shrinking (MATLAB's default, True).

    Returns:
        The resized image, same type, layout and dtype as ``image``. Float results are not clamped
        (bicubic overshoots); ``uint8`` results are rounded half away from zero and saturated after
        each axis, as MATLAB does.

    Example:
        >>> import numpy as np
        >>> imresize(np.array([[0, 255]], dtype=np.uint8), 2)  # 52 = round(255 * (0.2265625 - 0.0234375))
        array([[  0,  52, 203, 255],
               [  0,  52, 203, 255]], dtype=uint8)
    """
    if isinstance(image, torch.Tensor):
        return _imresize_torch(image, scale, output_shape, antialiasing)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"imresize: got {type(image).__name__}; expected a torch.Tensor or numpy.ndarray")
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize: numpy image of shape {image.shape}; expected (H, W) or (H, W, C)")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"imresize: numpy dtype {image.dtype}; expected uint8 or a float dtype")
    array = np.ascontiguousarray(image)
    chw = torch.from_numpy(array if array.flags.writeable else array.copy())
    chw = chw[None] if image.ndim == 2 else chw.permute(2, 0, 1)
    out = _imresize_torch(chw, scale, output_shape, antialiasing)
    out = out[0] if image.ndim == 2 else out.permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())
