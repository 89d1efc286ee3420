"""What a training run records: ``metrics.json`` (and the W&B summary), assembled in one place."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from esrt_lit.files import atomic_output
from esrt_lit.metrics.collection import PRIMARY
from esrt_lit.training.loggers import git_commit, hydra_overrides

__all__ = ["best_checkpoint", "foreign_best", "publish", "run_metrics", "scalars"]

log = logging.getLogger(__name__)


def _bests(trainer: L.Trainer, run_dir: Path) -> list[tuple[str, bool]]:
    """``(path, inside run_dir)`` of the existing best checkpoints the monitoring ``ModelCheckpoint``s name."""
    return [
        (cb.best_model_path, Path(cb.best_model_path).resolve().is_relative_to(Path(run_dir).resolve()))
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint)
        and cb.monitor
        and cb.best_model_path
        and Path(cb.best_model_path).is_file()
    ]


def best_checkpoint(trainer: L.Trainer, run_dir: Path) -> str | None:
    """The best checkpoint a monitoring ``ModelCheckpoint`` wrote in this run folder, if any.

    A run started from another run's checkpoint (``ckpt_path=<other run>/checkpoints/last.ckpt``) restores
    that run's ``best_model_path``, which stays until this run writes a best of its own: it lies outside
    ``run_dir`` and is not this run's (:func:`foreign_best`).
    """
    return next((path for path, inside in _bests(trainer, run_dir) if inside), None)


def foreign_best(trainer: L.Trainer, run_dir: Path) -> str | None:
    """A best checkpoint restored from another run's checkpoint, outside ``run_dir`` (not this run's)."""
    return next((path for path, inside in _bests(trainer, run_dir) if not inside), None)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Logged values as floats."""
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}


def run_metrics(
    scale: int, output_dir: Path, module: Any, trainer: L.Trainer, stats: dict[str, Any], fit: dict[str, Any]
) -> dict[str, Any]:
    """The content of ``metrics.json``: the network's ``stats``, what ``fit`` gathered, the last logged values
    (the test's), the module's scores, bicubic's, the checkpoints and the command line's overrides; after a
    fit, ``speed/fast_path``: how its training step ran (``SRLitModule.fast_path``)."""
    metrics: dict[str, Any] = {"scale": scale, **stats, **fit}
    metrics.update(scalars(trainer.callback_metrics))
    if module.fast_path is not None:
        metrics["speed/fast_path"] = module.fast_path
    metrics.update(module.scores)
    for stage in ("val", "test"):  # the test images' bicubic scores win: they cover whole sets
        for name, scores in module.bicubic_scores[stage].items():
            metrics.update({f"bicubic/{name}/{k}": v for k, v in scores.items()})
    metrics = {k: v for k, v in metrics.items() if not k.endswith(f"/{PRIMARY.name}_bicubic")}
    last = output_dir / "checkpoints" / "last.ckpt"
    metrics["best_ckpt"] = best_checkpoint(trainer, output_dir)
    metrics["last_ckpt"] = str(last) if last.is_file() else None
    metrics["overrides"] = hydra_overrides()
    metrics["git_commit"] = git_commit()
    return metrics


def publish(metrics: dict[str, Any], output_dir: Path, trainer: L.Trainer) -> None:
    """Write ``metrics.json`` atomically and put the same figures in the W&B run's summary (first process only)."""
    if not trainer.is_global_zero:
        return
    path = output_dir / "metrics.json"
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(metrics)
    log.info("metrics: %s", path)
