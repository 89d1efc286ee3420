"""Train an SR network: ``python -m esrt_lit.train [overrides]`` (Hydra config ``conf/train.yaml``).

With no argument it trains ESRT x4 on the images bundled with scikit-image, on CPU, in a few
minutes, then tests the best checkpoint and prints its scores beside bicubic's. Everything is
instantiated from ``_target_`` entries; paper ablations are overrides (``model.n_hpb=2``,
``model.rsa=false``), recipes are ``experiment=esrt_x4``, sweeps are ``-m model.n_hpb=1,2,3``.

The run folder (Hydra's output folder) ends up holding ``.hydra/`` (config and overrides),
``checkpoints/{best,last}.ckpt``, the logs (``wandb/``, ``csv/`` or ``tensorboard/``) and
``metrics.json``: parameters, MACs and latency at a 128x128 LR input, the final validation scores,
the test scores of the best checkpoint and bicubic's, the training speed, and the overrides.
``resume_dir=<run folder>`` continues a run in its folder with its own configuration.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from esrt_lit.data.sources import paper_order
from esrt_lit.models.bicubic import is_bicubic
from esrt_lit.models.esrt import check_scale
from esrt_lit.models.files import read_checkpoint
from esrt_lit.models.loading import checkpoint_network_config, knob_differences
from esrt_lit.paths import CONF_DIR
from esrt_lit.utils.checkpoint import resolve_ckpt_path
from esrt_lit.utils.instantiators import instantiate_callbacks, instantiate_loggers
from esrt_lit.utils.logging_utils import hydra_overrides, log_hyperparameters, net_stats
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.runs import config_changes, find_run_config, resume_arguments
from esrt_lit.utils.tables import markdown_table
from esrt_lit.utils.task import ConfigError, objective, run_task

__all__ = ["CONF_DIR", "check_config", "main", "metrics_table", "train"]

log = logging.getLogger(__name__)

register_resolvers()


def _instantiate(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg[key])``, errors re-raised as :class:`ConfigError` naming ``key``."""
    try:
        return hydra.utils.instantiate(cfg[key], **kwargs)
    except hydra.errors.InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{key}: {cause}") from err


def _optional(cfg: DictConfig, key: str) -> Any:
    node = cfg.get(key)
    return _instantiate(cfg, key) if node else None


