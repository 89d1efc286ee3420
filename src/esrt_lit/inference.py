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

:func:`upscale_files` does it for image files (:func:`upscale_from_config` for
``python -m esrt_lit.upscale``): grey stays grey, an alpha channel is upscaled with MATLAB bicubic
beside the network's colour, and before anything is written every input is decoded and checked
(readable, 8-bit, large enough for the network) and every target: no existing file is replaced unless
asked, the inputs' folder is never the output folder, and each output is written atomically.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from esrt_lit.data.imresize import imresize, round_uint8
from esrt_lit.data.io import (
    IMAGE_SUFFIXES,
    image_to_tensor,
    list_images,
    read_image,
    tensor_to_image,
    write_image,
)
from esrt_lit.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

__all__ = [
    "AUTO_ESRT_TILE",
    "AUTO_TILE",
    "AUTO_TILE_DB",
    "AUTO_WHOLE_PIXELS",
    "EXACT",
    "amp_context",
    "choose_tile",
    "resolve_device",
    "tile_starts",
    "upscale",
    "upscale_files",
    "upscale_from_config",
    "upscale_image",
]

#: The scale of ``model=bicubic`` in :func:`upscale_from_config` when none is given.
BICUBIC_UPSCALE = 4

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
        x = image_to_tensor(image, batch=True)
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
    out = tensor_to_image(y)
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


# ----------------------------------------------------------------------------- files

#: The LR tile side of ``tile=auto`` above ``max_whole_pixels`` for networks other than ESRT (their
#: cost is linear in the pixels, so only memory matters).
AUTO_TILE = 256
#: ``tile=exact``: stream large images in row blocks (the whole-image output in bounded memory).
EXACT = "exact"


#: ``tile=auto`` for an ESRT: the whole image up to this many LR pixels (128x128), tiles above. ESRT's
#: EMHA costs the square of the LR pixels (tokens), tiles of a fixed side cost time linear in them:
#: at 192x192 LR tiles of 64 are 1.7-2.2x faster than the whole image, at 384x384 6-7x, at 128x128
#: 0.8-0.9x (x2, x3 and x4 alike; ``tools/auto_tile_times.py``, ``docs/performance.md``, "Choosing
#: tile=auto").
AUTO_WHOLE_PIXELS = 128 * 128
#: The LR tile side of ``tile=auto`` above :data:`AUTO_WHOLE_PIXELS` for an ESRT (overlap 16): the
#: fastest of 64, 96, 128 and 192 measured (tied with 96 at 256x256).
AUTO_ESRT_TILE = 64
#: The largest Set5/Set14 mean PSNR difference (dB) measured between those tiles and the whole image
#: with the shipped x2 and x4 weights (+0.002 to +0.011 dB, the tiles higher).
AUTO_TILE_DB = 0.011


