"""What every run records besides its metrics: the resolved config and the network's size and cost."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import nn

from esrt_lit.profiling import count_macs, measure_latency

__all__ = ["STATS_LR_HW", "WandbLogger", "git_commit", "hydra_overrides", "log_hyperparameters", "net_stats"]

log = logging.getLogger(__name__)

#: LR input size (height, width) at which MACs and latency are measured and reported.
STATS_LR_HW = (128, 128)


class WandbLogger(_WandbLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.WandbLogger` (``logger=wandb``), less the
    ``anonymous=None`` it hands ``wandb.init`` when ``anonymous`` is not given: wandb warns on every run
    that the setting has no effect, whatever its value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def hydra_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def git_commit() -> str | None:
    """The project checkout's commit, ``-dirty`` appended when it has uncommitted changes; None outside git."""
    import subprocess

    from esrt_lit.paths import PROJECT_ROOT

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def net_stats(net: nn.Module, lr_hw: Sequence[int] = STATS_LR_HW, latency: bool = True) -> dict[str, Any]:
    """Parameters, MACs and latency of ``net`` for an LR input of ``lr_hw``.

    Returns:
        ``{"params", "params_trainable", "macs", "macs_paper", "macs_lr_hw", "latency_128_ms"}``:
        ``macs`` counts every multiply-accumulate (attention included) with
        :func:`esrt_lit.profiling.count_macs`, ``macs_paper`` the paper's convention (attention's
        matrix products excluded). ``latency_128_ms`` is the median of 3 timed passes (after one warm-up)
        on the network's device; the key keeps its name for other ``lr_hw``.
    """
    lr_hw = (int(lr_hw[0]), int(lr_hw[1]))
    stats: dict[str, Any] = {
        "params": sum(p.numel() for p in net.parameters()),
        "params_trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "macs": None,
        "macs_paper": None,
        "macs_lr_hw": list(lr_hw),
        "latency_128_ms": None,
    }
    was_training = net.training
    net.eval()
    try:
        macs = count_macs(net, lr_hw)
        stats["macs"], stats["macs_paper"] = int(macs["exact"]), int(macs["paper"])
        if latency:
            param = next(iter(net.parameters()), None)
            x = torch.rand(1, 3, *lr_hw, device=param.device if param is not None else "cpu")
            stats["latency_128_ms"] = round(measure_latency(net, x, repeats=3, warmup=1), 3)
    finally:
        net.train(was_training)
    return stats


@rank_zero_only
def log_hyperparameters(cfg: DictConfig, trainer: Trainer, stats: dict[str, Any]) -> None:
    """Send the whole resolved config, the overrides and the network's stats to every logger."""
    if not trainer.loggers:
        return
    hparams: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    hparams["overrides"] = hydra_overrides()
    hparams["model/params/total"] = stats["params"]
    hparams["model/params/trainable"] = stats["params_trainable"]
    hparams["model/params/non_trainable"] = stats["params"] - stats["params_trainable"]
    for key in ("macs", "macs_paper", "macs_lr_hw", "latency_128_ms"):
        hparams[f"model/{key}"] = stats[key]
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
