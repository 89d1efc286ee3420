"""Upscale images: ``python -m esrt_lit.upscale input=PATH output=DIR [scale=2|4] [ckpt_path=...]``.

Without ``ckpt_path`` the weights shipped with the package for ``scale`` do the work
(:mod:`esrt_lit.models.pretrained`); ``ckpt_path`` takes any checkpoint, ``model=bicubic`` bicubic.

``input`` is an image or a folder of images; each result is written under ``output`` with the input's
file name (the work is :func:`esrt_lit.inference.upscale_files`). Grey images stay grey (the network sees the grey channel repeated, its output is averaged
back); an RGBA image's colour goes through the network and its alpha is upscaled with MATLAB bicubic
and re-attached. Large images are processed in overlapping tiles (:func:`esrt_lit.inference.upscale`),
or with ``tile=exact`` streamed in row blocks, which gives the whole-image output in bounded memory.
Before anything is written, every input is decoded and checked (readable, 8-bit, large enough for the
network) and every target: no existing file is replaced unless ``overwrite=true``, and the input folder
is never the output folder. Each output is written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from esrt_lit.inference import resolve_device, upscale_files
from esrt_lit.models import Bicubic
from esrt_lit.models.esrt import check_scale
from esrt_lit.paths import CONF_DIR
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.task import ConfigError, network_spec, run_task

__all__ = ["main", "upscale"]

log = logging.getLogger(__name__)

#: The scale of ``model=bicubic`` when none is given.
BICUBIC_SCALE = 4

register_resolvers()


def upscale(cfg: DictConfig) -> list[Path]:
    """Run the configured upscaling; returns the written files."""
    missing = [key for key in ("input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} required: give input=<an image or a folder of images> output=<a folder>"
        )
    scale = check_scale(cfg.scale) if cfg.get("scale") is not None else None
    net, scale = network_spec(cfg, scale, shipped=True)  # no checkpoint: the weights shipped for the scale
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
