"""Shared fixtures: the reference data beside the checkout (skipped with a reason when absent) and the
tiny image set of the training tests (:func:`train_helpers.make_tiny_images`, the tests' one image writer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esrt_lit.configs import register_configs
from esrt_lit.paths import benchmark_root, golden_path, shared_dir
from train_helpers import make_tiny_images

torch.set_num_threads(1)
register_configs()  # what conf/ needs before any test composes it (as every command does on import)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared/`` folder (``$ESRT_SHARED`` or ``../shared``)."""
    path = shared_dir()
    if path is None:
        pytest.skip("../shared (reference data) not found beside the checkout; set ESRT_SHARED to use it")
    return path


@pytest.fixture(scope="session")
def benchmarks() -> Path:
    """``shared/data/benchmark`` with Set5 and Set14 HR images."""
    path = benchmark_root()
    if path is None:
        pytest.skip("../shared/data/benchmark not found; the published-table tests need Set5/Set14")
    return path


@pytest.fixture(scope="session")
def golden() -> dict:
    """The released network's golden vectors (``esrt_official_golden.pt``)."""
    path = golden_path()
    if path is None:
        pytest.skip("../shared/reference/esrt_official_golden.pt not found; golden tests need it")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """:func:`train_helpers.make_tiny_images` in a folder of the module's."""
    return make_tiny_images(tmp_path_factory.mktemp("tiny"))
