"""esrt-lit: ESRT (Lu et al., arXiv 2108.11084) with PyTorch Lightning and Hydra.

Public names are imported lazily so that ``import esrt_lit`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ESRT": "esrt_lit.models.esrt",
    "evaluate_folder": "esrt_lit.evaluation",
}

__all__ = ["ESRT", "__version__", "evaluate_folder"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'esrt_lit' has no attribute {name!r}")
