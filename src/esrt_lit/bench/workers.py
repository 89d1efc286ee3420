"""The bench's measurements, each run by :class:`esrt_lit.bench.measure.Runner` in a fresh subprocess
(``esrt_lit.bench.workers:<name>`` through :func:`esrt_lit.profiling.run_isolated`): keyword arguments
in, a JSON-able dict of figures out."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esrt_lit.profiling import PeakMemory, synchronize

__all__ = [
    "TRAIN_BATCH",
    "TRAIN_PATCH",
    "UHD_LR",
    "amp_error_worker",
    "infer_worker",
    "loader_worker",
    "loop_worker",
    "photo_pair",
    "train_worker",
    "uhd_worker",
]

UHD_LR = (540, 960)  # x4 → 3840×2160
TRAIN_BATCH, TRAIN_PATCH = 16, 48


def _build(
    scale: int, attention: str = "sdpa", channels_last: bool = True, train: bool = False, device: str = "cpu"
) -> Any:
    """ESRT with random weights (seed 0) on ``device``: timings and memory do not depend on the weights."""
    from esrt_lit.models import ESRT

    torch.manual_seed(0)
    net = ESRT(scale=scale, attention=attention)
    net.channels_last = channels_last
    return net.train(train).to(device)


def infer_worker(
    scale: int,
    lr_hw: Sequence[int],
    attention: str = "sdpa",
    channels_last: bool = True,
    tile: int | None = None,
    overlap: int = 16,
    amp: str | None = None,
    repeats: int = 1,
    warmup: int = 1,
    compile: bool = False,
    stream_rows: int | None = None,
    batch: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Latency (fastest of ``repeats`` after ``warmup`` passes) and peak memory of one inference setting.

    The fastest pass is the figure least disturbed by other processes on a shared machine.
    """
    from esrt_lit.inference import upscale

    net = _build(scale, attention, channels_last, device=device)
    if compile:
        net = torch.compile(net)
    x = torch.rand(batch, 3, *lr_hw, generator=torch.Generator().manual_seed(1)).to(device)
    times = []
    with PeakMemory(device) as mem:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            upscale(net, x, tile=tile, overlap=overlap, amp=amp, stream_rows=stream_rows)
            synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_bytes": mem.peak_bytes}


def amp_error_worker(scale: int, lr_hw: Sequence[int], amp: str, device: str = "cpu") -> dict[str, Any]:
    """Max |autocast − fp32| of the SR output and the PSNR between them (same random weights).

    The PSNR is of the unrounded float outputs (peak 1): a precision error, not the SR protocol's score
    (:func:`esrt_lit.metrics.functional.psnr` rounds both to 8-bit levels first, which hides most of it).
    """
    from esrt_lit.inference import upscale

    net = _build(scale, device=device)
    x = torch.rand(3, *lr_hw, generator=torch.Generator().manual_seed(1)).to(device)
    ref, low = upscale(net, x), upscale(net, x, amp=amp)
    mse = float(((ref - low) ** 2).mean())
    return {"max_abs": float((ref - low).abs().max()), "psnr": 10 * math.log10(1 / mse) if mse else math.inf}


