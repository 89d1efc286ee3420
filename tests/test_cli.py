"""``python -m esrt_lit.eval`` and ``python -m esrt_lit.upscale`` as subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrt_lit.models import ESRT
from esrt_lit.models.official import to_official
from train_helpers import assert_ok, make_tiny_images, run_cli


@pytest.fixture(scope="module")
def released_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of the released ESRT x2 architecture under the authors' parameter names (random values)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("released") / "esrt_x2.pt"
    torch.save(to_official(ESRT(scale=2)), path)
    return path


def test_eval_bicubic_reproduces_the_published_row(benchmarks: Path, tmp_path: Path) -> None:
    result = run_cli(
        "esrt_lit.eval", "model=bicubic", "scales=[2]", "names=[Set5]", f"hydra.run.dir={tmp_path}"
    )
    assert_ok(result)
    assert "| x2 | 33.66/0.9299 |" in result.stdout  # ESRT.md, bicubic x2 Set5
    assert "| x2 | 33.66/0.9299 |" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["results"]["x2"]["Set5"][
        "psnr"
    ] == pytest.approx(33.661, abs=5e-3)


def test_eval_released_checkpoint_and_missing_model(released_x2: Path, tmp_path: Path) -> None:
    folders = make_tiny_images(tmp_path / "data")
    result = run_cli(
        "esrt_lit.eval", f"ckpt_path={released_x2}", f"benchmark_root={tmp_path / 'data'}", "names=[val]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert_ok(result)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["scales"] == [2] and results["model"] == str(released_x2)
    assert len(results["results"]["x2"]["val"]["images"]) == len(list(folders["val"].iterdir()))
    missing = run_cli("esrt_lit.eval", f"hydra.run.dir={tmp_path / 'none'}")
    assert missing.returncode != 0 and "give ckpt_path=<checkpoint>" in missing.stderr


def test_upscale_folder_keeps_names_and_layouts_and_never_overwrites(
    released_x2: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(src / "photo.png")
    Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)).save(src / "scan.png")
    Image.fromarray(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)).save(src / "logo.png")
    args = [f"input={src}", f"output={tmp_path / 'out'}", f"ckpt_path={released_x2}"]
    assert_ok(run_cli("esrt_lit.upscale", *args, f"hydra.run.dir={tmp_path / 'run1'}"))
    modes = {p.name: (Image.open(p).mode, Image.open(p).size) for p in (tmp_path / "out").iterdir()}
    assert modes == {
        "photo.png": ("RGB", (32, 24)),
        "scan.png": ("L", (32, 24)),
        "logo.png": ("RGBA", (32, 24)),
    }
    again = run_cli("esrt_lit.upscale", *args, f"hydra.run.dir={tmp_path / 'run2'}")
    assert again.returncode != 0
    assert f"{tmp_path / 'out' / 'logo.png'}" in again.stderr and "overwrite=true" in again.stderr
