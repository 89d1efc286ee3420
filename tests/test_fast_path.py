"""The GPU fast path, as far as a CPU can check it: the compiled training step computes eager's losses,
evaluation never recompiles, checkpoints of compiled and eager runs are interchangeable, the loss is
read back from the device only at logging steps, a non-finite loss is skipped on the device by a fused
optimizer, the run records its speed, ``auto`` settings follow the device, and a step that fails to
compile or capture continues eagerly from the same step (a test backend fails on purpose) while the
network's own errors still surface, and ``.ci/gpu-check`` leaves its table behind when a stage fails, is
cut at its budget or the call is killed (with a stand-in ``python3``). The CUDA-graph runs themselves are
in ``tests/test_cuda.py``."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from functorch.compile import make_boxed_func
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters
from torch._inductor.exc import InductorError

from esrt_lit.data.datamodule import SRDataModule
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.training.callbacks import (
    LearningRateMonitor,
    NonFiniteLossError,
    NonFiniteLossGuard,
    TrainingSpeed,
)
from esrt_lit.training.module import SRLitModule, compile_mode
from esrt_lit.training.records import run_metrics
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
    assert module.fast_path == "compiled (reduce-overhead)" and eager_module.fast_path == "eager"
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


class FlipLoss(torch.nn.Module):
    """L1 loss with a switch dynamo guards on: flipping it (:class:`FlipAt`) compiles a second graph."""

    def __init__(self) -> None:
        super().__init__()
        self.flipped = False

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.flipped:
            return torch.nn.functional.l1_loss(sr, hr)
        return (sr - hr).abs().mean()


class FlipAt(Callback):
    """Flip the module's :class:`FlipLoss` before training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            pl_module.loss_fn.flipped = True


class GraphBreak(torch.nn.Module):
    """:func:`tiny_net` and a 1×1 convolution after a graph break: a step of three graphs (the network, the
    convolution, the loss), whose backwards run in reverse: the convolution's gradients are accumulated
    before the network's backward is lowered."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()
        self.scale = self.net.scale
        self.post = torch.nn.Conv2d(3, 3, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        sr = self.net(lr)
        torch._dynamo.graph_break()
        return self.post(sr)


#: the start of the reason a lowering that :func:`failing_backend` fails gives
LOWERING = "InductorError: NotImplementedError: no lowering for aten.fake_op in the "


def failing_backend(fail: str, at: int) -> Callable[..., Any]:
    """A :func:`torch.compile` backend: AOTAutograd running the traced graphs as they are, except that it
    fails the way inductor and CUDA graphs do: ``fail="forward"`` raises inductor's ``InductorError``
    compiling the ``at``-th forward graph, ``"backward"`` the ``at``-th backward (lowered at its first
    backward); ``"capture"`` raises an out-of-memory error at the ``at``-th call of a compiled forward."""
    graphs, backwards, calls = [0], [0], [0]

    def lowering_failed(where: str) -> InductorError:
        return InductorError(
            NotImplementedError(f"no lowering for aten.fake_op in the {where}\ndetail"), None
        )

    def forward(gm: torch.fx.GraphModule, inputs: Any) -> Callable[..., Any]:
        graphs[0] += 1
        if fail == "forward" and graphs[0] == at:
            raise lowering_failed("forward")

        def run(args: list[Any]) -> Any:
            calls[0] += 1
            if fail == "capture" and calls[0] == at:
                raise torch.OutOfMemoryError("CUDA out of memory while capturing a CUDA graph")
            return gm(*args)

        run._boxed_call = True  # type: ignore[attr-defined]
        return run

    def backward(gm: torch.fx.GraphModule, inputs: Any) -> Callable[..., Any]:
        backwards[0] += 1
        if fail == "backward" and backwards[0] == at:
            raise lowering_failed("backward")
        return make_boxed_func(gm.forward)

    return aot_autograd(fw_compiler=forward, bw_compiler=backward)


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """Dynamo's caches emptied before and after (the step's code object is shared by every module)."""
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def run_steps(
    data: dict[str, Path], tmp_path: Path, module: SRLitModule, steps: int = 6, flip_at: int = 3
) -> Trainer:
    run = tiny_trainer(tmp_path, callbacks=[FlipAt(flip_at)], max_steps=steps, limit_val_batches=0)
    run.fit(module, datamodule=datamodule(data, steps))
    return run


@pytest.mark.parametrize(
    ("net", "fail", "at", "step", "reason"),
    [
        (tiny_net, "forward", 1, 0, f"{LOWERING}forward"),
        (tiny_net, "backward", 1, 0, f"{LOWERING}backward"),
        (GraphBreak, "backward", 3, 0, f"{LOWERING}backward"),  # the first graph's, after the others'
        (tiny_net, "capture", 2, 1, "OutOfMemoryError: CUDA out of memory while capturing a CUDA graph"),
        (tiny_net, "forward", 2, 3, f"{LOWERING}forward"),
    ],
    ids=["compile", "backward-compile", "backward-compile-past-a-graph-break", "capture-oom", "recompile"],
)
def test_failed_compile_continues_eager_from_the_same_step(
    net: Callable[[], torch.nn.Module],
    fail: str,
    at: int,
    step: int,
    reason: str,
    data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_dynamo: None,
) -> None:
    compile_ = torch.compile
    backend = failing_backend(fail, at)
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: compile_(fn, backend=backend))
    eager = SRLitModule(net(), loss=FlipLoss())
    run_steps(data, tmp_path / "eager", eager)
    assert eager.fast_path == "eager"
    module = SRLitModule(net(), loss=FlipLoss(), compile="default")  # forced on a CPU
    with caplog.at_level(logging.WARNING, logger="esrt_lit.training.module"):
        run = run_steps(data, tmp_path, module)
    said = [r.getMessage() for r in caplog.records if "module.compile=false" in r.getMessage()]
    assert said == [
        f"the compiled training step failed ({reason}); continuing eager from step {step} with the same "
        "weights and optimizer state — set module.compile=false to skip compiling"
    ]
    assert run.global_step == 6 and module.compile_mode == "default"
    assert run_metrics(2, tmp_path, module, run, {}, {})["speed/fast_path"] == f"eager ({reason})"
    # the failed step recomputed once, eagerly: a step skipped or applied twice moves the weights by ~lr
    for (name, value), expected in zip(
        module.net.state_dict().items(), eager.net.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_a_working_compiled_step_is_recorded(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dynamo: None
) -> None:
    """No failure: the step stays compiled; an out-of-memory error after the capture steps is the run's."""
    compile_ = torch.compile
    backend = failing_backend("capture", 7)  # step 6: three steps after the recompile at step 3
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: compile_(fn, backend=backend))
    module = SRLitModule(tiny_net(), loss=FlipLoss(), compile="default")
    with pytest.raises(torch.OutOfMemoryError, match="while capturing"):
        run_steps(data, tmp_path, module, steps=8)
    assert module.fast_path == "compiled (default)"
    module = SRLitModule(tiny_net(), compile="default")
    run = run_steps(data, tmp_path, module, steps=2)
    assert run_metrics(2, tmp_path, module, run, {}, {})["speed/fast_path"] == "compiled (default)"


