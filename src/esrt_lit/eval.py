"""Score a network on the benchmarks: ``python -m esrt_lit.eval ckpt_path=...`` or ``model=bicubic``.

The checkpoint may be any kind the one loader reads (:func:`esrt_lit.models.checkpoint.load_network`: a
checkpoint of ``esrt_lit.train``, EMA weights preferred, released ESRT weights, or a state dict).
``model=bicubic`` scores the published bicubic baseline (the Y-first procedure of the published rows)
at ``scales`` (default 2, 3 and 4). Every benchmark folder under ``benchmark_root`` is scored with the
protocol of the published tables (:func:`esrt_lit.evaluation.evaluate`); ``results.json`` and
``results.md`` are written into the run folder and the table is printed.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from esrt_lit.cli import hydra_argv, run_task
from esrt_lit.configs import register_configs
from esrt_lit.evaluation import evaluate, format_table
from esrt_lit.paths import CONF_DIR

__all__ = ["main"]

register_configs()


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