def check_config(cfg: DictConfig) -> None:
    """Checks that need no data or network (the rest fails at instantiation, naming its key).

    Raises:
        ConfigError: ``scale`` not 2, 3 or 4, a training run of a parameter-free model, or a learning
            rate that is not a positive finite number.
    """
    try:
        check_scale(cfg.get("scale"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.get("train", True) and is_bicubic(cfg.get("model")):
        raise ConfigError(
            "model=bicubic has no parameters to train; score it with `python -m esrt_lit.eval model=bicubic`"
        )
    lr = OmegaConf.select(cfg, "optimizer.lr", default=None)
    if lr is not None and (
        isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0
    ):
        raise ConfigError(
            f"optimizer.lr={lr!r} is invalid; expected a positive finite learning rate, e.g. 2e-4"
        )


def _monitor_set(cfg: DictConfig, val_names: list[str]) -> None:
    """``monitor_set`` checked against the validation sets (default: the first; none without validation)."""
    monitor = cfg.get("monitor_set")
    if monitor is None:
        cfg.monitor_set = val_names[0] if val_names else None
    elif monitor not in val_names:
        raise ConfigError(
            f"monitor_set={monitor!r} is not a validation set; validation sets: {', '.join(val_names) or 'none'}"
        )


def _check_patch(cfg: DictConfig, net: torch.nn.Module, patch: int) -> None:
    """The training patch is an input the network takes (ESRT needs at least 2x2 and attn_splits pixels)."""
    if cfg.get("train", True) and hasattr(net, "check_input"):
        try:
            net.check_input(torch.empty(1, 3, patch, patch, device="meta"))
        except ValueError as err:
            raise ConfigError(f"data.patch_size={patch}: {err}") from None


def _check_checkpoint_network(ckpt_path: str, net_config: dict[str, Any]) -> None:
    """The checkpoint to continue from holds the configured network (knobs named, not key lists)."""
    have = checkpoint_network_config(read_checkpoint(ckpt_path))
    if have is None:
        raise ConfigError(
            f"{ckpt_path}: not a checkpoint of esrt_lit.train (no 'net' hyper-parameter), which a run can continue"
        )
    differing = knob_differences(
        {k: v for k, v in have.items() if k != "attention"},
        {k: v for k, v in net_config.items() if k != "attention"},
    )
    if differing:
        raise ConfigError(
            f"{ckpt_path} holds another network than the configured one ({'; '.join(differing)}); a run continues "
            "with the network it was trained with: drop the model overrides, or start a new run"
        )


def _log_resume(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    own = None
    if HydraConfig.initialized():  # this resume's record, which Hydra has written already
        own = Path(cfg.paths.output_dir) / str(HydraConfig.get().output_subdir)
    record = find_run_config(Path(cfg.resume_dir), "config.yaml", exclude=own)
    if record is None:
        return
    changes = config_changes(
        OmegaConf.to_container(OmegaConf.load(record), resolve=False),
        OmegaConf.to_container(cfg, resolve=False),
    )
    if changes:
        log.warning("resuming %s with changes to its configuration: %s", cfg.resume_dir, "; ".join(changes))
    else:
        log.info("resuming %s with its own configuration", cfg.resume_dir)


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if (
            isinstance(cb, ModelCheckpoint)
            and cb.monitor
            and cb.best_model_path
            and Path(cb.best_model_path).is_file()
        ):
            return cb.best_model_path
    return None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}


def metrics_table(metrics: dict[str, Any], stage: str = "test", model_name: str = "model") -> str:
    """Markdown table ``bicubic`` / ``model`` × benchmark with ``PSNR/SSIM`` cells from ``metrics``.

    Reads ``{stage}/<set>/psnr|ssim`` and ``bicubic/<set>/psnr|ssim`` (bicubic upscaling of the same
    uint8 LR as the network's, the RGB pipeline); sets are those of ``stage``, in the paper's column order.
    """
    names = sorted(
        (k.split("/")[1] for k in metrics if k.startswith(f"{stage}/") and k.endswith("/psnr")),
        key=paper_order,
    )
    if not names:
        return "(no scores)"

    def cell(prefix: str, name: str) -> str:
        p, s = metrics.get(f"{prefix}/{name}/psnr"), metrics.get(f"{prefix}/{name}/ssim")
        return f"{p:.2f}/{s:.4f}" if p is not None and s is not None else "-"

    rows = [
        ["bicubic", *(cell("bicubic", n) for n in names)],
        [model_name, *(cell(stage, n) for n in names)],
    ]
    return markdown_table(["model", *names], rows)


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def _run_metrics(
    cfg: DictConfig, module: Any, trainer: L.Trainer, stats: dict[str, Any], fit: dict[str, Any]
) -> dict[str, Any]:
    """What ``metrics.json`` (and the W&B summary) hold, from the run's parts."""
    metrics: dict[str, Any] = {"scale": cfg.scale, **stats, **fit}
    metrics.update(_scalars(trainer.callback_metrics))
    metrics.update(module.scores)
    for stage in ("val", "test"):  # the test images' bicubic scores win: they cover whole sets
        for name, scores in module.bicubic_scores[stage].items():
            metrics.update({f"bicubic/{name}/{k}": v for k, v in scores.items()})
    metrics = {k: v for k, v in metrics.items() if not k.endswith("/psnr_bicubic")}
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    metrics["best_ckpt"] = _best_checkpoint(trainer)
    metrics["last_ckpt"] = str(last) if last.is_file() else None
    metrics["overrides"] = hydra_overrides()
    return metrics


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, then test the best checkpoint; write ``metrics.json`` into the run folder.

    Returns:
        ``(metrics, objects)``: the final metrics (the ``metrics.json`` content) and the
        instantiated ``cfg``, ``datamodule``, ``net``, ``module``, ``trainer``.

    Raises:
        ConfigError: an invalid value, naming its key, before any training step.
    """
    check_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = _instantiate(cfg, "data", _convert_="all")
    try:
        datamodule.check(train=cfg.get("train", True))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from err
    _monitor_set(cfg, datamodule.val_names)
    log.info(
        "validation sets: %s (monitor: %s); test sets: %s",
        datamodule.val_names,
        cfg.monitor_set,
        datamodule.test_names,
    )
    net = _instantiate(cfg, "model")
    _check_patch(cfg, net, datamodule.patch_size)
    module = _instantiate(
        cfg,
        "module",
        _recursive_=False,
        net=net,
        loss=_optional(cfg, "loss"),
        optimizer=_optional(cfg, "optimizer"),
        scheduler=_optional(cfg, "scheduler"),
        net_config=OmegaConf.to_container(cfg.model, resolve=True),
    )
    ckpt_path = resolve_ckpt_path(
        cfg.get("ckpt_path") or ("last" if cfg.get("resume_dir") else None), output_dir
    )
    if cfg.get("resume_dir"):
        _log_resume(cfg)
    if ckpt_path:
        _check_checkpoint_network(ckpt_path, module.hparams["net"])
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = _instantiate(cfg, "trainer", callbacks=callbacks, logger=loggers or False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    if cfg.trainer.get("deterministic") is True and isinstance(trainer.accelerator, CPUAccelerator):
        # multi-threaded CPU reductions differ run to run in the last bit; one thread is bitwise exact
        torch.set_num_threads(1)
        log.info("trainer.deterministic=true on CPU: one intra-op thread, for bitwise-reproducible runs")

    stats = net_stats(net) if trainer.is_global_zero else {}
    log_hyperparameters(cfg, trainer, stats)
    objects = {"cfg": cfg, "datamodule": datamodule, "net": net, "module": module, "trainer": trainer}

    fit: dict[str, Any] = {}
    if cfg.get("train", True):
        cache = OmegaConf.select(cfg, "paths.compile_cache_dir")
        if cache:  # torch.compile's kernels and graphs: a second run of the same config skips compiling
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit = {
            **module.restored_scores,  # a resumed run that had nothing left to train
            **module.best_scores(),
            **_scalars(trainer.callback_metrics),  # the last validation, the speed (a test resets them)
            "train_seconds": round(time.perf_counter() - start, 1),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "compile_mode": getattr(module, "compile_mode", None),
        }
    if cfg.get("test", True):
        best = _best_checkpoint(trainer)
        test_ckpt = best if cfg.get("train", True) else ckpt_path
        if test_ckpt is None:
            log.warning("no best checkpoint: testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        fit["test_ckpt"] = test_ckpt
    metrics = _run_metrics(cfg, module, trainer, stats, fit)

    if trainer.is_global_zero:
        _write_metrics(output_dir / "metrics.json", metrics)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(metrics)
        log.info("metrics: %s", output_dir / "metrics.json")
    return metrics, objects


def _train_and_report(cfg: DictConfig) -> float | None:
    metrics, objects = train(cfg)
    if objects["trainer"].is_global_zero:
        stage = "test" if cfg.get("test", True) else "val"
        table = metrics_table(metrics, stage, type(objects["net"]).__name__)
        print(  # noqa: T201 - the CLI's product
            f"\nx{cfg.scale} {stage} scores (PSNR dB / SSIM on Y, {cfg.scale}-pixel border) against bicubic:\n"
            f"{table}\n(bicubic: the network's uint8 LR upscaled in RGB; the published rows' Y-first bicubic is "
            f"`python -m esrt_lit.eval model=bicubic`)\nrun folder: {cfg.paths.output_dir}"
        )
    return objective(metrics, cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_task(_train_and_report, cfg)


def main() -> None:
    """Command-line entry point; returns ``optimized_metric`` to sweepers (None when it was not logged).

    ``resume_dir=<run>`` takes that run's own overrides, the command line's winning
    (:func:`esrt_lit.utils.runs.resume_arguments`).
    """
    sys.argv = resume_arguments(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    main()
