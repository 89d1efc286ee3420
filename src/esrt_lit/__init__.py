"""esrt-lit: ESRT (Lu et al., arXiv 2108.11084) with PyTorch Lightning and Hydra.

Public names are imported lazily so that ``import esrt_lit`` stays cheap.
"""

from __future__ import annotations

from esrt_lit._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "ESRT": "esrt_lit.models.esrt",
    "evaluate_folder": "esrt_lit.evaluation",
}

__all__ = ["ESRT", "__version__", "evaluate_folder"]


__getattr__ = lazy_getattr(__name__, _LAZY)
