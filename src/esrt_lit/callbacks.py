"""Callbacks of the training loop: the non-finite loss guard."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _last_good_checkpoint(trainer: Trainer) -> str | None:
    paths = []
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint):
            paths += [cb.last_model_path, cb.best_model_path]
    existing = [Path(p) for p in paths if p and Path(p).is_file()]
    return str(max(existing, key=lambda p: p.stat().st_mtime)) if existing else None


class NonFiniteLossGuard(Callback):
    """Stop training at the first NaN/inf loss, before its backward pass and optimiser step.

    The run fails with :class:`NonFiniteLossError`, naming the step and the last checkpoint written:
    no checkpoint is saved after the bad step, so the newest one on disk holds finite weights.
    """

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):  # every rank stops together under DDP
            return
        ckpt = _last_good_checkpoint(trainer)
        kept = f"the last good checkpoint is kept: {ckpt}" if ckpt else "no checkpoint was written before it"
        raise NonFiniteLossError(
            f"train/loss is {loss.detach().float().item() if not finite else 'not finite on another rank'} at epoch {trainer.current_epoch}, global step "
            f"{trainer.global_step}: training stopped before this step's update; {kept}. Lower optimizer.lr, "
            "set trainer.gradient_clip_val, or check the data, then resume with ckpt_path=last"
        )