def train_worker(
    attention: str = "sdpa",
    channels_last: bool = True,
    steps: int = 2,
    scale: int = 4,
    amp: str | None = None,
    device: str = "cpu",
    batch: int = TRAIN_BATCH,
    patch: int = TRAIN_PATCH,
    compile: str | None = None,
    fused: bool | None = None,
) -> dict[str, Any]:
    """Seconds per training step of :class:`~esrt_lit.training.module.SRLitModule`'s objective (L1 loss, Adam)
    on random ``batch`` × ``patch``² LR patches, the first step's loss and seconds (compilation included),
    and peak memory.

    On a CPU the figure is the fastest of ``steps`` steps after one warm-up, each timed alone; on CUDA it
    is the mean of ``steps`` steps run back to back after three warm-ups (CUDA graphs are recorded on
    the second call), timed with one synchronisation at each end, as a training loop runs them.
    ``compile`` is a :func:`torch.compile` mode (None: eager), ``fused`` Adam's ``fused`` flag,
    ``amp="bf16"`` bf16 autocast (Lightning's ``precision="bf16-mixed"``).
    """
    from esrt_lit.inference import amp_context
    from esrt_lit.training.module import SRLitModule

    net = _build(scale, attention, channels_last, train=True, device=device)
    module = SRLitModule(net)
    objective = module._forward_loss if compile is None else torch.compile(module._forward_loss, mode=compile)
    gen = torch.Generator().manual_seed(2)
    lr = torch.rand(batch, 3, patch, patch, generator=gen).to(device)
    hr = torch.rand(batch, 3, patch * scale, patch * scale, generator=gen).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=fused)
    cuda = lr.device.type == "cuda"

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        if compile is not None:
            torch.compiler.cudagraph_mark_step_begin()
        with amp_context(amp, lr.device):
            loss = objective(lr, hr)
        loss.backward()
        opt.step()
        return loss.detach()

    with PeakMemory(device) as mem:
        start = time.perf_counter()
        loss0 = float(step())
        first = time.perf_counter() - start
        times = []
        if cuda:
            for _ in range(3):
                step()
            synchronize(lr.device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            synchronize(lr.device)
            times.append((time.perf_counter() - start) / steps)
        else:
            for _ in range(steps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
    return {"seconds": min(times), "first_step_s": first, "loss0": loss0, "peak_bytes": mem.peak_bytes}


def loop_worker(scale: int, batch: int, patch: int, steps: int, device: str = "cpu") -> dict[str, Any]:
    """The whole Lightning loop, ``python -m esrt_lit.train`` as a user runs it (data loading, logging, the
    progress bar, checkpoints; the fast path on CUDA): ``speed/*`` of its ``metrics.json`` after ``steps`` steps on
    Sun80 (the embedded images without the shared data), one Set5 validation at the end, no test."""
    import subprocess
    import sys
    import tempfile

    from esrt_lit.paths import shared_dir

    shared = shared_dir()
    data = "sun80" if shared is not None and (shared / "data" / "train" / "Sun80").is_dir() else "default"
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "esrt_lit.train",
            f"trainer={'gpu' if device == 'cuda' else 'cpu'}",
            f"data={data}",
            f"scale={scale}",
            f"data.batch_size={batch}",
            f"data.patch_size={patch}",
            f"data.iters_per_epoch={steps}",
            "trainer.max_epochs=1",
            "logger=csv",
            "test=false",
            f"hydra.run.dir={out}",
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command[2:])} exited {proc.returncode}: {proc.stderr[-2000:]}")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    speed = {k.removeprefix("speed/"): v for k, v in metrics.items() if k.startswith("speed/")}
    return {"seconds": 1 / speed["it_per_s"], "data": data, **speed}


def loader_worker(n_batches: int, num_workers: int) -> dict[str, Any]:
    """Training samples/s of the default data module (embedded photos, batch 16, patch 48, x4)."""
    from esrt_lit.data import SRDataModule
    from esrt_lit.data.throughput import measure

    dm = SRDataModule(
        scale=4,
        patch_size=TRAIN_PATCH,
        batch_size=TRAIN_BATCH,
        num_workers=num_workers,
        iters_per_epoch=n_batches + 2,
        seed=0,
    )
    return {"samples_per_s": measure(dm, n_batches)}


def photo_pair(scale: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(LR 960×540, HR, name): a real photo cropped to 16:9 and resized (PIL bicubic) to
    ``960·scale × 540·scale`` as the HR reference, and its MATLAB-bicubic downscale by ``scale``."""
    from PIL import Image

    from esrt_lit.data.imresize import imresize
    from esrt_lit.data.io import read_image
    from esrt_lit.paths import shared_dir

    shared = shared_dir()
    photo = shared / "data" / "train" / "Sun80" / "abbey_sun_asztnlqhlrvirneh.jpg" if shared else None
    if photo is not None and photo.is_file():
        img, name = read_image(photo), f"Sun80/{photo.name}"
    else:
        import skimage.data

        img, name = skimage.data.astronaut(), "skimage astronaut"
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    h, w = img.shape[:2]
    ch = min(h, w * 9 // 16)
    cw = ch * 16 // 9
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(img[top : top + ch, left : left + cw])
    hr = np.asarray(crop.resize((UHD_LR[1] * scale, UHD_LR[0] * scale), Image.BICUBIC))
    return imresize(hr, scale=1 / scale), hr, name


def uhd_worker(
    tile: int | None,
    overlap: int,
    out_path: str,
    ckpt: str | None = None,
    stream_rows: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Upscale the 960×540 photo (tiled, streamed or whole) with random x4 weights or ``ckpt``'s
    network; save the uint8 SR image to ``out_path`` (.npy)."""
    from esrt_lit.inference import upscale
    from esrt_lit.models.checkpoint import load_network

    net = _build(4, device=device) if ckpt is None else load_network(ckpt).to(device)
    lr, _, _ = photo_pair(net.scale)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        sr = upscale(net, lr, tile=tile, overlap=overlap, stream_rows=stream_rows)
        seconds = time.perf_counter() - start
    np.save(out_path, sr)
    return {"seconds": seconds, "peak_bytes": mem.peak_bytes}
