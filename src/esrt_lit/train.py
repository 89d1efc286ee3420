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
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from esrt_lit.config_schema import quote_non_ascii
from esrt_lit.errors import ConfigError, Interrupted
from esrt_lit.paths import CONF_DIR
from esrt_lit.training.callbacks import StopOnSignal
from esrt_lit.training.checks import (
    check_checkpoint_network,
    check_config,
    check_patch,
    log_resume,
    resolve_monitor_set,
)
from esrt_lit.training.records import best_checkpoint, foreign_best, publish, run_metrics, scalars
from esrt_lit.utils.checkpoint import resolve_ckpt_path
from esrt_lit.utils.instantiators import instantiate_callbacks, instantiate_loggers
from esrt_lit.utils.logging_utils import log_hyperparameters, net_stats
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.runs import resume_arguments
from esrt_lit.utils.tables import scores_table
from esrt_lit.utils.task import exit_with_error, objective, run_task

__all__ = ["CONF_DIR", "main", "train"]

log = logging.getLogger(__name__)

register_resolvers()


def _instantiate(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg[key])`` (None for an empty group), errors naming ``key``."""
    if not cfg.get(key):
        return None
    try:
        return hydra.utils.instantiate(cfg[key], **kwargs)
    except hydra.errors.InstantiationException as err:
        raise ConfigError(f"{key}: {err.__cause__ or err}") from err


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, then test the best checkpoint; write ``metrics.json`` into the run folder.

    SIGTERM or SIGINT stops training at the end of the current step with a resumable
    ``checkpoints/last.ckpt`` (:class:`~esrt_lit.training.callbacks.StopOnSignal`), skips the test, and
    records ``interrupted`` (e.g. ``"SIGTERM at step 12"``) in ``metrics.json``.

    Returns:
        ``(metrics, objects)``: the ``metrics.json`` content and the instantiated ``cfg``, ``datamodule``,
        ``net``, ``module``, ``trainer``.

    Raises:
        ConfigError: an invalid value, naming its key, before any training step.
        Interrupted: a signal stopped the run (the message says how to resume it).
    """
    stop = StopOnSignal(Path(cfg.paths.output_dir))
    with stop.handling_signals():
        return _train(cfg, stop)


def _train(cfg: DictConfig, stop: StopOnSignal) -> tuple[dict[str, Any], dict[str, Any]]:
    check_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = _instantiate(cfg, "data", _convert_="all", _recursive_=False)  # sources: `kind:` specs
    try:
        datamodule.check(train=cfg.get("train", True))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from err
    resolve_monitor_set(cfg, datamodule.val_names)
    net = _instantiate(cfg, "model")
    if cfg.get("train", True):
        check_patch(net, datamodule.patch_size)
    module = _instantiate(
        cfg,
        "module",
        _recursive_=False,
        net=net,
        loss=_instantiate(cfg, "loss"),
        optimizer=_instantiate(cfg, "optimizer"),
        scheduler=_instantiate(cfg, "scheduler"),
        net_config=OmegaConf.to_container(cfg.model, resolve=True),
    )
    if cfg.get("train", True):  # the model summary's FLOPs and sizes, for one training patch
        module.example_input_array = torch.zeros(1, 3, datamodule.patch_size, datamodule.patch_size)
    ckpt_path = resolve_ckpt_path(
        cfg.get("ckpt_path") or ("last" if cfg.get("resume_dir") else None), output_dir
    )
    if cfg.get("resume_dir"):
        log_resume(cfg)
    if ckpt_path:
        check_checkpoint_network(ckpt_path, module.hparams["net"])
    callbacks, loggers = instantiate_callbacks(cfg.get("callbacks")), instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = _instantiate(cfg, "trainer", callbacks=[*callbacks, stop], logger=loggers or False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    if cfg.trainer.get("deterministic") is True and isinstance(trainer.accelerator, CPUAccelerator):
        torch.set_num_threads(1)  # multi-threaded CPU reductions differ in the last bit from run to run
    stats = net_stats(net) if trainer.is_global_zero else {}
    log_hyperparameters(cfg, trainer, stats)

    fit: dict[str, Any] = {}
    if cfg.get("train", True):
        if cache := OmegaConf.select(cfg, "paths.compile_cache_dir"):  # a second run skips compiling
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        start = time.perf_counter()
        with stop.stopping():
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit = {
            **module.restored_scores,  # a resumed run that had nothing left to train
            **module.best_scores(),
            **scalars(trainer.callback_metrics),  # the last validation and the speed (a test resets them)
            "train_seconds": round(time.perf_counter() - start, 1),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "compile_mode": module.compile_mode,
        }
    if cfg.get("test", True) and stop.signum is None:
        fit["test_ckpt"] = best_checkpoint(trainer, output_dir) if cfg.get("train", True) else ckpt_path
        if fit["test_ckpt"] is None:
            other = foreign_best(trainer, output_dir)
            log.warning(
                "no best checkpoint in this run folder%s: testing the current weights",
                f" ({other}, restored from ckpt_path, is another run's)" if other else "",
            )
        with stop.stopping():
            trainer.test(module, datamodule=datamodule, ckpt_path=fit["test_ckpt"], weights_only=True)
    if stop.signum is not None:
        fit["interrupted"] = stop.summary()
    metrics = run_metrics(cfg.scale, output_dir, module, trainer, stats, fit)
    publish(metrics, output_dir, trainer)
    if stop.signum is not None:
        if not trainer.is_global_zero:  # the first process says it, once
            raise SystemExit(Interrupted(stop.message(), stop.signum).exit_status)
        raise Interrupted(stop.message(), stop.signum)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "net": net, "module": module, "trainer": trainer}


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
    (:func:`esrt_lit.utils.runs.resume_arguments`); non-ASCII values are quoted for Hydra
    (:func:`esrt_lit.config_schema.quote_non_ascii`).
    """
    try:
        sys.argv = resume_arguments([sys.argv[0], *quote_non_ascii(sys.argv[1:])])
    except ValueError as err:
        exit_with_error(err)
    _hydra_main()


if __name__ == "__main__":
    main()
