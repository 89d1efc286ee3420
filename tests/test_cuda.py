"""On a CUDA device: the released network's outputs, the fused attention kernels, streaming, training.

Skipped without a GPU; nothing else in the suite needs one.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from esrt_lit.inference import upscale
from esrt_lit.models import ESRT
from esrt_lit.models.official import from_official
from esrt_lit.models.streaming import forward_streamed

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_golden_outputs_on_cuda_with_fused_kernels_only(golden: dict, scale: int) -> None:
    entry = golden[f"x{scale}"]
    net64 = from_official(entry["state_dict"]).double().eval().cuda()
    net32 = from_official(entry["state_dict"]).eval().cuda()
    for case in entry["cases"].values():
        lr, sr = case["lr"].cuda(), case["sr"].cuda()
        with torch.inference_mode():
            out64 = net64(lr)  # float64: the math kernel (the fused ones take no float64)
            with sdpa_kernel(FUSED):  # raises if the padded heads still needed the math fallback
                out32 = net32(lr.float()).double()
                bf16 = upscale(net32, lr.float(), amp="bf16").double()
        assert (out64 - sr).abs().max().item() <= 1e-8
        # TF32 convolutions (cuDNN's default) keep ~10 mantissa bits
        assert ((out32 - sr).abs().max() / sr.abs().max()).item() <= 5e-3
        assert ((bf16 - sr).abs().max() / sr.abs().max()).item() <= 5e-2


def test_streamed_and_training_step_on_cuda() -> None:
    torch.manual_seed(0)
    net = ESRT(scale=4).cuda().eval()
    x = torch.rand(1, 3, 61, 83, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 rounding differs between cuDNN algorithms
    try:
        with torch.inference_mode(), sdpa_kernel(FUSED):
            whole, streamed = net(x), forward_streamed(net, x, rows=16)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert torch.allclose(whole, streamed, atol=1e-5, rtol=1e-5)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lr, hr = torch.rand(4, 3, 24, 24, device="cuda"), torch.rand(4, 3, 96, 96, device="cuda")
    with sdpa_kernel(FUSED), torch.autocast("cuda", dtype=torch.bfloat16):
        loss = (net(lr).float() - hr).abs().mean()
    loss.backward()
    opt.step()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _fit(tmp_path, compile, steps, callbacks=(), ckpt_path=None, **trainer_kwargs):
    """Fit a tiny ESRT on tiny images on the GPU for ``steps`` steps; returns the module and its losses."""
    import functools

    from lightning.pytorch import Callback

    from esrt_lit.training.module import SRLitModule
    from train_helpers import make_tiny_images, tiny_datamodule, tiny_net, tiny_trainer

    class Losses(Callback):
        def __init__(self) -> None:
            self.values: list[torch.Tensor] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, *args) -> None:
            self.values.append(outputs["loss"])  # read back after the fit: no sync during it

    adam = functools.partial(torch.optim.Adam, lr=1e-3, fused=None)
    module = SRLitModule(tiny_net(), optimizer=adam, compile=compile)
    losses = Losses()
    options = dict(accelerator="gpu", devices=1, limit_val_batches=0, callbacks=[losses, *callbacks])
    trainer = tiny_trainer(tmp_path, **{**options, **trainer_kwargs})
    data = tiny_datamodule(make_tiny_images(tmp_path / "data"), iters_per_epoch=steps)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    return module, [float(v) for v in losses.values], trainer


def test_captured_step_matches_eager_on_cuda(tmp_path) -> None:
    """The first 50 losses of the CUDA-graph path equal eager's to fp32 rounding (TF32 off: its
    rounding depends on the kernel)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        eager_module, eager, _ = _fit(tmp_path / "eager", False, 50)
        module, captured, _ = _fit(tmp_path / "captured", "auto", 50)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    assert module.compile_mode == "reduce-overhead" and eager_module.compile_mode is None
    assert module.trainer.optimizers[0].param_groups[0]["fused"] is True  # fused by default on CUDA
    assert len(captured) == len(eager) == 50
    assert max(abs(a - b) / b for a, b in zip(captured, eager, strict=True)) <= 1e-4


def test_no_device_sync_between_logging_steps(tmp_path) -> None:
    """Steps 10-19 of the fast path (compiled step in CUDA graphs, fused Adam, deferred NaN guard, the
    default callbacks and a progress bar) run without one host-device synchronisation."""
    from lightning.pytorch import Callback
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from esrt_lit.training.callbacks import LearningRateMonitor, NonFiniteLossGuard, TrainingSpeed

    class NoSync(Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == 10:
                torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 19:
                torch.cuda.set_sync_debug_mode("default")

    guard = NonFiniteLossGuard()
    callbacks = [
        guard,
        LearningRateMonitor(logging_interval="step"),
        TrainingSpeed(),
        ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=100),
        RichProgressBar(),
        NoSync(),
    ]
    try:
        _, losses, _ = _fit(
            tmp_path,
            "auto",
            30,
            callbacks,
            logger=CSVLogger(tmp_path),
            log_every_n_steps=50,
            enable_progress_bar=True,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert guard.deferred and len(losses) == 30


def test_captured_run_resumes_from_its_checkpoint(tmp_path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=10)
    _fit(tmp_path / "first", "auto", 20, [ckpt], max_steps=10)
    module, losses, trainer = _fit(
        tmp_path / "resumed", "auto", 20, ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    assert module.compile_mode == "reduce-overhead"
    assert trainer.global_step == 20 and len(losses) == 10  # the rest of the epoch, from step 10