def choose_tile(
    tile: int | str | None, lr_hw: tuple[int, int], max_whole_pixels: int, esrt_scale: int | None = None
) -> tuple[int | str | None, str]:
    """How to run an image, and why: ``(mode, reason)``, the mode a LR tile side, None (whole image) or
    ``"exact"`` (streamed in row blocks: the whole-image output in bounded memory).

    ``auto`` for an ESRT (``esrt_scale`` its scale): the whole image up to :data:`AUTO_WHOLE_PIXELS`
    LR pixels (and ``max_whole_pixels``), tiles of :data:`AUTO_ESRT_TILE` above; for other networks
    (``esrt_scale=None``; their cost is linear in the pixels) the whole image up to
    ``max_whole_pixels``, tiles of :data:`AUTO_TILE` above. ``exact``: the whole image up to
    ``max_whole_pixels``, streamed above. ``null``: the whole image; ``N``: tiles of ``N``.

    Raises:
        ConfigError: another ``tile``.
    """
    if not (
        tile in ("auto", EXACT, None) or (isinstance(tile, int) and not isinstance(tile, bool) and tile > 0)
    ):
        raise ConfigError(f"tile={tile!r}; expected auto, exact, null or a positive number of LR pixels")
    h, w = lr_hw
    size = f"{w}x{h} LR" + (f" at x{esrt_scale}" if esrt_scale is not None else "")
    pixels = h * w
    if tile == "auto" and esrt_scale is None:
        if pixels <= max_whole_pixels:
            return None, f"{size}: whole image (up to max_whole_pixels={max_whole_pixels})"
        return AUTO_TILE, (
            f"{size}: tiles of {AUTO_TILE} (above max_whole_pixels={max_whole_pixels}) - tile=exact for the "
            "whole-image output"
        )
    if tile == "auto":
        if pixels <= min(AUTO_WHOLE_PIXELS, max_whole_pixels):
            return None, f"{size}: whole image (exact; faster than tiles up to {AUTO_WHOLE_PIXELS} LR pixels)"
        return AUTO_ESRT_TILE, (
            f"{size}: tiles of {AUTO_ESRT_TILE} (near-exact: PSNR within {AUTO_TILE_DB:g} dB) - tile=exact for the "
            "whole-image output"
        )
    if tile == EXACT:
        if pixels <= max_whole_pixels:
            return None, f"{size}: whole image (tile=exact)"
        return EXACT, f"{size}: streamed in row blocks (tile=exact above max_whole_pixels={max_whole_pixels})"
    if tile is None:
        return None, f"{size}: whole image (tile=null)"
    return tile, f"{size}: tiles of {tile} (tile={tile})"


def upscale_image(
    net: nn.Module, image: np.ndarray, scale: int, tile: int | str | None = None, overlap: int = 16
) -> np.ndarray:
    """Upscale a ``uint8`` HWC image with 1, 3 or 4 channels; returns the same layout, ``s`` times larger.

    The colour (or grey) part goes through ``net``; an alpha channel is upscaled with MATLAB bicubic.
    ``tile="exact"`` streams an ESRT in blocks of ``DEFAULT_ROWS`` LR rows (the whole-image output in
    bounded memory); other networks then run on the whole image.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected a uint8 HWC image with 1, 3 or 4 channels, got {image.dtype} {image.shape}"
        )
    colour = image[:, :, :3] if image.shape[2] == 4 else image
    if tile == EXACT:
        from esrt_lit.models import ESRT
        from esrt_lit.models.streaming import DEFAULT_ROWS

        how = {"stream_rows": DEFAULT_ROWS if isinstance(net, ESRT) else None}
    else:
        how = {"tile": tile, "overlap": overlap}
    out = upscale(net, np.ascontiguousarray(colour), scale=scale, **how)
    if image.shape[2] == 4:
        alpha = round_uint8(imresize(image[:, :, 3:].astype(np.float64), scale))
        out = np.concatenate([out, alpha], axis=2)
    return out


def _inputs(path: Path) -> list[Path]:
    if path.is_dir():
        return list_images(path)
    if not path.is_file():
        raise FileNotFoundError(f"input={path}: no such image or folder")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"input={path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
    return [path]


def _check_targets(files: list[Path], out_dir: Path, overwrite: bool) -> list[Path]:
    """The output paths, checked before any work: a folder, not the inputs', no existing file replaced
    unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output={out_dir} is a file; expected a folder for the upscaled images")
    targets = [out_dir / f.name for f in files]
    inputs = {f.resolve() for f in files}
    if any(t.resolve() in inputs for t in targets):
        raise ValueError(
            f"output={out_dir} is the folder of the inputs: their originals would be replaced; choose another folder"
        )
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist(s); pass overwrite=true to replace, or another output"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(f"output={out_dir}: folder not writable")
    return targets


def _check_inputs(files: list[Path], net: nn.Module) -> None:
    """Decode every input once before any work: unreadable, 16-bit or too small images fail now, named."""
    min_size = int(getattr(net, "min_size", 1))
    for path in files:
        h, w = read_image(path, keep_alpha=True).shape[:2]
        if h < min_size or w < min_size:
            raise ValueError(
                f"{path}: image of {w}x{h} pixels is smaller than {type(net).__name__}'s smallest input, "
                f"{min_size}x{min_size}"
            )


