"""The training library under ``python -m esrt_lit.train``: the LightningModule, its callbacks, and the
checks and records of a training run."""

from __future__ import annotations

from esrt_lit._lazy import lazy_getattr

_LAZY = {
    "SRLitModule": "esrt_lit.training.module",
    "CharbonnierLoss": "esrt_lit.training.module",
    "compile_mode": "esrt_lit.training.module",
    "describe_net": "esrt_lit.training.module",
    "LearningRateMonitor": "esrt_lit.training.callbacks",
    "NonFiniteLossError": "esrt_lit.training.callbacks",
    "NonFiniteLossGuard": "esrt_lit.training.callbacks",
    "TrainingSpeed": "esrt_lit.training.callbacks",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
