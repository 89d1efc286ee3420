"""Upscale images: ``python -m esrt_lit.upscale input=PATH output=DIR ckpt_path=...`` (or ``model=bicubic``).

``input`` is an image or a folder of images; each result is written under ``output`` with the input's
file name. Grey images stay grey (the network sees the grey channel repeated, its output is averaged
back); an RGBA image's colour goes through the network and its alpha is upscaled with MATLAB bicubic
and re-attached. Large images are processed in overlapping tiles (:func:`esrt_lit.inference.upscale`),
or with ``tile=exact`` streamed in row blocks, which gives the whole-image output in bounded memory.
No existing file is replaced unless ``overwrite=true``: the run checks every target before writing.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (8x slower training on a
# busy 2-core machine); sleeping waiters cost little. Set before torch loads OpenMP; the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch import nn

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import IMAGE_SUFFIXES, list_images, read_image, write_image
from esrt_lit.eval import resolve_device
from esrt_lit.evaluation import load_model
from esrt_lit.inference import upscale as upscale_array
from esrt_lit.models import ESRT
from esrt_lit.models.streaming import DEFAULT_ROWS
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.task import ConfigError, extras, task_wrapper

__all__ = ["choose_tile", "main", "upscale_files", "upscale_image"]

log = logging.getLogger(__name__)

CONF_DIR = str(PROJECT_ROOT / "conf")
AUTO_TILE = 256
EXACT = "exact"

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

    Raises:
        FileNotFoundError: ``inputs`` does not exist.
        FileExistsError: a target exists and ``overwrite`` is false (every target is checked before
            anything is written; the message names them).
    """
    files = _inputs(Path(inputs))
    out_dir = Path(output)
    targets = [out_dir / f.name for f in files]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist(s); pass overwrite=true to replace, or another output"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src, dst in zip(files, targets, strict=True):
        image = read_image(src, keep_alpha=True)
        image_tile = choose_tile(tile, image.shape[:2], max_whole_pixels)
        start = time.perf_counter()
        result = upscale_image(net, image, scale, image_tile, overlap)
        written.append(write_image(dst, result, overwrite=overwrite))
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


def _network(cfg: DictConfig) -> tuple[nn.Module, int]:
    bicubic = str(OmegaConf.select(cfg, "model._target_", default="")).endswith("Bicubic")
    if cfg.get("ckpt_path"):
        if bicubic:
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} and model=bicubic: give one of them")
        try:
            net = load_model(Path(cfg.ckpt_path))
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: {err}") from err
        return net, int(net.scale)
    if bicubic:
        net = hydra.utils.instantiate(cfg.model)
        return net, int(net.scale)
    raise ConfigError(
        "no network: give ckpt_path=<checkpoint> (Lightning .ckpt or released ESRT weights) or model=bicubic"
    )


@task_wrapper
def upscale(cfg: DictConfig) -> list[Path]:
    """Run the configured upscaling; returns the written files."""
    net, scale = _network(cfg)
    net = net.eval().to(resolve_device(cfg.device))
    try:
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
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise ConfigError(str(err)) from err


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="upscale")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: upscale, then list what was written."""
    extras(cfg)
    try:
        written = upscale(cfg)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    print("\n".join(str(p) for p in written))  # noqa: T201 - the CLI's product


if __name__ == "__main__":
    main()
