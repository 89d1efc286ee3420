"""What the console shows: one copy of each log line under DDP, and none of the libraries' lines that the
user cannot act on.

Light on purpose (no Lightning or torch import): Hydra's logging configuration of every command
(``conf/hydra/default.yaml``) names :class:`RankZeroFilter`.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["LIGHTNING_NOISE", "RankZeroFilter", "process_rank", "quiet_library_noise"]

#: Lightning's info lines that say nothing about the run: a product tip, and the model summary callback
#: the config chose (``callbacks.model_summary``) reported as a skipped default.
LIGHTNING_NOISE = (
    "💡 Tip: For seamless cloud",
    "Trainer already configured with model summary callbacks",
)
#: The logger Lightning's ``rank_zero_info`` lines go through.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def process_rank() -> int:
    """This process's global rank: Lightning's ``rank_zero_only.rank`` once Lightning set it (DDP, spawned
    processes included), else the launcher's ``RANK``/``LOCAL_RANK`` variables, else 0."""
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    rank = getattr(getattr(module, "rank_zero_only", None), "rank", None)
    if rank is None:
        rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))
    return int(rank)


class RankZeroFilter(logging.Filter):
    """A console handler's filter: processes other than the first (DDP ranks > 0) show only warnings and
    errors, so that each info line appears once; their log file keeps everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` on rank 0, or when it is a warning or worse."""
        return record.levelno >= logging.WARNING or process_rank() == 0


class _DropMessages(logging.Filter):
    """Drop the records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_library_noise() -> None:
    """Silence, narrowly, what the libraries print on every run that the user cannot act on.

    * PyTorch's FutureWarning about ``LeafSpec``, raised by Lightning's own ``_pytree`` helper (its fix
      is Lightning's), only from that module;
    * Lightning's :data:`LIGHTNING_NOISE` info lines, by their first words;
    * under DDP, the info lines of processes other than the first on Lightning's own console handlers
      (:class:`RankZeroFilter`, as on Hydra's).

    Idempotent; W&B's ``anonymous`` warning is avoided at its source instead
    (:class:`esrt_lit.utils.logging_utils.WandbLogger`).
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(_DropMessages(LIGHTNING_NOISE))
    for name in ("lightning.fabric", "lightning.pytorch"):  # their handlers exist once Lightning is imported
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RankZeroFilter) for f in handler.filters):
                handler.addFilter(RankZeroFilter())
