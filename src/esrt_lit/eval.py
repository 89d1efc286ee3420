"""Score a network on the benchmarks: ``python -m esrt_lit.eval ckpt_path=...`` or ``model=bicubic``.

The checkpoint may be any kind the one loader reads (:func:`esrt_lit.models.checkpoint.load_network`: a
checkpoint of ``esrt_lit.train``, EMA weights preferred, released ESRT weights, or a state dict).
``model=bicubic`` scores the published bicubic baseline (the Y-first procedure of the published rows)
at ``scales`` (default 2, 3 and 4). Every benchmark folder under ``benchmark_root`` is scored with the
protocol of the published tables; ``results.json`` and ``results.md`` are written into the run folder
and the table is printed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from esrt_lit.cli import hydra_argv, run_task
from esrt_lit.config_schema import check_schema
from esrt_lit.configs import register_configs
from esrt_lit.data.degradations import Degradation, build_degradation
from esrt_lit.errors import ConfigError
from esrt_lit.evaluation import format_table, run_benchmarks
from esrt_lit.inference import resolve_device
from esrt_lit.models.bicubic import is_bicubic
from esrt_lit.models.checkpoint import BICUBIC, load_network, network_source
from esrt_lit.models.config import SCALES
from esrt_lit.paths import CONF_DIR
from esrt_lit.paths import benchmark_root as shared_benchmark_root

__all__ = ["evaluate", "main", "write_embedded_benchmark"]

log = logging.getLogger(__name__)

BICUBIC_SCALES = list(SCALES)

register_configs()


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


def _scales(cfg: DictConfig) -> list[Any] | None:
    value = cfg.get("scales")
    if value is None:
        return None
    return list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]


def _instantiate_degradation(cfg: DictConfig) -> Degradation:
    """The ``degradation`` group's object (:mod:`esrt_lit.data.degradations`), errors naming the key."""
    try:
        return build_degradation(OmegaConf.to_container(cfg.degradation, resolve=True))
    except (ValueError, hydra.errors.InstantiationException) as err:
        raise ConfigError(f"degradation: {err.__cause__ or err}") from err


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the configured model; returns :func:`esrt_lit.evaluation.run_benchmarks`' results.

    Raises:
        ConfigError: no model, conflicting options, a missing benchmark folder, scales the checkpoint
            does not have.
    """
    check_schema(cfg)
    scales = _scales(cfg)
    source = network_source(cfg.get("ckpt_path"), is_bicubic(cfg.get("model")))
    label = None  # bicubic's results name the procedure; a network's, its checkpoint
    if source == BICUBIC:  # the published rows' Y-first procedure, at every scale asked
        model, scales = source, scales if scales is not None else BICUBIC_SCALES
    else:
        model = load_network(source, key="ckpt_path")
        scale = int(model.scale)
        if scales is not None and any(s != scale for s in scales):
            raise ConfigError(f"scales={scales}: the checkpoint {cfg.ckpt_path} holds an x{scale} network")
        scales, label = [scale], str(cfg.ckpt_path)
    return run_benchmarks(
        model,
        scales,
        _benchmark_root(cfg),
        names=list(cfg.names) if cfg.get("names") else None,
        out_dir=cfg.paths.output_dir,
        device=resolve_device(cfg.device),
        tile=cfg.get("tile"),
        label=label,
        degradation=_instantiate_degradation(cfg),
    )


def _evaluate_and_report(cfg: DictConfig) -> None:
    results = evaluate(cfg)
    print(  # noqa: T201 - the CLI's product
        f"{results['model']}: PSNR (dB) / SSIM on Y, `scale` pixels cropped, {results['degradation']} LR\n"
        f"{format_table(results)}\n"
        f"written: {Path(cfg.paths.output_dir) / 'results.md'} and results.json"
    )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    run_task(_evaluate_and_report, cfg)


def main() -> None:
    """Command-line entry point: score, write ``results.{json,md}``, print the table (non-ASCII values
    quoted for Hydra: :func:`esrt_lit.cli.hydra_argv`)."""
    hydra_argv()
    _hydra_main()


if __name__ == "__main__":
    main()
