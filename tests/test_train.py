"""``python -m esrt_lit.train`` end to end, as subprocesses on tiny data: the run folder, W&B offline
files, an experiment preset, a multirun, DDP on two CPU processes, kill-and-resume, config errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from esrt_lit.errors import ConfigError
from esrt_lit.evaluation import evaluate_folder
from esrt_lit.inference import upscale_files
from esrt_lit.models.checkpoint import load_network
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.train import train
from esrt_lit.wandb_offline import read_offline_run
from train_helpers import assert_ok, cli_env, compose_train, run_cli, tiny_overrides

TRAIN = "esrt_lit.train"


@pytest.fixture(scope="module")
def smoke_run(tiny_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One short training run with the default config groups (W&B offline), shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = run_cli(TRAIN, f"hydra.run.dir={run_dir}", *tiny_overrides(tiny_data), "module.log_images=2")
    assert_ok(result)
    return run_dir, result.stdout


def _offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_run_folder_holds_config_checkpoints_metrics(smoke_run: tuple[Path, str]) -> None:
    run_dir, stdout = smoke_run
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
    ):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "params",
        "macs",
        "macs_paper",
        "latency_128_ms",
        "val/tiny/psnr",
        "val/tiny/ssim",
        "test/tiny/psnr",
    ):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["macs"] > metrics["macs_paper"] > 0 and metrics["macs_lr_hw"] == [128, 128]
    assert metrics["bicubic/tiny/psnr"] > 30 and metrics["global_step"] == 8
    assert "scale=2" in metrics["overrides"]
    # the printed table: bicubic and the network, the best checkpoint's test scores
    assert f"| bicubic | {metrics['bicubic/tiny/psnr']:.2f}/{metrics['bicubic/tiny/ssim']:.4f} |" in stdout
    assert f"| ESRT | {metrics['test/tiny/psnr']:.2f}/{metrics['test/tiny/ssim']:.4f} |" in stdout
    saved = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["net"]["n_feats"] == 8


def test_wandb_offline_run_holds_config_history_summary(smoke_run: tuple[Path, str]) -> None:
    run_dir, _ = smoke_run
    (offline,) = _offline_runs(run_dir)
    run = read_offline_run(offline)
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert run.config["model"]["n_feats"] == config.model.n_feats == 8
    assert run.config["monitor_set"] == "tiny" and run.config["paths"]["output_dir"] == str(run_dir)
    assert run.config["model/params/total"] > 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.summary["val/tiny/psnr"] == pytest.approx(metrics["val/tiny/psnr"])
    assert run.summary["overrides"] == metrics["overrides"]
    assert any("train/loss" in row for row in run.history)
    assert [row["val/tiny/psnr"] for row in run.history if "val/tiny/psnr" in row][-1] == pytest.approx(
        metrics["val/tiny/psnr"], abs=1e-4
    )
    crops = list((offline / "files" / "media" / "images" / "val" / "tiny").glob("samples_*.png"))
    assert len(crops) == 2 * 2, "two crops per validation, two validations"


def test_lightning_checkpoint_evaluates_and_upscales_like_training(
    smoke_run: tuple[Path, str], tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """The offline evaluator (what ``esrt_lit.eval``/``upscale`` call) rebuilds the net from best.ckpt."""
    run_dir, _ = smoke_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    scores = evaluate_folder(tiny_data["val"], 2, model=run_dir / "checkpoints" / "best.ckpt")
    assert scores["psnr"] == pytest.approx(metrics["test/tiny/psnr"], abs=1e-6)
    net = load_network(run_dir / "checkpoints" / "last.ckpt")
    written = upscale_files(net, 2, tiny_data["val"], tmp_path)
    assert [p.name for p in written] == ["img0.png", "img1.png", "img2.png"]


def test_experiment_preset_shrunk(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli(
        TRAIN,
        "experiment=cpu_x2_sun80",
        f"hydra.run.dir={tmp_path}",
        *tiny_overrides(tiny_data, epochs=2, steps=2),
        f"data.test=[{{kind:folder,name:tiny,path:'{tiny_data['val']}'}}]",
        "monitor_set=tiny",
        "trainer.check_val_every_n_epoch=1",
        "trainer.log_every_n_steps=1",
        "logger=csv",
    )
    assert_ok(result)
    config = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    assert not config.scheduler and config.optimizer.lr == 5e-4 and config.tags[-1] == "sun80"
    log = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert {"train/loss", "lr", "val/tiny/psnr", "val/tiny/psnr_best", "test/tiny/psnr"} <= set(
        log[0].split(",")
    )


@pytest.mark.slow
def test_multirun_two_jobs_each_with_its_own_wandb_run(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli(
        TRAIN, "-m", f"hydra.sweep.dir={tmp_path}", "model.n_hpb=1,2", *tiny_overrides(tiny_data, epochs=1)
    )
    assert_ok(result)
    runs = [read_offline_run(d) for job in ("0", "1") for d in _offline_runs(tmp_path / job)]
    assert len(runs) == 2
    assert [r.config["model"]["n_hpb"] for r in runs] == [1, 2]
    assert runs[0].group == runs[1].group == f"train-{tmp_path.name}"
    assert [r.name for r in runs] == ["0:model.n_hpb=1", "1:model.n_hpb=2"]
    for job in ("0", "1"):
        assert "val/tiny/psnr" in json.loads((tmp_path / job / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_cpu_two_processes_train_and_validate(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli(
        TRAIN, "trainer=ddp_cpu", f"hydra.run.dir={tmp_path}", *tiny_overrides(tiny_data, epochs=1)
    )
    assert_ok(result)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 2  # 4 batches per epoch, split across the 2 processes
    assert len(_offline_runs(tmp_path)) == 1  # only rank 0 logs
    # 3 images split 2 + 1 across ranks, no padding: the same scores as one process on the checkpoint
    reference = evaluate_folder(tiny_data["val"], 2, model=metrics["best_ckpt"])
    assert metrics["test/tiny/psnr"] == pytest.approx(reference["psnr"], abs=1e-6)
    assert metrics["test/tiny/ssim"] == pytest.approx(reference["ssim"], abs=1e-6)


def _last_step(path: Path) -> int | None:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL mid-epoch, resume with resume_dir=: the weights equal an uninterrupted run's, bit for bit."""
    steps_per_epoch = 8
    args = [
        *tiny_overrides(tiny_data, epochs=3, steps=steps_per_epoch),
        "trainer.deterministic=true",
        "callbacks.last_checkpoint.every_n_train_steps=3",
        "logger=none",
        "test=false",
    ]
    assert_ok(run_cli(TRAIN, f"hydra.run.dir={tmp_path / 'full'}", *args))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", TRAIN, f"hydra.run.dir={killed}", *args],
        cwd=PROJECT_ROOT,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    step, deadline = None, time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        step = _last_step(killed / "checkpoints" / "last.ckpt")
        if step is not None and step > steps_per_epoch and step % steps_per_epoch:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before a mid-epoch checkpoint was seen"
    assert step is not None and step % steps_per_epoch  # killed after a mid-epoch save, in epoch 2

    assert_ok(run_cli(TRAIN, f"resume_dir={killed}", *args))
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == full["global_step"] == 3 * steps_per_epoch
    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])
    for a, b in zip(
        full["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scale=5", "scale=5 is not supported; allowed values: 2, 3, 4"),
        ("model=foo", "Could not find 'model/foo'"),
    ],
)
def test_cli_config_errors_fail_before_training(override: str, message: str, tmp_path: Path) -> None:
    result = run_cli(TRAIN, override, f"hydra.run.dir={tmp_path}", "logger=none")
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=sun80", "paths.train_root=/nonexistent"], "data: image folder not found: /nonexistent/Sun80"),
        (["monitor_set=Set99"], "monitor_set='Set99' is not a validation set; validation sets: skimage"),
        (["model.et_heads=5"], "model: et_heads=5 does not divide the attention width 144"),
        (["model=bicubic"], "model=bicubic has no parameters to train"),
        (["ckpt_path=last"], "ckpt_path=last: checkpoint not found"),
    ],
)
def test_config_errors_name_key_and_value(overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_train([*overrides, "logger=none"], tmp_path)
    with pytest.raises((ConfigError, FileNotFoundError), match=re.escape(message)):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("mode", ["fdr", "overfit", "limit", "profiler"])
def test_debug_modes_run(mode: str, tiny_data: dict[str, Path], tmp_path: Path) -> None:
    overrides = [f"debug={mode}", *tiny_overrides(tiny_data, epochs=2, steps=2), "extras.print_config=false"]
    cfg = compose_train(overrides, tmp_path)
    metrics, objects = train(cfg)
    assert objects["trainer"].loggers == [] and "test/tiny/psnr" in metrics
    assert metrics["global_step"] == {"fdr": 1, "overfit": 4, "limit": 4, "profiler": 4}[mode]
    if mode == "profiler":
        assert "run_training_batch" in (tmp_path / "fit-profile.txt").read_text()
