"""The GPU fast path, as far as a CPU can check it: the compiled training step computes eager's losses,
evaluation never recompiles, checkpoints of compiled and eager runs are interchangeable, the loss is
read back from the device only at logging steps, a non-finite loss is skipped on the device by a fused
optimizer, the run records its speed, and ``auto`` settings follow the device. The CUDA-graph runs
themselves are in ``tests/test_cuda.py``."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torch._dynamo.utils import counters

from esrt_lit.data.datamodule import SRDataModule
from esrt_lit.training.callbacks import (
    LearningRateMonitor,
    NonFiniteLossError,
    NonFiniteLossGuard,
    TrainingSpeed,
)
from esrt_lit.training.module import SRLitModule, compile_mode
from train_helpers import NaNAfter, make_tiny_images, tiny_datamodule, tiny_net, tiny_trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny images, plus validation images of three different sizes."""
    root = tmp_path_factory.mktemp("fast")
    folders = make_tiny_images(root)
    folders["sizes"] = root / "sizes"
    folders["sizes"].mkdir()
    rng = np.random.default_rng(1)
    for h, w in ((40, 52), (36, 36), (50, 30)):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folders["sizes"] / f"{h}x{w}.png"
        )
    return folders


def datamodule(data: dict[str, Path], steps: int) -> Any:
    """The tiny training data, validated on images of three sizes."""
    return tiny_datamodule(data, val="sizes", iters_per_epoch=steps)


class Losses(Callback):
    """The loss of every training step."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, *args: Any) -> None:
        self.values.append(float(outputs["loss"]))


def test_compile_mode_follows_the_device() -> None:
    assert compile_mode("auto", "cuda", 1) == "reduce-overhead"
    assert compile_mode("auto", "cuda", 4) == "default"
    assert compile_mode("auto", "cpu", 1) is None
    assert compile_mode(False, "cuda", 1) is None
    assert compile_mode(True, "cpu", 1) == "default"
    assert compile_mode("max-autotune", "cpu", 2) == "max-autotune"
    with pytest.raises(ValueError, match="compile='fast'; expected true, false or one of auto"):
        compile_mode("fast", "cuda", 1)
    with pytest.raises(ValueError, match="compile='fast'"):
        SRLitModule(tiny_net(), compile="fast")


@pytest.mark.slow
def test_compiled_step_matches_eager_and_evaluation_never_recompiles(
    data: dict[str, Path], tmp_path: Path
) -> None:
    steps = 50
    runs = {}
    for mode in (False, "reduce-overhead"):  # CUDA graphs apply on CUDA only; on a CPU, inductor kernels
        losses = Losses()
        module = SRLitModule(tiny_net(), compile=mode)
        ckpt = ModelCheckpoint(dirpath=tmp_path / str(mode), save_last=True, save_top_k=0)
        fit = tiny_trainer(tmp_path, callbacks=[losses, ckpt], val_check_interval=20, max_steps=steps)
        graphs = counters["stats"]["unique_graphs"]
        fit.fit(module, datamodule=datamodule(data, steps))
        runs[mode] = (losses.values, module, counters["stats"]["unique_graphs"] - graphs)
    (eager, eager_module, _), (compiled, module, graphs) = runs[False], runs["reduce-overhead"]
    assert module.compile_mode == "reduce-overhead" and eager_module.compile_mode is None
    assert len(compiled) == len(eager) == steps
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)  # measured: 1.9e-7
    # the forward and backward of one training shape; validation on three sizes compiled nothing
    assert graphs == 1 and len({*module.val_names}) == 1
    # the checkpoints hold the same names, so eager and compiled runs resume from each other's
    eager_sd = torch.load(tmp_path / "False" / "last.ckpt", weights_only=True)["state_dict"]
    compiled_sd = torch.load(tmp_path / "reduce-overhead" / "last.ckpt", weights_only=True)["state_dict"]
    assert eager_sd.keys() == compiled_sd.keys()
    resumed = Losses()
    tiny_trainer(tmp_path, callbacks=[resumed], max_epochs=3, max_steps=steps + 3, limit_val_batches=0).fit(
        SRLitModule(tiny_net()),
        datamodule=datamodule(data, steps),
        ckpt_path=tmp_path / "reduce-overhead" / "last.ckpt",
        weights_only=True,
    )
    assert len(resumed.values) == 3


def test_fused_optimizer_skips_a_non_finite_step_on_the_device(data: dict[str, Path], tmp_path: Path) -> None:
    fused = functools.partial(torch.optim.Adam, lr=1e-3, fused=True)
    good = SRLitModule(tiny_net(), optimizer=fused)
    tiny_trainer(tmp_path / "good", max_steps=2, limit_val_batches=0).fit(
        good, datamodule=datamodule(data, 8)
    )

    guard = NonFiniteLossGuard(check_every_n_steps=4)
    bad = SRLitModule(tiny_net(), optimizer=fused, loss=NaNAfter(3))  # steps 2 and 3 are NaN
    run = tiny_trainer(tmp_path / "bad", callbacks=[guard], max_steps=8, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"not finite at 2 step\(s\), the first at global step 2: their "
                       r"updates were skipped on the device; no checkpoint was written before it"):  # fmt: skip
        run.fit(bad, datamodule=datamodule(data, 8))
    assert guard.deferred and run.global_step == 4  # found at the first check, after step 4
    for (name, p), q in zip(bad.net.named_parameters(), good.net.parameters(), strict=True):
        assert torch.equal(p, q), name  # the two bad updates left the weights where two good steps put them


def test_deferred_guard_writes_no_checkpoint_after_a_bad_step(data: dict[str, Path], tmp_path: Path) -> None:
    fused = functools.partial(torch.optim.Adam, lr=1e-3, fused=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=2)
    guard = NonFiniteLossGuard(check_every_n_steps=100)
    run = tiny_trainer(tmp_path, callbacks=[guard, ckpt], max_steps=8, limit_val_batches=0)
    with pytest.raises(
        NonFiniteLossError, match=r"global step 2: .* the last good checkpoint is kept: .*last\.ckpt"
    ):
        run.fit(SRLitModule(tiny_net(), optimizer=fused, loss=NaNAfter(3)), datamodule=datamodule(data, 8))
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2


def test_loss_and_guard_are_read_back_only_at_logging_steps(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tensors a CUDA step would wait for: the logged loss (copied to the host only at the steps
    Lightning's loggers write) and the guard's flags (read at its checks only)."""
    from lightning.pytorch.loggers import CSVLogger

    module = SRLitModule(tiny_net(), optimizer=functools.partial(torch.optim.Adam, lr=1e-3, fused=True))
    guard = NonFiniteLossGuard()
    logged: list[tuple[int, str]] = []
    checks: list[int] = []
    log, check = module.log, guard.check

    def spy_log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if name == "train/loss":
            logged.append((module.global_step, value.device.type))
        log(name, value, *args, **kwargs)

    def spy_check(trainer: Trainer) -> None:
        checks.append(trainer.global_step)
        check(trainer)

    monkeypatch.setattr(module, "log", spy_log)
    monkeypatch.setattr(guard, "check", spy_check)
    run = tiny_trainer(
        tmp_path,
        callbacks=[guard, LearningRateMonitor(logging_interval="step")],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=5,
        max_steps=20,
        limit_val_batches=0,
        enable_checkpointing=False,  # each checkpoint is one more check
    )
    run.fit(module, datamodule=datamodule(data, 20))
    assert guard.deferred
    assert logged == [(s, "cpu") for s in (4, 9, 14, 19)]  # before the optimizer steps 5, 10, 15, 20
    assert checks == [5, 10, 15, 20, 20]  # after those steps, and at the end
    lines = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"train/loss", "lr"} <= set(header)
    assert sum(row.split(",")[header.index("train/loss")] != "" for row in lines[1:]) == 4


