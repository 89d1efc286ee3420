"""The offline W&B reader recovers config, history and summary from a real offline run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esrt_lit.wandb_offline import read_offline_run

SCRIPT = """
import wandb
run = wandb.init(project="esrt-test", group="sweep-a", config={"model": {"n_hpb": 2}, "scale": 4}, dir=".")
for step in range(40):
    run.log({"train/loss": 1.0 / (step + 1), "pad": "x" * 2000})
run.summary["val/Set5/psnr"] = 30.5
run.finish()
"""


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", SCRIPT], cwd=work, env=env, check=True, timeout=180)
    (run_dir,) = (work / "wandb").glob("offline-run-*")
    return run_dir


def test_reads_config_history_summary(offline_run: Path) -> None:
    run = read_offline_run(offline_run)
    assert run.group == "sweep-a"
    assert run.config["model"] == {"n_hpb": 2}
    assert run.config["scale"] == 4
    losses = [row["train/loss"] for row in run.history if "train/loss" in row]
    assert losses == pytest.approx([1.0 / (s + 1) for s in range(40)])  # records span several 32 KiB blocks
    assert run.summary["val/Set5/psnr"] == 30.5


def test_torn_tail_keeps_what_came_before(offline_run: Path, tmp_path: Path) -> None:
    (log,) = offline_run.glob("run-*.wandb")
    torn = tmp_path / "run-torn.wandb"
    raw = log.read_bytes()
    torn.write_bytes(raw[: len(raw) // 2])
    run = read_offline_run(torn)
    assert run.config["scale"] == 4
    assert 0 < len(run.history) < 40


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run-\\*.wandb file"):
        read_offline_run(tmp_path)
    bogus = tmp_path / "run-x.wandb"
    bogus.write_bytes(b"not a log at all")
    with pytest.raises(ValueError, match="not a W&B transaction log"):
        read_offline_run(bogus)
