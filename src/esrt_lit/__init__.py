"""esrt-lit: ESRT (Lu et al., arXiv 2108.11084) with PyTorch Lightning and Hydra.

Public names are imported lazily so that ``import esrt_lit`` stays cheap.

Commands (``python -m esrt_lit.<name>``): ``train``, ``eval``, ``upscale``, ``export``, ``report``,
``bench``, ``demo``, ``data.prepare``, ``data.throughput``. The library under them: ``training``
(the LightningModule, its callbacks, a run's checks and records), ``evaluation`` (the protocol),
``inference``, ``models``, ``data``, ``metrics``; ``utils`` holds the commands' plumbing.

Importing the package (which every command does first) sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is
set: OpenMP threads that spin while waiting collapse when the cores are shared (training was 8 times
slower, 99 s instead of 12 s per epoch, on a busy 2-core machine), sleeping waiters cost little. It
takes effect when torch has not been imported yet.
"""

from __future__ import annotations

import os

from esrt_lit._lazy import lazy_getattr

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "ESRT": "esrt_lit.models.esrt",
    "evaluate_folder": "esrt_lit.evaluation",
}

__all__ = ["ESRT", "__version__", "evaluate_folder"]


__getattr__ = lazy_getattr(__name__, _LAZY)
