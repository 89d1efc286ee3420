"""One performance table for ESRT, every row measured in the same run (``python -m esrt_lit.bench``).

The command and its options: :mod:`esrt_lit.bench.cli`; the sections and :func:`run_bench`:
:mod:`esrt_lit.bench.sections` and :mod:`esrt_lit.bench.training`; the measurements, each run in a fresh
subprocess: :mod:`esrt_lit.bench.workers` through :mod:`esrt_lit.bench.measure`; the rows and their
table: :mod:`esrt_lit.bench.table`.
"""

from esrt_lit.bench.cli import check_ckpt, check_device, main
from esrt_lit.bench.sections import SECTIONS, SQUARE, STANDARD_SIZES, run_bench
from esrt_lit.bench.table import Row, format_table
from esrt_lit.bench.training import GPU_TRAIN_CONFIGS
from esrt_lit.bench.workers import (
    TRAIN_BATCH,
    TRAIN_PATCH,
    UHD_LR,
    amp_error_worker,
    infer_worker,
    loader_worker,
    loop_worker,
    train_worker,
    uhd_worker,
)

__all__ = [
    "GPU_TRAIN_CONFIGS",
    "SECTIONS",
    "SQUARE",
    "STANDARD_SIZES",
    "TRAIN_BATCH",
    "TRAIN_PATCH",
    "UHD_LR",
    "Row",
    "amp_error_worker",
    "check_ckpt",
    "check_device",
    "format_table",
    "infer_worker",
    "loader_worker",
    "loop_worker",
    "main",
    "run_bench",
    "train_worker",
    "uhd_worker",
]
