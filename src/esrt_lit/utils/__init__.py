"""Plumbing of the Hydra entry points: errors, run folders, resolvers, instantiators, logging, checkpoint files, tables."""

from __future__ import annotations

from esrt_lit._lazy import lazy_getattr

_LAZY = {
    "AtomicCheckpointIO": "esrt_lit.utils.checkpoint",
    "ConfigError": "esrt_lit.utils.task",
    "extras": "esrt_lit.utils.task",
    "objective": "esrt_lit.utils.task",
    "run_task": "esrt_lit.utils.task",
    "instantiate_callbacks": "esrt_lit.utils.instantiators",
    "instantiate_loggers": "esrt_lit.utils.instantiators",
    "log_hyperparameters": "esrt_lit.utils.logging_utils",
    "net_stats": "esrt_lit.utils.logging_utils",
    "register_resolvers": "esrt_lit.utils.resolvers",
    "resolve_ckpt_path": "esrt_lit.utils.checkpoint",
    "markdown_table": "esrt_lit.utils.tables",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
