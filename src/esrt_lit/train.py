"""Train an SR network: ``python -m esrt_lit.train [overrides]`` (Hydra config ``conf/train.yaml``).

With no argument it trains ESRT x4 on the images bundled with scikit-image, on CPU, in a few
minutes, then tests the best checkpoint and prints its scores beside bicubic's. Everything is
instantiated from ``_target_`` entries; paper ablations are overrides (``model.n_hpb=2``,
``model.rsa=false``), recipes are ``experiment=esrt_x4``, sweeps are ``-m model.n_hpb=1,2,3``.

The run folder (Hydra's output folder) ends up holding ``.hydra/`` (config and overrides),
``checkpoints/{best,last}.ckpt``, the logs (``wandb/``, ``csv/`` or ``tensorboard/``) and
``metrics.json``: parameters, MACs and latency at a 128x128 LR input, the final validation scores,
the test scores of the best checkpoint and bicubic's, and the overrides.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (8x slower training on a
# busy 2-core machine); sleeping waiters cost little. Set before torch loads OpenMP; the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from esrt_lit.data.sources import build_sources
from esrt_lit.evaluation import PAPER_ORDER
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.utils.checkpoint import resolve_ckpt_path
from esrt_lit.utils.instantiators import instantiate_callbacks, instantiate_loggers
from esrt_lit.utils.logging_utils import hydra_overrides, log_hyperparameters, net_stats
from esrt_lit.utils.resolvers import register_resolvers
from esrt_lit.utils.task import ConfigError, extras, get_metric_value, task_wrapper

__all__ = ["CONF_DIR", "check_config", "main", "metrics_table", "train"]

log = logging.getLogger(__name__)

#: The Hydra config folder of every entry point.
CONF_DIR = str(PROJECT_ROOT / "conf")
SCALES = (2, 3, 4)

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
        ConfigError: ``scale`` not 2, 3 or 4, or a training run of a parameter-free model.
    """
    scale = cfg.get("scale")
    if isinstance(scale, bool) or scale not in SCALES:
        raise ConfigError(f"scale={scale!r} is not supported; expected one of {', '.join(map(str, SCALES))}")
    target = str(OmegaConf.select(cfg, "model._target_", default=""))
    if cfg.get("train", True) and target.endswith("Bicubic"):
        raise ConfigError(
            "model=bicubic has no parameters to train; score it with `python -m esrt_lit.eval model=bicubic`"
        )


def _check_data(cfg: DictConfig, datamodule: Any) -> None:
    """Resolve every data source now (no image decoded) so a missing folder fails before training."""
    try:
        if cfg.get("train", True):
            for source in build_sources(datamodule.train_specs, unique_names=False):
                source.records(cfg.scale)
        val_names = datamodule.val_names
        test_names = datamodule.test_names
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from err
    monitor = cfg.get("monitor_set")
    if monitor is None:
        cfg.monitor_set = val_names[0]
    elif monitor not in val_names:
        raise ConfigError(
            f"monitor_set={monitor!r} is not a validation set; validation sets: {', '.join(val_names)}"
        )
    log.info("validation sets: %s (monitor: %s); test sets: %s", val_names, cfg.monitor_set, test_names)


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

    Reads ``{stage}/<set>/psnr|ssim`` and ``bicubic/<set>/psnr|ssim``; sets are those of ``stage``, in
    the paper's column order.
    """
    names = [k.split("/")[1] for k in metrics if k.startswith(f"{stage}/") and k.endswith("/psnr")]
    names.sort(key=lambda n: (PAPER_ORDER.index(n) if n in PAPER_ORDER else len(PAPER_ORDER), n))
    if not names:
        return "(no scores)"

    def cell(prefix: str, name: str) -> str:
        p, s = metrics.get(f"{prefix}/{name}/psnr"), metrics.get(f"{prefix}/{name}/ssim")
        return f"{p:.2f}/{s:.4f}" if p is not None and s is not None else "-"

    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| bicubic | " + " | ".join(cell("bicubic", n) for n in names) + " |")
    lines.append(f"| {model_name} | " + " | ".join(cell(stage, n) for n in names) + " |")
    return "\n".join(lines)


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


@task_wrapper
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
    _check_data(cfg, datamodule)
    net = _instantiate(cfg, "model")
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
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("resume_dir"):
        ckpt_path = "last"
    ckpt_path = resolve_ckpt_path(ckpt_path, output_dir)
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

    metrics: dict[str, Any] = {"scale": cfg.scale, **stats}
    start = time.perf_counter()
    if cfg.get("train", True):
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        cache = OmegaConf.select(cfg, "paths.compile_cache_dir")
        if cache:  # torch.compile's kernels and graphs: a second run of the same config skips compiling
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics.update(module.restored_scores)  # a resumed run that had nothing left to train
        metrics.update(_scalars(trainer.callback_metrics))
        metrics.update(module.scores)
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        metrics["compile_mode"] = getattr(module, "compile_mode", None)
        metrics["epochs"], metrics["global_step"] = trainer.current_epoch, trainer.global_step
    best = _best_checkpoint(trainer)
    if cfg.get("test", True):
        test_ckpt = best if cfg.get("train", True) else ckpt_path
        if test_ckpt is None:
            log.warning("no best checkpoint: testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update(_scalars(trainer.callback_metrics))
        metrics.update(module.scores)
        metrics["test_ckpt"] = test_ckpt
    for stage in ("val", "test"):  # the test images' bicubic scores win: they cover whole sets
        for name, scores in module.bicubic_scores[stage].items():
            metrics.update({f"bicubic/{name}/{k}": v for k, v in scores.items()})
    metrics = {k: v for k, v in metrics.items() if not k.endswith("/psnr_bicubic")}
    metrics["best_ckpt"] = best
    last = output_dir / "checkpoints" / "last.ckpt"
    metrics["last_ckpt"] = str(last) if last.is_file() else None
    metrics["overrides"] = hydra_overrides()

    if trainer.is_global_zero:
        _write_metrics(output_dir / "metrics.json", metrics)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.experiment.summary.update(metrics)
        log.info("metrics: %s", output_dir / "metrics.json")
    return metrics, objects


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``optimized_metric`` for sweepers."""
    extras(cfg)
    try:
        metrics, objects = train(cfg)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    if objects["trainer"].is_global_zero:
        stage = "test" if cfg.get("test", True) else "val"
        table = metrics_table(metrics, stage, type(objects["net"]).__name__)
        print(  # noqa: T201 - the CLI's product
            f"\nx{cfg.scale} {stage} scores (PSNR dB / SSIM on Y, {cfg.scale}-pixel border) against bicubic:\n"
            f"{table}\nrun folder: {cfg.paths.output_dir}"
        )
    return get_metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
