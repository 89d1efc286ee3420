"""Upscale images: ``python -m esrt_lit.upscale input=PATH output=DIR [scale=2|4] [ckpt_path=...]``.

Without ``ckpt_path`` the weights shipped with the package for ``scale`` do the work
(:data:`esrt_lit.models.checkpoint.PRETRAINED`; an INFO line names them and how they were made); ``ckpt_path``
takes any checkpoint, ``model=bicubic`` bicubic.

``input`` is an image or a folder of images; each result is written under ``output`` with the input's
file name (the work is :func:`esrt_lit.inference.upscale_from_config`). Grey images stay grey (the network sees the grey channel repeated, its output is averaged
back); an RGBA image's colour goes through the network and its alpha is upscaled with MATLAB bicubic
and re-attached. ``tile=auto`` runs each image in the fastest measured mode for its size
(:func:`esrt_lit.inference.choose_tile`: the whole image when small, overlapping tiles above, whose
output differs slightly), ``tile=exact`` keeps the whole-image output (streamed in row blocks above
``max_whole_pixels``, in bounded memory); the mode chosen and the progress (elapsed, ETA) are logged
per image.
Before anything is written, every input is decoded and checked (readable, 8-bit, large enough for the
network) and every target: no existing file is replaced unless ``overwrite=true``, and the input folder
is never the output folder. Each output is written atomically.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from esrt_lit.cli import hydra_argv, run_task
from esrt_lit.configs import register_configs
from esrt_lit.inference import upscale_from_config
from esrt_lit.paths import CONF_DIR

__all__ = ["main"]

register_configs()


def _upscale_and_report(cfg: DictConfig) -> None:
    print("\n".join(str(p) for p in upscale_from_config(cfg)))  # noqa: T201 - the CLI's product


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="upscale")
def _hydra_main(cfg: DictConfig) -> None:
    run_task(_upscale_and_report, cfg)


def main() -> None:
    """Command-line entry point: upscale, then list what was written (non-ASCII values quoted for Hydra:
    :func:`esrt_lit.cli.hydra_argv`)."""
    hydra_argv()
    _hydra_main()


if __name__ == "__main__":
    main()