def test_training_speed_is_recorded(data: dict[str, Path], tmp_path: Path) -> None:
    speed = TrainingSpeed(warmup_steps=4)
    run = tiny_trainer(tmp_path, callbacks=[speed], max_steps=10, val_check_interval=5)
    run.fit(SRLitModule(tiny_net()), datamodule=datamodule(data, 10))
    metrics = {k: float(v) for k, v in run.callback_metrics.items() if k.startswith("speed/")}
    assert metrics["speed/from_step"] == 4 and metrics["speed/first_step_s"] > 0
    assert metrics["speed/it_per_s"] > 0 and metrics["speed/val_s"] > 0
    assert metrics["speed/samples_per_s"] == pytest.approx(4 * metrics["speed/it_per_s"])
    short = TrainingSpeed(warmup_steps=100)  # a run shorter than the warm-up: from the second step on
    run = tiny_trainer(tmp_path, callbacks=[short], max_steps=3, limit_val_batches=0)
    run.fit(SRLitModule(tiny_net()), datamodule=datamodule(data, 10))
    assert float(run.callback_metrics["speed/from_step"]) == 1


def _on(device: str, devices: int = 1) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), num_devices=devices)


def test_loader_settings_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    dm = SRDataModule()
    assert (dm.loader_workers, dm.loader_pin_memory) == (0, False)  # not attached to a trainer
    dm.trainer = _on("cpu")
    assert (dm.loader_workers, dm.loader_pin_memory) == (0, False)
    dm.trainer = _on("cuda")
    assert (dm.loader_workers, dm.loader_pin_memory) == (8, True)
    dm.trainer = _on("cuda", devices=4)  # 16 cores shared by 4 processes
    assert dm.loader_workers == 3
    explicit = SRDataModule(num_workers=2, pin_memory=False)
    explicit.trainer = _on("cuda")
    assert (explicit.loader_workers, explicit.loader_pin_memory) == (2, False)
    with pytest.raises(ValueError, match="num_workers='many'; expected auto or an integer >= 0"):
        SRDataModule(num_workers="many")
    with pytest.raises(ValueError, match="pin_memory='yes'; expected auto, true or false"):
        SRDataModule(pin_memory="yes")


def test_optimizer_is_fused_on_cuda_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    module = SRLitModule(tiny_net(), optimizer=functools.partial(torch.optim.Adam, lr=1e-3, fused=None))
    assert module._fused_on_cuda(module.optimizer_factory) is module.optimizer_factory  # no trainer: as given
    monkeypatch.setattr(SRLitModule, "trainer", _on("cuda"))
    monkeypatch.setattr(module, "_trainer", object())
    assert module._fused_on_cuda(module.optimizer_factory).keywords["fused"] is True
    off = functools.partial(torch.optim.Adam, lr=1e-3, fused=False)
    assert module._fused_on_cuda(off) is off
    no_fused = functools.partial(torch.optim.RMSprop, lr=1e-3)  # has no fused implementation
    assert module._fused_on_cuda(no_fused) is no_fused