def upscale_files(
    net: nn.Module,
    scale: int,
    inputs: str | Path,
    output: str | Path,
    tile: int | str | None = "auto",
    overlap: int = 16,
    max_whole_pixels: int = 512 * 512,
    overwrite: bool = False,
) -> list[Path]:
    """Upscale an image or every image of a folder into ``output``, keeping file names.

    Every input and target is checked before anything is written (see the module docstring). Each
    image is run as :func:`choose_tile` says (``tile``; for an ESRT, ``auto`` applies the measured
    :data:`AUTO_WHOLE_PIXELS` rule); per image, an INFO line says which mode and why before the work, and one after it gives
    the time, the time elapsed and an estimate of the time left (the mean per image so far).

    Raises:
        FileNotFoundError: ``inputs`` does not exist.
        FileExistsError: a target exists and ``overwrite`` is false (the message names them).
        NotADirectoryError, PermissionError: ``output`` is a file, or cannot be written.
        ValueError: an input is unreadable, not 8-bit or too small (named), or ``output`` is the inputs' folder.
    """
    from esrt_lit.models import ESRT

    choose_tile(tile, (0, 0), 0)  # a bad tile fails before any work
    files = _inputs(Path(inputs))
    targets = _check_targets(files, Path(output), overwrite)
    _check_inputs(files, net)
    esrt_scale = scale if isinstance(net, ESRT) else None  # the measured auto rule is ESRT's
    written = []
    started = time.perf_counter()
    for index, (src, dst) in enumerate(zip(files, targets, strict=True), 1):
        image = read_image(src, keep_alpha=True)
        image_tile, why = choose_tile(tile, image.shape[:2], max_whole_pixels, esrt_scale)
        log.info("[%d/%d] %s: %s", index, len(files), src.name, why)
        start = time.perf_counter()
        try:
            result = upscale_image(net, image, scale, image_tile, overlap)
            written.append(write_image(dst, result, overwrite=overwrite))
        except Exception as err:
            done = f"; {len(written)} of {len(files)} outputs were written to {output}" if written else ""
            raise ValueError(f"{src}: {err}{done}") from err
        now = time.perf_counter()
        log.info(
            "[%d/%d] %s (%dx%d, %d ch) -> %s (%dx%d) in %.2f s; %.1f s elapsed, ETA %.1f s",
            index,
            len(files),
            src.name,
            image.shape[1],
            image.shape[0],
            image.shape[2],
            dst,
            result.shape[1],
            result.shape[0],
            now - start,
            now - started,
            (now - started) / index * (len(files) - index),
        )
    return written


def upscale_from_config(cfg: DictConfig) -> list[Path]:
    """Upscale what an ``upscale`` config (``conf/upscale.yaml``) names, with the network it names (the
    weights shipped for ``scale`` when no ``ckpt_path``); returns the written files.

    Raises:
        ConfigError: ``input``/``output`` missing, conflicting or unknown options.
    """
    from omegaconf import OmegaConf

    from esrt_lit.config_schema import check_schema
    from esrt_lit.models.bicubic import is_bicubic
    from esrt_lit.models.checkpoint import BICUBIC, describe_weights, load_network, network_source
    from esrt_lit.models.config import check_scale

    check_schema(cfg)
    missing = [key for key in ("input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} required: give input=<an image or a folder of images> output=<a folder>"
        )
    scale = check_scale(cfg.scale) if cfg.get("scale") is not None else None
    # no checkpoint: the weights shipped for the scale
    source = network_source(cfg.get("ckpt_path"), is_bicubic(cfg.get("model")), scale, shipped=True)
    if source == BICUBIC:
        scale = scale or BICUBIC_UPSCALE
    net = load_network(source, scale, key="ckpt_path" if cfg.get("ckpt_path") else None)
    scale = int(net.scale)
    if source != BICUBIC:
        log.info("weights: %s", describe_weights(source))
    net = net.to(resolve_device(cfg.device))
    return upscale_files(
        net,
        scale,
        cfg.input,
        cfg.output,
        tile=cfg.tile,
        overlap=cfg.tile_overlap,
        max_whole_pixels=cfg.max_whole_pixels,
        overwrite=cfg.overwrite,
    )
