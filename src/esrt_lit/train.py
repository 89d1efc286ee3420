"""Train an SR network: ``python -m esrt_lit.train [overrides]`` (Hydra config ``conf/train.yaml``).

With no argument it trains ESRT x4 on the images bundled with scikit-image, on CPU, in a few
minutes, then tests the best checkpoint and prints its scores beside bicubic's. Everything is
instantiated from ``_target_`` entries; paper ablations are overrides (``model.n_hpb=2``,
``model.rsa=false``), recipes are ``experiment=esrt_x4``, sweeps are ``-m model.n_hpb=1,2,3``.

The run folder (Hydra's output folder) ends up holding ``.hydra/`` (config and overrides),
``checkpoints/{best,last}.ckpt``, the logs (``wandb/``, ``csv/`` or ``tensorboard/``) and
``metrics.json`` (:mod:`esrt_lit.training.records`). ``resume_dir=<run folder>`` continues a run in
its folder with its own configuration.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from esrt_lit.cli import hydra_argv, objective, run_task
from esrt_lit.configs import register_configs
from esrt_lit.metrics.tables import scores_table
from esrt_lit.paths import CONF_DIR
from esrt_lit.runs import resume_arguments
from esrt_lit.training.fit import train

__all__ = ["CONF_DIR", "main", "train"]

log = logging.getLogger(__name__)

register_configs()


def _train_and_report(cfg: DictConfig) -> float | None:
    metrics, objects = train(cfg)
    if objects["trainer"].is_global_zero:
        stage = "test" if cfg.get("test", True) else "val"
        print(  # noqa: T201 - the CLI's product
            f"\nx{cfg.scale} {stage} scores (PSNR dB / SSIM on Y, {cfg.scale}-pixel border) against bicubic:\n"
            f"{scores_table(metrics, stage, type(objects['net']).__name__)}\n"
            "(bicubic: the network's uint8 LR upscaled in RGB; the published rows' Y-first bicubic is "
            f"`python -m esrt_lit.eval model=bicubic`)\nrun folder: {cfg.paths.output_dir}"
        )
    return objective(metrics, cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_task(_train_and_report, cfg)


def main() -> None:
    """Command-line entry point; returns ``optimized_metric`` to sweepers (None when it was not logged).

    ``resume_dir=<run>`` takes that run's own overrides, the command line's winning
    (:func:`esrt_lit.runs.resume_arguments`); non-ASCII values are quoted for Hydra
    (:func:`esrt_lit.cli.hydra_argv`).
    """
    hydra_argv(resume_arguments)
    _hydra_main()


if __name__ == "__main__":
    main()