@pytest.mark.parametrize(
    ("net", "error", "match"),
    [
        (functools.partial(tiny_net, attn_splits=200), ValueError, "input of 12×12 pixels is too small"),
        (functools.partial(tiny_net, scale=3), RuntimeError, "must match the size"),  # 36 against 24 pixels
    ],
    ids=["network-check", "shape-error-while-tracing"],
)
@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")
def test_network_errors_in_the_compiled_step_are_not_swallowed(
    net: Callable[[], torch.nn.Module],
    error: type[Exception],
    match: str,
    data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_dynamo: None,
) -> None:
    """The network's ``ValueError`` reaches the caller as itself; an op's error that dynamo meets while
    tracing (``TorchRuntimeError``, a dynamo exception) is raised again by the eager recompute, as eager's."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: compile_(fn, backend="aot_eager"))
    module = SRLitModule(net(), compile="default")
    with (
        caplog.at_level(logging.WARNING, logger="esrt_lit.training.module"),
        pytest.raises(error, match=match) as raised,
    ):
        run_steps(data, tmp_path, module, steps=2)
    assert type(raised.value) is error
    assert module.fast_path == "compiled (default)"
    assert not [r for r in caplog.records if "module.compile=false" in r.getMessage()]


#: ``python3`` of a machine without a GPU, for ``.ci/gpu-check``: each stage's command answers as the test
#: needs (``REFERENCE_SLEEP`` holds the reference run); anything else is the real Python.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
  "-m pip install"*) exit 0 ;;
  "-c import torch"*) echo "torch 0.0 lightning 0.0" ;;
  "-m pytest"*) echo "FAILED tests/test_cuda.py::test_x - AssertionError: boom"; echo "1 failed, 5 passed in 3.2s"; exit 1 ;;
  "-m esrt_lit.bench"*--quick*) echo "row: | train step b16 p48 | captured (CUDA graphs) | 20 it/s |"; exec sleep 60 ;;
  "-m esrt_lit.bench"*) echo "| train loop b16 p48 | python -m esrt_lit.train | 10 it/s |" ;;
  "-m esrt_lit.train"*)
    for a in "$@"; do case "$a" in hydra.run.dir=*) dir=${a#hydra.run.dir=} ;; esac; done
    mkdir -p "$dir/checkpoints" && touch "$dir/checkpoints/last.ckpt"
    echo '{"speed/fast_path": "eager (InductorError: x)", "speed/it_per_s": 31.234, "test/Set5/psnr": 37.1}' \\
      > "$dir/metrics.json"
    echo "WARNING the compiled training step failed (InductorError: x); continuing eager from step 0"
    exec sleep "${REFERENCE_SLEEP:-0}" ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def gpu_check_tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A checkout holding ``.ci/gpu-check`` and a wheel, and the environment that runs it without a GPU:
    stand-ins for ``python3`` and ``nvidia-smi``, the quick stage's budget one second, ``OUT`` and ``TMPDIR``."""
    root, bin_, out = tmp_path / "tree", tmp_path / "bin", tmp_path / "out"
    for folder in (root / ".ci", root / ".whl", bin_, out, tmp_path / "tmp"):
        folder.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / ".ci" / "gpu-check", root / ".ci" / "gpu-check")
    (root / ".whl" / "esrt-0-py3-none-any.whl").touch()
    (bin_ / "python3").write_text(FAKE_PYTHON)
    (bin_ / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'Fake GPU, 80 GiB, 0.0'\n")
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", REAL_PYTHON=sys.executable, OUT=str(out))
    env.update(TMPDIR=str(tmp_path / "tmp"), GPU_CHECK_QUICK_S="1")
    return root, env


needs_bash = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("timeout")), reason="no bash/timeout"
)


