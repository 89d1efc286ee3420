"""Super-resolve an image of any size: whole-image, streamed (exact, bounded memory) or tiled with
feathered overlaps.

The released code's ``forward_chop`` cuts the LR image into four quarters recursively and is
hard-wired to x4. Here tiles of a fixed LR size are laid on a grid with at least ``overlap`` LR pixels
shared between neighbours; each SR tile is weighted by a separable ramp that rises linearly across
the overlaps it shares (and stays 1 at the image border), and the weighted tiles are normalised by
the summed weights, so seams vanish and memory is bounded by the tile size (plus the output image).

ESRT's EMHA attends within chunks of a quarter of the tokens and its channel attention pools over the
whole input, so tiled and whole-image outputs differ slightly everywhere, not only at seams
(``python -m esrt_lit.bench --full`` reports the PSNR difference on a real photo). ``stream_rows``
gives the whole-image output itself in bounded memory
(:func:`esrt_lit.models.streaming.forward_streamed`); it costs the whole-image time, which grows
with the square of the image's pixel count (attention), where tiles cost time linear in it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = ["amp_context", "resolve_device", "tile_starts", "upscale"]

Image = TypeVar("Image", torch.Tensor, np.ndarray)

_AMP = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is available, else ``cpu``; ``cuda``/``cuda:N`` only when one is.

    Raises:
        ValueError: a CUDA device without one, or a name torch does not know.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r}; expected auto, cpu or cuda[:N]") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device}: no CUDA device is available here; use device=cpu or device=auto")
    return str(device)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` shared.

    The last tile is aligned to the end (it may overlap its neighbour by more); an axis shorter than
    the tile is one tile of the whole length.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramps(starts: list[int], tile: int, length: int, scale: int, like: torch.Tensor) -> list[torch.Tensor]:
    """Per tile, its SR-resolution 1-D blending weight: linear ramps across the shared pixels."""
    size = min(tile, length) * scale
    ramps = []
    for i, start in enumerate(starts):
        w = torch.ones(size, dtype=like.dtype, device=like.device)
        if i > 0:  # shared with the previous tile: rise from ~0 to ~1
            n = (starts[i - 1] + tile - start) * scale
            w[:n] = torch.arange(1, n + 1, dtype=like.dtype, device=like.device) / (n + 1)
        if i < len(starts) - 1:  # shared with the next tile: fall from ~1 to ~0
            n = (start + tile - starts[i + 1]) * scale
            w[size - n :] = torch.minimum(
                w[size - n :], torch.arange(n, 0, -1, dtype=like.dtype, device=like.device) / (n + 1)
            )
        ramps.append(w)
    return ramps


def amp_context(amp: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``amp`` (``"bf16"``/``"fp16"``, a dtype, or True for bf16) on ``device``; None: no-op.

    Raises:
        ValueError: another value.
    """
    if amp is None or amp is False:
        return contextlib.nullcontext()
    if amp is True:
        dtype = torch.bfloat16
    elif isinstance(amp, torch.dtype) and amp in (torch.bfloat16, torch.float16):
        dtype = amp
    elif isinstance(amp, str) and amp.lower() in _AMP:
        dtype = _AMP[amp.lower()]
    else:
        raise ValueError(f"amp={amp!r} is not supported; expected None, 'bf16' or 'fp16'")
    return torch.autocast(device.type, dtype=dtype)


def _to_batch(image: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Image → ``[B, 3, H, W]`` float tensor in [0, 1], and what is needed to convert back."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"numpy image has dtype {image.dtype}; expected uint8 (H, W[, C])")
        grey_2d = image.ndim == 2
        if grey_2d:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ValueError(f"numpy image has shape {image.shape}; expected (H, W), (H, W, 1) or (H, W, 3)")
        channels = image.shape[2]
        x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].float() / 255
        if channels == 1:
            x = x.expand(1, 3, *x.shape[-2:])
        return x, {"kind": "numpy", "channels": channels, "squeeze_hw": grey_2d}
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise ValueError(f"tensor image has dtype {image.dtype}; expected a float tensor in [0, 1]")
        if image.ndim not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(
                f"tensor image has shape {tuple(image.shape)}; expected (3, H, W) or (B, 3, H, W)"
            )
        batched = image.ndim == 4
        meta = {"kind": "torch", "batched": batched, "dtype": image.dtype, "device": image.device}
        return (image if batched else image[None]), meta
    raise TypeError(f"image of type {type(image).__name__}; expected a torch.Tensor or a uint8 numpy array")


def _from_batch(y: torch.Tensor, meta: dict[str, Any]) -> Any:
    if meta["kind"] == "torch":
        # a normal tensor, not an inference tensor, so that callers may modify it in place
        y = y.to(device=meta["device"], dtype=meta["dtype"], copy=True)
        return y if meta["batched"] else y[0]
    y = y[0]
    if meta["channels"] == 1:
        y = y.mean(dim=0, keepdim=True)
    out = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return out[:, :, 0] if meta["squeeze_hw"] else out


