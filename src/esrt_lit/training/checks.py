"""What a training run checks before its first step, so that a bad value fails naming its key and
nothing trains: the configuration's values, the validation set that picks the best checkpoint, the
patch against the network, the network of the checkpoint a run continues from, and what a resumed
run changes of its recorded configuration."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from esrt_lit.config_schema import check_schema
from esrt_lit.errors import ConfigError
from esrt_lit.models.bicubic import is_bicubic
from esrt_lit.models.checkpoint import checkpoint_network_config, knob_differences, read_checkpoint
from esrt_lit.runs import config_changes, find_run_config

__all__ = ["check_checkpoint_network", "check_config", "check_patch", "log_resume", "resolve_monitor_set"]

log = logging.getLogger(__name__)

#: What Lightning reads from the checkpoint a run continues from (its version, the optimiser and scheduler states).
RUN_CHECKPOINT_KEYS = ("pytorch-lightning_version", "optimizer_states", "lr_schedulers")


def check_config(cfg: DictConfig) -> None:
    """Checks that need no data or network (the rest fails at instantiation, naming its key): the
    schema (:func:`esrt_lit.config_schema.check_schema`), then what is particular to training.

    Raises:
        ConfigError: a value the schema refuses (``scale`` not 2, 3 or 4 among them), a training run of a
            parameter-free model, or a learning rate that is not a positive finite number.
    """
    check_schema(cfg)
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


def resolve_monitor_set(cfg: DictConfig, val_names: list[str]) -> None:
    """``monitor_set`` checked against the validation sets (default: the first; none without validation)."""
    monitor = cfg.get("monitor_set")
    if monitor is None:
        cfg.monitor_set = val_names[0] if val_names else None
    elif monitor not in val_names:
        raise ConfigError(
            f"monitor_set={monitor!r} is not a validation set; validation sets: {', '.join(val_names) or 'none'}"
        )


def check_patch(net: torch.nn.Module, patch: int) -> None:
    """The training patch is an input the network takes (ESRT needs at least 2x2 and attn_splits pixels)."""
    if patch < 0:
        raise ConfigError(f"data.patch_size={patch} is invalid; expected a positive LR patch side")
    if hasattr(net, "check_input"):
        try:
            net.check_input(torch.empty(1, 3, patch, patch, device="meta"))
        except ValueError as err:
            raise ConfigError(f"data.patch_size={patch}: {err}") from None


def _not_a_run_checkpoint(ckpt_path: str, why: str) -> ConfigError:
    return ConfigError(
        f"ckpt_path={ckpt_path}: a run continues only from a checkpoint of esrt_lit.train (<run folder>/checkpoints/"
        f"*.ckpt), and this file is not one ({why}); eval and upscale take any weights"
    )


def check_checkpoint_network(ckpt_path: str, net_config: dict[str, Any]) -> None:
    """The checkpoint a run continues from is one of ``esrt_lit.train`` (Lightning's record included: a state
    dict or released weights have none) and holds the configured network (knobs named, not key lists)."""
    content = read_checkpoint(ckpt_path)
    have = checkpoint_network_config(content, ckpt_path)
    if have is None:
        raise _not_a_run_checkpoint(ckpt_path, "no 'net' hyper-parameter")
    differing = knob_differences(have, {k: v for k, v in net_config.items() if k != "attention"})
    if differing:
        raise ConfigError(
            f"{ckpt_path} holds another network than the configured one ({'; '.join(differing)}); a run continues "
            "with the network it was trained with: drop the model overrides, or start a new run"
        )
    missing = [key for key in RUN_CHECKPOINT_KEYS if key not in content]
    if missing:
        raise _not_a_run_checkpoint(ckpt_path, f"no {', '.join(map(repr, missing))}")


def log_resume(cfg: DictConfig) -> None:
    """Say what a resumed run changes of the configuration its folder recorded last."""
    from hydra.core.hydra_config import HydraConfig

    own = None
    if HydraConfig.initialized():  # this resume's own record, which Hydra has written already
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