@needs_bash
def test_gpu_check_records_every_stage_as_it_ends(tmp_path: Path) -> None:
    assert (
        subprocess.run(["bash", "-n", str(PROJECT_ROOT / ".ci" / "gpu-check")], check=False).returncode == 0
    )
    root, env = gpu_check_tree(tmp_path)
    done = subprocess.run(
        [str(root / ".ci" / "gpu-check"), "tests", "quick", "bench", "reference"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 124, done.stderr  # the last failing stage's: quick, cut at its budget
    assert "warning: over the 9 minutes of one device call" in done.stderr
    rows = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert rows[0] == "# gpu-check tests quick bench reference on Fake GPU, 80 GiB, 0.0"
    cells = {row.split(" | ")[0].removeprefix("| "): row.split(" | ")[1:] for row in rows[4:]}
    assert list(cells) == ["setup", "tests", "quick", "bench", "reference"]
    assert cells["setup"][0] == "0" and "torch 0.0 lightning 0.0" in cells["setup"][2]
    assert cells["tests"][0] == "1"
    assert (
        cells["tests"][2]
        == "1 failed, 5 passed in 3.2s<br>FAILED tests/test_cuda.py::test_x - AssertionError: boom |"
    )
    assert cells["quick"][0] == "124 (cut at 1 s)" and int(cells["quick"][1]) < 5
    assert cells["quick"][2].startswith(r"\| train step b16 p48 \| captured (CUDA graphs) \| 20 it/s \|")
    assert cells["bench"][0] == "0"
    assert cells["reference"][2] == (
        "speed/fast_path eager (InductorError: x); speed/it_per_s 31.23; test/Set5/psnr 37.1<br>"
        "WARNING the compiled training step failed (InductorError: x); continuing eager from step 0 |"
    )
    with tarfile.open(tmp_path / "out" / "gpu-check.tgz") as packed:
        names = set(packed.getnames())
    assert {"./tests.log", "./quick.log", "./reference/metrics.json"} <= names
    assert "./reference/checkpoints/last.ckpt" not in names  # the device tool returns files of 16 MiB at most


@needs_bash
def test_gpu_check_killed_mid_stage_leaves_its_table(tmp_path: Path) -> None:
    root, env = gpu_check_tree(tmp_path)
    env["REFERENCE_SLEEP"] = "60"
    call = subprocess.Popen(
        [str(root / ".ci" / "gpu-check"), "reference"], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    results = tmp_path / "out" / "results.md"
    try:
        deadline = time.monotonic() + 30
        while "| reference | running" not in (results.read_text() if results.is_file() else ""):
            assert time.monotonic() < deadline, "the reference stage never started"
            time.sleep(0.1)
    finally:
        os.killpg(call.pid, signal.SIGKILL)  # the device tool's limit: no trap runs
        call.wait()
    rows = results.read_text().splitlines()
    assert rows[4].startswith("| setup | 0 | ") and rows[5] == "| reference | running (budget 490 s) | | |"
    with tarfile.open(tmp_path / "out" / "gpu-check.tgz") as packed:
        assert "./setup.log" in packed.getnames()  # packed when the setup ended
