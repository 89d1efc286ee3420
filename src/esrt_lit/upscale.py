"""Upscale images: ``python -m esrt_lit.upscale input=PATH output=DIR [scale=2|4] [ckpt_path=...]``.

Without ``ckpt_path`` the weights shipped with the package for ``scale`` do the work
(:data:`esrt_lit.models.checkpoint.PRETRAINED`; an INFO line names them and how they were made); ``ckpt_path``
takes any checkpoint, ``model=bicubic`` bicubic.

``input`` is an image or a folder of images; each result is written under ``output`` with the input's
file name (the work is :func:`esrt_lit.inference.upscale_files`). Grey images stay grey (the network sees the grey channel repeated, its output is averaged
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

import logging
import re
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from esrt_lit.cli import hydra_argv, run_task
from esrt_lit.config_schema import check_schema
from esrt_lit.configs import register_configs
from esrt_lit.errors import ConfigError
from esrt_lit.inference import resolve_device, upscale_files
from esrt_lit.models.bicubic import is_bicubic
from esrt_lit.models.checkpoint import BICUBIC, PREFIX, load_network, network_source, provenance
from esrt_lit.models.config import check_scale
from esrt_lit.paths import CONF_DIR

__all__ = ["describe_weights", "main", "upscale"]

log = logging.getLogger(__name__)

#: The scale of ``model=bicubic`` when none is given.
BICUBIC_SCALE = 4

register_configs()


def upscale(cfg: DictConfig) -> list[Path]:
    """Run the configured upscaling; returns the written files."""
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
        scale = scale or BICUBIC_SCALE
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


def describe_weights(ckpt_path: str) -> str:
    """One line naming the weights of ``ckpt_path``; for shipped weights (``pretrained:x2``) with their
    provenance: file, SHA-256, the training recipe and steps, Set5/Set14 PSNR against bicubic."""
    if not str(ckpt_path).startswith(PREFIX):
        return f"ckpt_path={ckpt_path}"
    from esrt_lit.metrics.collection import PRIMARY

    info: dict[str, Any] = provenance(ckpt_path)
    scores, bicubic = info.get("scores", {}), info.get("bicubic", {})
    sets = [n for n in ("Set5", "Set14") if n in scores and n in bicubic]
    psnr = ", ".join(
        f"{n} {scores[n][PRIMARY.name]:.2f} dB (bicubic {bicubic[n][PRIMARY.name]:.2f})" for n in sets
    )
    recipe = re.search(r"experiment=\S+", info.get("command", ""))
    steps = info.get("run", {}).get("global_step")
    made = f"trained by {recipe.group() if recipe else info.get('command')}" + (
        f", {steps} steps" if steps else ""
    )
    return f"shipped {ckpt_path} ({info['file']}, sha256 {info['sha256'][:12]}): {made}; {psnr}"


def _upscale_and_report(cfg: DictConfig) -> None:
    print("\n".join(str(p) for p in upscale(cfg)))  # noqa: T201 - the CLI's product


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
