"""A training run as a library: fit, test the best checkpoint, write ``metrics.json``.

:func:`train` is what ``python -m esrt_lit.train`` runs (:mod:`esrt_lit.train` adds the Hydra entry point and
the printed table). Everything it builds comes from ``_target_`` entries of the composed configuration
(:func:`~esrt_lit.training.instantiators.instantiate_node`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from esrt_lit.errors import ConfigError, Interrupted
from esrt_lit.training.callbacks import StopOnSignal
from esrt_lit.training.checkpoint_io import resolve_ckpt_path
from esrt_lit.training.checks import (
    check_checkpoint_network,
    check_config,
    check_patch,
    log_resume,
    resolve_monitor_set,
)
from esrt_lit.training.instantiators import instantiate_callbacks, instantiate_loggers, instantiate_node
from esrt_lit.training.loggers import log_hyperparameters, net_stats
from esrt_lit.training.records import best_checkpoint, foreign_best, publish, run_metrics, scalars

__all__ = ["train"]

log = logging.getLogger(__name__)


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
    datamodule = instantiate_node(
        cfg, "data", _convert_="all", _recursive_=False
    )  # sources: built by build_sources
    try:
        datamodule.check(train=cfg.get("train", True))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from err
    resolve_monitor_set(cfg, datamodule.val_names)
    net = instantiate_node(cfg, "model")
    if cfg.get("train", True):
        check_patch(net, datamodule.patch_size)
    module = instantiate_node(
        cfg,
        "module",
        _recursive_=False,
        net=net,
        loss=instantiate_node(cfg, "loss"),
        optimizer=instantiate_node(cfg, "optimizer"),
        scheduler=instantiate_node(cfg, "scheduler"),
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
    trainer: L.Trainer = instantiate_node(
        cfg, "trainer", callbacks=[*callbacks, stop], logger=loggers or False
    )
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
