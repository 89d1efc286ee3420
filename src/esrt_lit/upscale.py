"""Upscale images: ``python -m esrt_lit.upscale input=PATH output=DIR ckpt_path=...`` (or ``model=bicubic``).

``input`` is an image or a folder of images; each result is written under ``output`` with the input's
file name. Grey images stay grey (the network sees the grey channel repeated, its output is averaged
back); an RGBA image's colour goes through the network and its alpha is upscaled with MATLAB bicubic
and re-attached. Large images are processed in overlapping tiles (:func:`esrt_lit.inference.upscale`),
or with ``tile=exact`` streamed in row blocks, which gives the whole-image output in bounded memory.
Before anything is written, every input is decoded and checked (readable, 8-bit, large enough for the
network) and every target: no existing file is replaced unless ``overwrite=true``, and the input folder
is never the output folder. Each output is written atomically.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from torch import nn

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import IMAGE_SUFFIXES, list_images, read_image, write_image
from esrt_lit.inference import resolve_device
from esrt_lit.inference import upscale as upscale_array
from esrt_lit.models import ESRT, Bicubic
from esrt_lit.models.esrt import check_scale
from esrt_lit.models.streaming import DEFAULT_ROWS
from esrt_lit.paths import CONF_DIR
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.task import ConfigError, network_spec, run_task

__all__ = ["choose_tile", "main", "upscale_files", "upscale_image"]

log = logging.getLogger(__name__)

AUTO_TILE = 256
EXACT = "exact"
#: The scale of ``model=bicubic`` when none is given.
BICUBIC_SCALE = 4

register_resolvers()


def choose_tile(tile: int | str | None, lr_hw: tuple[int, int], max_whole_pixels: int) -> int | str | None:
    """How to run an image: a LR tile side, None (whole image) or ``"exact"`` (streamed).

    ``auto`` tiles (``AUTO_TILE``) above ``max_whole_pixels`` LR pixels; ``exact`` streams above it.
    """
    if tile in ("auto", EXACT):
        if lr_hw[0] * lr_hw[1] <= max_whole_pixels:
            return None
        return AUTO_TILE if tile == "auto" else EXACT
    if tile is None or (isinstance(tile, int) and not isinstance(tile, bool) and tile > 0):
        return tile
    raise ConfigError(f"tile={tile!r}; expected auto, exact, null or a positive number of LR pixels")


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
        how = {"stream_rows": DEFAULT_ROWS if isinstance(net, ESRT) else None}
    else:
        how = {"tile": tile, "overlap": overlap}
    out = upscale_array(net, np.ascontiguousarray(colour), scale=scale, **how)
    if image.shape[2] == 4:
        alpha = imresize(image[:, :, 3:].astype(np.float64), scale)
        alpha = np.clip(np.floor(alpha + 0.5), 0, 255).astype(np.uint8)
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


def _check_inputs(files: list[Path], net: nn.Module, scale: int) -> None:
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

    Every input and target is checked before anything is written (see the module docstring).

    Raises:
        FileNotFoundError: ``inputs`` does not exist.
        FileExistsError: a target exists and ``overwrite`` is false (the message names them).
        NotADirectoryError, PermissionError: ``output`` is a file, or cannot be written.
        ValueError: an input is unreadable, not 8-bit or too small (named), or ``output`` is the inputs' folder.
    """
    choose_tile(tile, (0, 0), 0)  # a bad tile fails before any work
    files = _inputs(Path(inputs))
    targets = _check_targets(files, Path(output), overwrite)
    _check_inputs(files, net, scale)
    written = []
    for src, dst in zip(files, targets, strict=True):
        image = read_image(src, keep_alpha=True)
        image_tile = choose_tile(tile, image.shape[:2], max_whole_pixels)
        start = time.perf_counter()
        try:
            result = upscale_image(net, image, scale, image_tile, overlap)
            written.append(write_image(dst, result, overwrite=overwrite))
        except Exception as err:
            done = f"; {len(written)} of {len(files)} outputs were written to {output}" if written else ""
            raise ValueError(f"{src}: {err}{done}") from err
        log.info(
            "%s (%dx%d, %d ch) -> %s (%dx%d)%s in %.2f s",
            src.name,
            image.shape[1],
            image.shape[0],
            image.shape[2],
            dst,
            result.shape[1],
            result.shape[0],
            f", tiles of {image_tile}"
            if isinstance(image_tile, int)
            else f", {image_tile}"
            if image_tile
            else "",
            time.perf_counter() - start,
        )
    return written


def upscale(cfg: DictConfig) -> list[Path]:
    """Run the configured upscaling; returns the written files."""
    scale = check_scale(cfg.scale) if cfg.get("scale") is not None else None
    net, scale = network_spec(cfg, scale)
    if net == "bicubic":
        scale = scale or BICUBIC_SCALE
        net = Bicubic(scale)
    net = net.eval().to(resolve_device(cfg.device))
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


def _upscale_and_report(cfg: DictConfig) -> None:
    print("\n".join(str(p) for p in upscale(cfg)))  # noqa: T201 - the CLI's product


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="upscale")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: upscale, then list what was written."""
    run_task(_upscale_and_report, cfg)


if __name__ == "__main__":
    main()