def _batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def upscale(
    model: nn.Module,
    image: Image,
    tile: int | None = None,
    overlap: int = 16,
    scale: int | None = None,
    batch_tiles: int = 1,
    amp: str | torch.dtype | bool | None = None,
    stream_rows: int | None = None,
) -> Image:
    """Super-resolve ``image`` with ``model`` under :func:`torch.inference_mode`.

    Args:
        model: an SR network mapping ``[B, 3, h, w]`` to ``[B, 3, h·s, w·s]`` (its mode is not changed;
            call ``.eval()`` first).
        image: a float tensor in [0, 1] of shape ``(3, H, W)`` or ``(B, 3, H, W)``, or a uint8 numpy
            array ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)`` (grey is replicated to RGB and the result
            averaged back).
        tile: LR tile side in pixels; None processes the whole image at once.
        overlap: LR pixels shared by neighbouring tiles (blended with linear ramps).
        scale: the SR factor; default ``model.scale``, else read off the first output. A value that
            disagrees with the model's output is an error.
        batch_tiles: tiles run per forward pass (more is faster on a GPU, needs more memory).
        amp: None (model's precision), ``"bf16"`` or ``"fp16"`` autocast.
        stream_rows: run an :class:`~esrt_lit.models.ESRT` with
            :func:`~esrt_lit.models.streaming.forward_streamed` in blocks of this many LR rows: the
            whole-image output to float rounding, in a fraction of its memory. Excludes ``tile``.

    Returns:
        The SR image of the input's type: a tensor on the input's device and dtype (not clamped), or a
        uint8 numpy array of the input's layout (clamped and rounded).

    Raises:
        ValueError: a malformed image, ``tile``/``overlap``/``batch_tiles``/``stream_rows`` out of
            range, ``stream_rows`` with ``tile`` or with a network other than ESRT, or a scale that
            disagrees with the model.
    """
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile={tile!r}; expected None or a positive integer")
    if tile is not None:
        min_size = int(getattr(model, "min_size", 1))
        if tile < min_size:
            raise ValueError(f"tile={tile} is below the model's minimum input side {min_size}")
        if not 0 <= overlap < tile:
            raise ValueError(f"overlap={overlap}; expected 0 <= overlap < tile={tile}")
    if batch_tiles < 1:
        raise ValueError(f"batch_tiles={batch_tiles}; expected a positive integer")
    forward = _streamed(model, stream_rows, tile) if stream_rows is not None else model
    x, meta = _to_batch(image)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None else torch.float32
    x = x.to(device=device, dtype=dtype)
    sr = _Runner(forward, amp, device, dtype, scale if scale is not None else getattr(model, "scale", None))
    with torch.inference_mode():
        out = sr(x) if tile is None else _tiled(sr, x, tile, overlap, batch_tiles)
    return _from_batch(out, meta)


def _streamed(model: nn.Module, rows: Any, tile: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    from esrt_lit.models import ESRT
    from esrt_lit.models.streaming import forward_streamed

    if tile is not None:
        raise ValueError(f"stream_rows={rows!r} and tile={tile!r}: choose one (streaming is whole-image)")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"stream_rows={rows!r}; expected None or a positive number of LR rows")
    if not isinstance(model, ESRT):
        raise ValueError(f"stream_rows needs an ESRT network; got {type(model).__name__}")
    return functools.partial(forward_streamed, model, rows=rows)


class _Runner:
    """Calls the model (under autocast if asked) and checks that it upscales by one integer factor."""

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        amp: Any,
        device: torch.device,
        dtype: torch.dtype,
        scale: int | None,
    ) -> None:
        self.model, self.amp, self.device, self.dtype, self.scale = model, amp, device, dtype, scale

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with amp_context(self.amp, self.device):
            y = self.model(batch)
        ratio_h, ratio_w = y.shape[-2] / batch.shape[-2], y.shape[-1] / batch.shape[-1]
        if ratio_h != ratio_w or ratio_h != int(ratio_h) or self.scale not in (None, int(ratio_h)):
            raise ValueError(
                f"the model maps {tuple(batch.shape[-2:])} to {tuple(y.shape[-2:])}, "
                f"which is not an x{self.scale if self.scale is not None else 'N'} upscaling"
            )
        self.scale = int(ratio_h)
        return y.to(self.dtype)


def _tiled(sr: _Runner, x: torch.Tensor, tile: int, overlap: int, batch_tiles: int) -> torch.Tensor:
    """Tile, upscale ``batch_tiles`` tiles per call, blend with separable ramps and normalise."""
    b, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    origins = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    out = wy = wx = None
    s = 0
    for img in range(b):
        for group in _batches(origins, batch_tiles):
            tiles = sr(
                torch.cat([x[img : img + 1, :, ys[i] : ys[i] + th, xs[j] : xs[j] + tw] for i, j in group])
            )
            if out is None:
                s = sr.scale
                out = torch.zeros(b, tiles.shape[1], h * s, w * s, dtype=x.dtype, device=x.device)
                wy, wx = _ramps(ys, tile, h, s, out), _ramps(xs, tile, w, s, out)
            for k, (i, j) in enumerate(group):
                top, left = ys[i] * s, xs[j] * s
                out[img, :, top : top + th * s, left : left + tw * s] += tiles[k] * (
                    wy[i][:, None] * wx[j][None, :]
                )
    # Every grid combination of row and column tiles is present, so the summed weight is separable.
    norm_y = torch.zeros(h * s, dtype=x.dtype, device=x.device)
    norm_x = torch.zeros(w * s, dtype=x.dtype, device=x.device)
    for start, ramp in zip(ys, wy, strict=True):
        norm_y[start * s : start * s + ramp.numel()] += ramp
    for start, ramp in zip(xs, wx, strict=True):
        norm_x[start * s : start * s + ramp.numel()] += ramp
    return out.div_(norm_y[:, None] * norm_x[None, :])
