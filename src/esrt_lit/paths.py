"""Where the project, and the shared reference data beside it, live."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The Hydra config folder of every command.
CONF_DIR = str(PROJECT_ROOT / "conf")


def shared_dir() -> Path | None:
    """The ``shared/`` folder with reference data and benchmarks, or None.

    ``$ESRT_SHARED`` wins; otherwise ``../shared`` beside the project checkout, then beside the
    current directory.
    """
    env = os.environ.get("ESRT_SHARED")
    candidates = [Path(env)] if env else [PROJECT_ROOT.parent / "shared", Path.cwd().parent / "shared"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return None


def benchmark_root() -> Path | None:
    """``shared/data/benchmark`` when it exists."""
    shared = shared_dir()
    root = shared / "data" / "benchmark" if shared else None
    return root if root is not None and root.is_dir() else None


def golden_path() -> Path | None:
    """``shared/reference/esrt_official_golden.pt`` when it exists."""
    shared = shared_dir()
    path = shared / "reference" / "esrt_official_golden.pt" if shared else None
    return path if path is not None and path.is_file() else None
