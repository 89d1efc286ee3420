"""How the bench runs a measurement: one of :mod:`esrt_lit.bench.workers` in a fresh subprocess
(:func:`esrt_lit.profiling.run_isolated`) with a timeout and, on CPU, an address-space limit, so that a
hang or an out-of-memory failure is a failed row, not a crash."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from esrt_lit.profiling import run_isolated

__all__ = ["WORKERS", "Runner"]

log = logging.getLogger(__name__)

#: The module whose functions the children call (``<module>:<worker>``).
WORKERS = "esrt_lit.bench.workers"


def _mem_limit() -> int | None:
    """Address-space limit for the subprocesses: what the machine has available, less 1.5 GiB."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return max(int(match.group(1)) * 1024 - (3 << 29), 1 << 30) if match else None


class Runner:
    """``run("infer_worker", scale=4, ...)``: the worker's figures with ``"ok": True``, or
    ``{"ok": False, "error": ...}``; every worker but ``loader_worker`` gets ``device``.

    Attributes:
        threads: ``torch.set_num_threads`` in each child (None: torch's default).
        timeout: seconds allowed per measurement.
        ckpt: ``--ckpt``, read by the sections that add rows for it.
        device: ``cpu`` or ``cuda``.
        mem_limit: the children's ``RLIMIT_AS`` (None on CUDA, which reserves far more than it uses).
    """

    def __init__(self, threads: int | None, timeout: float, ckpt: str | None, device: str) -> None:
        self.threads = threads
        self.timeout = timeout
        self.ckpt = ckpt
        self.device = device
        # CUDA reserves far more address space than it uses: no RLIMIT_AS there
        self.mem_limit = _mem_limit() if device == "cpu" else None

    def __call__(self, worker: str, **kwargs: Any) -> dict[str, Any]:
        if worker != "loader_worker":
            kwargs["device"] = self.device
        log.info("measuring %s %s", worker, kwargs)
        return run_isolated(
            f"{WORKERS}:{worker}",
            kwargs,
            timeout=self.timeout,
            mem_limit_bytes=self.mem_limit,
            threads=self.threads,
        )
