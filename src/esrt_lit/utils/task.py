"""Run-level plumbing shared by the CLIs: the task wrapper, extras and the optimised metric."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig

__all__ = ["ConfigError", "extras", "finish_wandb", "get_metric_value", "task_wrapper"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the value."""


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the active W&B run, if any, so its files are complete (offline) or uploaded (online)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.info("finishing the W&B run (%s)", wandb.run.dir)
        wandb.finish(exit_code=exit_code)


def task_wrapper(task: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """Run ``task(cfg)``; on failure log the exception with the run folder, and always finish W&B.

    The exception is re-raised, so a multirun stops at a failing job and the exit code is non-zero.
    """

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> T:
        exit_code = 0
        try:
            return task(cfg)
        except BaseException as err:
            exit_code = 1
            log.error("%s failed: %s: %s", cfg.get("task_name", "task"), type(err).__name__, err)
            raise
        finally:
            finish_wandb(exit_code)
            output_dir = cfg.get("paths", {}).get("output_dir")
            if output_dir:
                log.info("output folder: %s", output_dir)

    return wrapped


def _print_config(cfg: DictConfig) -> None:
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:  # DDP children stay quiet
        return
    from omegaconf import OmegaConf
    from rich import print as rich_print
    from rich.syntax import Syntax

    rich_print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


def extras(cfg: DictConfig) -> None:
    """Optional conveniences of ``cfg.extras``: silence Python warnings, print the resolved config."""
    options = cfg.get("extras") or {}
    if options.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if options.get("print_config"):
        _print_config(cfg)


def get_metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of ``name`` (the sweeper's objective) in ``metrics``.

    Raises:
        ConfigError: ``name`` is not among the logged metrics (naming ``optimized_metric``).
    """
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name!r} was not logged; logged metrics: {', '.join(sorted(metrics)) or 'none'}"
        )
    value = metrics[name]
    return float(value.item() if hasattr(value, "item") else value)
