"""Objects from the composed configuration: one node (:func:`instantiate_node`, errors naming its key), and the
callbacks and loggers of their groups (every entry with a ``_target_``)."""

from __future__ import annotations

import logging
from typing import Any

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from esrt_lit.errors import ConfigError

__all__ = ["instantiate_callbacks", "instantiate_loggers", "instantiate_node"]

log = logging.getLogger(__name__)


def _instantiate_group(cfg: DictConfig | None, group: str, kind: type) -> list[Any]:
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(
            f"{group}: expected a mapping of named entries with _target_, got {type(cfg).__name__}"
        )
    objects = []
    for key, entry in cfg.items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise TypeError(f"{group}.{key}: expected a mapping with a _target_, got {entry!r}")
        obj = hydra.utils.instantiate(entry)
        if not isinstance(obj, kind):
            raise TypeError(f"{group}.{key}: {entry._target_} is not a {kind.__name__}")
        log.debug("%s.%s: %s", group, key, entry._target_)
        objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """The callbacks of ``cfg.callbacks`` (null entries are skipped)."""
    return _instantiate_group(cfg, "callbacks", Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """The loggers of ``cfg.logger`` (null entries are skipped)."""
    return _instantiate_group(cfg, "logger", Logger)


def instantiate_node(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg[key])`` (None for an empty group), errors naming ``key``."""
    if not cfg.get(key):
        return None
    try:
        return hydra.utils.instantiate(cfg[key], **kwargs)
    except hydra.errors.InstantiationException as err:
        raise ConfigError(f"{key}: {err.__cause__ or err}") from err
