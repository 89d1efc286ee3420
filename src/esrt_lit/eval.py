"""Score a network on the benchmarks: ``python -m esrt_lit.eval ckpt_path=...`` or ``model=bicubic``.

The checkpoint may be a Lightning checkpoint of ``esrt_lit.train`` (the network is rebuilt from its
saved hyper-parameters, EMA weights preferred) or released ESRT weights (``.pt``/``.pth``); the kind
is read from the file (:func:`esrt_lit.evaluation.load_model`). ``model=bicubic`` scores the
published bicubic baseline at ``scales`` (default 2, 3 and 4). Every benchmark folder under
``benchmark_root`` is scored with the protocol of the published tables; ``results.json`` and
``results.md`` are written into the run folder and the table is printed.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (8x slower training on a
# busy 2-core machine); sleeping waiters cost little. Set before torch loads OpenMP; the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from esrt_lit.evaluation import format_table, load_model, run_benchmarks
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.paths import benchmark_root as shared_benchmark_root
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.task import ConfigError, extras, task_wrapper

__all__ = ["evaluate", "main", "resolve_device", "write_embedded_benchmark"]

log = logging.getLogger(__name__)

CONF_DIR = str(PROJECT_ROOT / "conf")
BICUBIC_SCALES = (2, 3, 4)

register_resolvers()


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; anything else as given."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def write_embedded_benchmark(folder: Path) -> Path:
    """Copy the embedded validation images (scikit-image's, see :mod:`esrt_lit.data.sources`) into
    ``folder/skimage`` as PNGs, so they can be scored like a benchmark; returns ``folder``."""
    from esrt_lit.data.io import read_image, write_image
    from esrt_lit.data.sources import SkimageSource

    for record in SkimageSource("val").records(1):
        target = folder / "skimage" / f"{record.name}.png"
        if not target.exists():
            write_image(target, read_image(record.hr))
    return folder


def _is_bicubic(cfg: DictConfig) -> bool:
    return str(OmegaConf.select(cfg, "model._target_", default="")).endswith("Bicubic")


def _benchmark_root(cfg: DictConfig) -> Path:
    root = cfg.get("benchmark_root")
    if root in (None, "auto"):
        shared = shared_benchmark_root()
        if shared is not None:
            return shared
        log.warning("no benchmark folder found: scoring the embedded validation images instead")
        return write_embedded_benchmark(Path(cfg.paths.output_dir) / "embedded_benchmark")
    path = Path(root)
    if not path.is_dir():
        raise ConfigError(f"benchmark_root={root}: folder not found")
    return path


def _model_and_scales(cfg: DictConfig) -> tuple[Any, list[int]]:
    scales = list(cfg.scales) if cfg.get("scales") is not None else None
    if cfg.get("ckpt_path"):
        if _is_bicubic(cfg):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} and model=bicubic: give one of them")
        path = Path(cfg.ckpt_path)
        try:
            net = load_model(path)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: {err}") from err
        scale = getattr(net, "scale", None)
        if scales is None:
            scales = [int(scale)]
        elif scale is not None and any(s != scale for s in scales):
            raise ConfigError(f"scales={scales}: the checkpoint {path} is a x{scale} network")
        return str(path), scales
    if _is_bicubic(cfg):
        return "bicubic", scales or list(BICUBIC_SCALES)
    raise ConfigError(
        "nothing to evaluate: give ckpt_path=<checkpoint> (Lightning .ckpt or released ESRT weights) "
        "or model=bicubic"
    )


@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the configured model; returns :func:`esrt_lit.evaluation.run_benchmarks`' results.

    Raises:
        ConfigError: no model, conflicting options, a missing checkpoint or benchmark folder.
    """
    model, scales = _model_and_scales(cfg)
    root = _benchmark_root(cfg)
    names = list(cfg.names) if cfg.get("names") else None
    try:
        return run_benchmarks(
            model,
            scales,
            root,
            names=names,
            out_dir=cfg.paths.output_dir,
            device=resolve_device(cfg.device),
            tile=cfg.get("tile"),
        )
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: score, write ``results.{json,md}``, print the table."""
    extras(cfg)
    try:
        results = evaluate(cfg)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    print(  # noqa: T201 - the CLI's product
        f"{results['model']}: PSNR (dB) / SSIM on Y, `scale` pixels cropped\n{format_table(results)}\n"
        f"written: {Path(cfg.paths.output_dir) / 'results.md'} and results.json"
    )


if __name__ == "__main__":
    main()
