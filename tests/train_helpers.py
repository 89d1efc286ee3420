"""Helpers of the training tests: a tiny image set, the overrides that shrink a run to seconds, and
running the real CLIs (``python -m esrt_lit.train`` ...) as subprocesses without network."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch import Trainer
from omegaconf import DictConfig
from PIL import Image

from esrt_lit.data import SRDataModule
from esrt_lit.models import ESRT
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.training.checkpoint_io import AtomicCheckpointIO

#: A network that trains in milliseconds per step (x2, 8 features, one HPB, one ARFB pass).
TINY_MODEL = ["model=esrt_tiny", "model.n_feats=8", "model.et_heads=4", "model.low_repeats=1"]


def tiny_net(scale: int = 2, **knobs: Any) -> ESRT:
    """:data:`TINY_MODEL` in Python, seeded."""
    torch.manual_seed(0)
    return ESRT(**{"scale": scale, "n_feats": 8, "n_hpb": 1, "et_heads": 4, "low_repeats": 1, **knobs})


class NaNAfter(torch.nn.Module):
    """L1 loss that turns NaN from its ``n``-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = (sr - hr).abs().mean()
        return loss * float("nan") if self.calls >= self.n else loss


def tiny_datamodule(data: dict[str, Path], val: str = "val", **kwargs: Any) -> SRDataModule:
    """The training data module on :func:`make_tiny_images` data (x2, 12-pixel patches, batches of 4)."""
    options: dict[str, Any] = dict(
        scale=2, patch_size=12, batch_size=4, iters_per_epoch=3, num_workers=0, seed=1
    )
    options.update(kwargs)
    return SRDataModule(
        train=[{"kind": "folder", "path": str(data["train"])}],
        val=[{"kind": "folder", "name": "tiny" if val == "val" else val, "path": str(data[val])}],
        **options,
    )


def tiny_trainer(tmp_path: Path, **kwargs: Any) -> Trainer:
    """A quiet CPU trainer (no logger, progress bar or summary) with atomic checkpoints."""
    options: dict[str, Any] = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
    )
    options.update(kwargs)
    return Trainer(**options)


def make_tiny_images(root: Path) -> dict[str, Path]:
    """``root/train`` (6 colour images, 64x64) and ``root/val`` (2 colour + 1 grey, 48x48)."""
    rng = np.random.default_rng(0)
    folders = {"train": root / "train", "val": root / "val"}
    for split, count, size in (("train", 6, 64), ("val", 3, 48)):
        folders[split].mkdir(parents=True, exist_ok=True)
        for i in range(count):
            small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
            if split == "val" and i == count - 1:
                image = image.convert("L")
            image.save(folders[split] / f"img{i}.png")
    return folders


def tiny_overrides(data: dict[str, Path], epochs: int = 2, steps: int = 4) -> list[str]:
    """Overrides that make ``esrt_lit.train`` a seconds-long CPU run on :func:`make_tiny_images` data."""
    return [
        "scale=2",
        *TINY_MODEL,
        f"data.train=[{{kind:folder,path:'{data['train']}'}}]",
        f"data.val=[{{kind:folder,name:tiny,path:'{data['val']}'}}]",
        "data.patch_size=12",
        "data.batch_size=4",
        f"data.iters_per_epoch={steps}",
        "data.num_workers=0",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
    ]


def compose_train(overrides: list[str], output_dir: Path, config_dirs: tuple[Path, ...] = ()) -> DictConfig:
    """The tests' one composed configuration: ``conf/train.yaml`` with ``overrides`` (and the config
    groups under ``config_dirs``, added to Hydra's search path as a user's own would be), its Hydra
    state set as in a run, writing into ``output_dir``; ready for :func:`esrt_lit.train.train`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from esrt_lit.paths import CONF_DIR

    searchpath = (
        [f"hydra.searchpath=[{','.join(repr(f'file://{d}') for d in config_dirs)}]"] if config_dirs else []
    )
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *searchpath], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of CLI subprocesses: W&B offline and quiet, one thread per process."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        OMP_NUM_THREADS="1",
        HYDRA_FULL_ERROR="1",
    )
    env.update(extra)
    return env


def run_cli(module: str, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from the project root; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    """Fail with the tail of the output when a CLI exited non-zero."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )


def run_command(module: str, args: list[str]) -> tuple[int, str]:
    """``python -m module args`` in this process: ``(exit status, stdout + stderr)``."""
    GlobalHydra.instance().clear()
    entry = importlib.import_module(module).main
    out = io.StringIO()
    saved = sys.argv
    sys.argv = [module, *args]
    code: int | str | None
    try:
        with redirect_stdout(out), redirect_stderr(out):
            try:
                code = entry()
            except SystemExit as exit_:
                code = exit_.code
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    if isinstance(code, str):  # SystemExit("message"): Python prints it and exits with 1
        out.write(code + "\n")
        code = 1
    return int(code or 0), out.getvalue()
