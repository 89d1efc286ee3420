"""One performance table for ESRT, every row measured in the same run.

Usage::

    python -m esrt_lit.bench [--quick | --full] [--json PATH] [--ckpt PATH] [--tile 192] [--threads N]

Paths compared:

- ``default``: this port as it runs by default: fused attention
  (``scaled_dot_product_attention``) and, on CPU, channels-last activations;
- ``explicit``: the released computation, ``softmax(q·kᵀ)·v`` written out per chunk on
  contiguous (NCHW) activations, which materialises an ``N/4 × N/4`` matrix per head;
- ``streamed``: :func:`esrt_lit.models.streaming.forward_streamed` (``upscale(stream_rows=32)``), the
  whole-image output computed in row blocks;
- ``tiled``: :func:`esrt_lit.inference.upscale` with ``--tile`` LR tiles and ``--overlap`` pixels.

Columns: exact MACs (attention products included) and the paper's convention (convolutions and
linear layers only) from :func:`esrt_lit.profiling.count_macs`; wall time (the fastest of a few
passes after a warm-up, the figure least disturbed by other jobs; one pass for rows above 500 GMAC);
peak memory above
the loaded model and input (:class:`esrt_lit.profiling.PeakMemory`); effective GFLOP/s
(``2 · exact MACs / time``); and on each ``default`` row the ``explicit / default`` ratios of time and
memory measured in this run. Every heavy measurement runs in a fresh subprocess
(:func:`esrt_lit.profiling.run_isolated`) under an address-space limit, so an out-of-memory failure
is a row, not a crash.

Modes: ``--quick`` (about a minute: x4 only, 128×128 and 320×180), the default (x2/x3/x4 at the
standard sizes 640×360, 427×240, 320×180 and at 128×128; the explicit path at 128×128; the options
rows; the 3840×2160-output tiled run), and ``--full`` (adds the explicit path at the standard sizes,
which needs ~13 GB at 320×180 x4, 21 GB per chunk at 427×240 x3 and 106 GB at 640×360 x2, and the
whole-image and streamed 960×540 x4 runs, the references for the tiled run's PSNR difference;
~45 min on 2 cores). ``--sections`` runs a subset (``inference,options,training,uhd``). On CUDA the
options add bf16 autocast and batch-8 throughput (images/s) at every scale's standard size.

Weights: random (seed 0); timings and memory do not depend on them. The tiled-vs-whole PSNR does:
``--ckpt`` adds the 960×540 rows for a trained checkpoint (any scale), whose PSNRs against the HR
photo are meaningful (the file is loaded before any row runs).

Exit status: 0 when every row was measured; 1 when an argument is refused (``--device cuda`` without
CUDA, an unreadable ``--ckpt``) or any row failed (the table is printed first; the error line names the
failed rows); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esrt_lit.errors import ConfigError
from esrt_lit.files import atomic_output
from esrt_lit.models.streaming import DEFAULT_ROWS
from esrt_lit.profiling import PeakMemory, count_macs, run_isolated
from esrt_lit.utils.tables import markdown_table
from esrt_lit.utils.task import report_error

__all__ = ["STANDARD_SIZES", "Row", "main", "run_bench"]

log = logging.getLogger(__name__)

#: LR sizes whose SR output is 1280×720, the size of the paper's Multi-Adds column.
STANDARD_SIZES = {2: (360, 640), 3: (240, 427), 4: (180, 320)}
SQUARE = (128, 128)
UHD_LR = (540, 960)  # x4 → 3840×2160
TRAIN_BATCH, TRAIN_PATCH = 16, 48
HEAVY_MACS = 500e9  # above this, a row is timed from a single pass
SECTIONS = ("inference", "options", "training", "uhd")
_SELF = "esrt_lit.bench"


@dataclass
class Row:
    """One line of the table (None = not applicable); ``note`` carries failures and extra figures,
    ``failed`` whether its measurement failed."""

    what: str
    path: str
    scale: int | None = None
    lr_hw: tuple[int, int] | None = None
    macs: int | None = None
    macs_paper: int | None = None
    seconds: float | None = None
    peak_bytes: int | None = None
    ratio_time: float | None = None
    ratio_peak: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    @property
    def gflops(self) -> float | None:
        if self.macs is None or not self.seconds:
            return None
        return 2 * self.macs / self.seconds / 1e9


# ----------------------------------------------------------------------------- workers (subprocesses)


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
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_bytes": mem.peak_bytes}


def amp_error_worker(scale: int, lr_hw: Sequence[int], amp: str, device: str = "cpu") -> dict[str, Any]:
    """Max |autocast − fp32| of the SR output and the PSNR between them (same random weights)."""
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

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(lr.device)

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
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
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


def _photo_pair(scale: int) -> tuple[np.ndarray, np.ndarray, str]:
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
    from esrt_lit.models.loading import load_network

    net = _build(4, device=device) if ckpt is None else load_network(ckpt).to(device)
    lr, _, _ = _photo_pair(net.scale)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        sr = upscale(net, lr, tile=tile, overlap=overlap, stream_rows=stream_rows)
        seconds = time.perf_counter() - start
    np.save(out_path, sr)
    return {"seconds": seconds, "peak_bytes": mem.peak_bytes}


# ----------------------------------------------------------------------------- driver


def _mem_limit() -> int | None:
    """Address-space limit for the subprocesses: what the machine has available, less 1.5 GiB."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return max(int(match.group(1)) * 1024 - (3 << 29), 1 << 30) if match else None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse else math.inf


class _Runner:
    def __init__(self, threads: int | None, timeout: float, ckpt: str | None, device: str) -> None:
        self.threads = threads
        self.timeout = timeout
        self.ckpt = ckpt
        self.device = device
        # CUDA reserves far more address space than it uses: no RLIMIT_AS there
        self.mem_limit = _mem_limit() if device == "cpu" else None

    def __call__(self, worker: str, **kwargs: Any) -> dict[str, Any]:
        if worker != "loader_worker":
            kwargs["device"] = self.device
        log.info("measuring %s %s", worker, kwargs)
        return run_isolated(
            f"{_SELF}:{worker}",
            kwargs,
            timeout=self.timeout,
            mem_limit_bytes=self.mem_limit,
            threads=self.threads,
        )


def _fill(row: Row, result: dict[str, Any]) -> Row:
    if result.get("ok"):
        row.seconds = result.get("seconds")
        row.peak_bytes = result.get("peak_bytes")
    else:
        row.failed = True
        row.note = (row.note + " " if row.note else "") + f"FAILED: {result.get('error')}"
    log.info("row: %s", format_table([row]).splitlines()[-1])  # kept in the log if a later row hangs
    return row


def _ratios(default: Row, explicit: Row) -> None:
    if default.seconds and explicit.seconds:
        default.ratio_time = explicit.seconds / default.seconds
    if default.peak_bytes and explicit.peak_bytes:
        default.ratio_peak = explicit.peak_bytes / default.peak_bytes


def run_bench(
    mode: str = "default",
    tile: int = 192,
    overlap: int = 16,
    threads: int | None = None,
    ckpt: str | None = None,
    timeout: float = 1800,
    device: str = "cpu",
    sections: Sequence[str] = SECTIONS,
) -> dict[str, Any]:
    """Measure ``sections`` for ``mode`` (``quick``, ``default`` or ``full``); returns rows and context.

    Raises:
        ValueError: an unknown mode or section.
    """
    from esrt_lit.models import ESRT

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or mode not in ("quick", "default", "full"):
        raise ValueError(f"mode={mode!r}, sections={unknown}; expected quick/default/full and {SECTIONS}")
    run = _Runner(threads, timeout, ckpt, device)
    rows: list[Row] = []
    if "inference" in sections:
        for s in (4,) if mode == "quick" else (2, 3, 4):
            net = ESRT(scale=s)
            n_params = sum(p.numel() for p in net.parameters())
            rows.append(Row("params", "-", s, note=f"{n_params:,} parameters"))
            for hw in (SQUARE, STANDARD_SIZES[s]):
                rows += _inference_rows(run, net, s, hw, mode, tile, overlap)
    if "options" in sections:
        rows += _options(run, mode)
    if "training" in sections:
        rows += _training(run, mode)
    if "uhd" in sections:
        rows += _uhd(run, mode, tile, overlap)
    return {
        "mode": mode,
        "rows": [dict(asdict(r), gflops=r.gflops) for r in rows],
        "context": {**_context(threads), "device": device},
        "table": format_table(rows),
    }


def _inference_rows(
    run: _Runner, net: torch.nn.Module, s: int, hw: tuple[int, int], mode: str, tile: int, overlap: int
) -> list[Row]:
    """default, explicit (at 128×128, and with --full at the standard size), streamed and tiled
    (standard size)."""
    macs = count_macs(net, hw)
    standard = hw == STANDARD_SIZES[s]
    base = {"scale": s, "lr_hw": hw, "macs": macs["exact"], "macs_paper": macs["paper"]}
    # the fastest of a few passes after a warm-up; one pass where a pass is long (x2 and x3 at the
    # standard sizes, the explicit path there) and, in --quick, everywhere but at 128×128
    one_pass = {"repeats": 1, "warmup": 0}
    few = {"repeats": 3 if not standard else 2}
    long = macs["exact"] > HEAVY_MACS or (mode == "quick" and standard)
    if run.device == "cuda":  # passes take milliseconds to a second: more of them, after two warm-ups
        one_pass = few = {"repeats": 5, "warmup": 2}
    default = _fill(
        Row("inference", "default", **base),
        run("infer_worker", scale=s, lr_hw=hw, **(one_pass if long else few)),
    )
    rows = [default]
    if not standard or mode == "full":
        explicit = _fill(
            Row("inference", "explicit", **base),
            run(
                "infer_worker",
                scale=s,
                lr_hw=hw,
                attention="explicit",
                channels_last=False,
                **(one_pass if standard or mode == "quick" else few),
            ),
        )
        rows.append(explicit)
        _ratios(default, explicit)
    if standard:
        streamed = Row("inference", f"streamed {DEFAULT_ROWS} rows", **base)
        streamed.note = "the whole-image output in row blocks"
        rows.append(
            _fill(
                streamed,
                run(
                    "infer_worker",
                    scale=s,
                    lr_hw=hw,
                    stream_rows=DEFAULT_ROWS,
                    **(one_pass if long else few),
                ),
            )
        )
        tiled = Row("inference", f"tiled {tile}/{overlap}", s, hw, macs=_tiled_macs(net, hw, tile, overlap))
        tiled.note = "MACs of the tiles"
        timing = one_pass if mode == "quick" else few
        rows.append(
            _fill(tiled, run("infer_worker", scale=s, lr_hw=hw, tile=tile, overlap=overlap, **timing))
        )
    return rows


def _tiled_macs(net: torch.nn.Module, hw: tuple[int, int], tile: int, overlap: int) -> int:
    from esrt_lit.inference import tile_starts

    ys, xs = tile_starts(hw[0], tile, overlap), tile_starts(hw[1], tile, overlap)
    per_tile = count_macs(net, (min(tile, hw[0]), min(tile, hw[1])))["exact"]
    return per_tile * len(ys) * len(xs)


def _options(run: _Runner, mode: str) -> list[Row]:
    """What each optimisation buys, each row differing from ``default`` in one switch: x4 at 320×180
    on CPU; on CUDA, bf16 autocast at every scale's standard size and batch-8 throughput."""
    if mode == "quick":
        return []
    cuda = run.device == "cuda"
    s, hw = 4, STANDARD_SIZES[4]
    rows: list[Row] = []
    if not cuda:  # channels-last is applied on CPU only
        rows.append(
            _fill(
                Row("inference", "default, NCHW", s, hw, note="channels-last off"),
                run("infer_worker", scale=s, lr_hw=hw, channels_last=False, repeats=2),
            )
        )
    for s in (2, 3, 4) if cuda else (4,):
        hw = STANDARD_SIZES[s]
        amp = Row("inference", "default + bf16 autocast", s, hw)
        err = run("amp_error_worker", scale=s, lr_hw=SQUARE, amp="bf16")
        if err.get("ok"):
            amp.note = f"vs fp32 at 128×128: max |Δ| {err['max_abs']:.2g}, PSNR {err['psnr']:.1f} dB"
        rows.append(_fill(amp, run("infer_worker", scale=s, lr_hw=hw, amp="bf16", repeats=2)))
        if cuda:
            for precision in (None, "bf16"):
                row = Row("inference, batch 8", f"default{' + bf16 autocast' if precision else ''}", s, hw)
                _fill(row, run("infer_worker", scale=s, lr_hw=hw, amp=precision, batch=8, repeats=2))
                if row.seconds:
                    row.note = f"{8 / row.seconds:.1f} images/s"
                rows.append(row)
    if mode == "full":
        s, hw = 4, STANDARD_SIZES[4]
        rows.append(
            _fill(
                Row("inference", "default + torch.compile", s, hw, note="after one compiling call"),
                run("infer_worker", scale=s, lr_hw=hw, compile=True, repeats=2),
            )
        )
    return rows


def _training(run: _Runner, mode: str) -> list[Row]:
    rows = _gpu_training(run, mode) if run.device == "cuda" else _cpu_training(run, mode)
    consumed = next((TRAIN_BATCH / r.seconds for r in rows if r.path == "default" and r.seconds), None)
    for workers in (0,) if mode == "quick" else (0, 2):
        res = run("loader_worker", n_batches=10 if mode == "quick" else 40, num_workers=workers)
        row = Row("data loader", f"num_workers={workers}", 4, (TRAIN_PATCH, TRAIN_PATCH))
        if res.get("ok"):
            rate = res["samples_per_s"]
            row.extra["samples_per_s"] = rate
            row.note = f"{rate:.0f} samples/s" + (
                f" vs {consumed:.1f} consumed by a default training step ({rate / consumed:.0f}x)"
                if consumed
                else ""
            )
        else:
            row.failed = True
            row.note = f"FAILED: {res.get('error')}"
        rows.append(row)
    return rows


def _cpu_training(run: _Runner, mode: str) -> list[Row]:
    steps = 1 if mode == "quick" else 3
    what = f"train step b{TRAIN_BATCH} p{TRAIN_PATCH}"
    results = {
        "default": run("train_worker", steps=steps),
        "explicit": run("train_worker", attention="explicit", channels_last=False, steps=steps),
    }
    if mode != "quick":
        results["default, NCHW"] = run("train_worker", channels_last=False, steps=steps)
        results["default + bf16 autocast"] = run("train_worker", amp="bf16", steps=steps)
    rows = {name: _fill(Row(what, name, 4), res) for name, res in results.items()}
    loss0 = {name: res["loss0"] for name, res in results.items() if res.get("ok")}
    for name, row in rows.items():
        if name in loss0 and "explicit" in loss0:
            row.note = (
                f"first loss {loss0[name]:.7f} (|Δ| vs explicit {abs(loss0[name] - loss0['explicit']):.1e})"
            )
    _ratios(rows["default"], rows["explicit"])
    return list(rows.values())


#: (scale, batch, LR patch) of the GPU training rows: the released recipe's batch and patch, and a
#: larger step that fills the GPU better.
GPU_TRAIN_CONFIGS = ((2, 16, 48), (4, 16, 48), (2, 64, 64), (4, 64, 64))


def _gpu_training(run: _Runner, mode: str) -> list[Row]:
    """Per configuration: the step eager (default and fused Adam), compiled, captured in CUDA graphs
    (the fast path's step) and the whole Lightning loop; ``--full`` adds explicit attention and bf16.

    The measurements share a compile cache that starts empty: a step row's first step is a first
    run's compilation, the loop row's (the same graphs) a second run's."""
    import tempfile

    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="esrt-bench-compile-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # inherited by the measuring processes
        try:
            return _gpu_training_rows(run, mode)
        finally:
            if previous is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


def _gpu_training_rows(run: _Runner, mode: str) -> list[Row]:
    configs = GPU_TRAIN_CONFIGS[:1] if mode == "quick" else GPU_TRAIN_CONFIGS
    steps = 20 if mode == "quick" else 50
    rows: list[Row] = []
    for scale, batch, patch in configs:
        what = f"train step b{batch} p{patch}"
        shape = {"scale": scale, "batch": batch, "patch": patch, "steps": steps}
        paths = {"default": run("train_worker", **shape)}
        if mode != "quick":
            paths["fused Adam"] = run("train_worker", fused=True, **shape)
            paths["compiled"] = run("train_worker", fused=True, compile="default", **shape)
        paths["captured (CUDA graphs)"] = run("train_worker", fused=True, compile="reduce-overhead", **shape)
        if mode == "full":
            paths["explicit"] = run("train_worker", attention="explicit", **shape)
            paths["default + bf16 autocast"] = run("train_worker", amp="bf16", **shape)
        eager = paths["default"].get("seconds")
        for name, res in paths.items():
            row = _fill(Row(what, name, scale, (patch, patch)), res)
            if res.get("ok"):
                row.note = f"{1 / res['seconds']:.1f} it/s, {batch / res['seconds']:.0f} samples/s"
                if eager and name != "default":
                    row.note += f", {eager / res['seconds']:.2f}x default"
                if res["first_step_s"] > 1:
                    row.note += f"; first step {res['first_step_s']:.1f} s"
                if name != "default" and paths["default"].get("ok"):
                    row.note += f"; first loss |Δ| {abs(res['loss0'] - paths['default']['loss0']):.1e}"
            rows.append(row)
        loop = run(
            "loop_worker", scale=scale, batch=batch, patch=patch, steps=400 if mode == "quick" else 600
        )
        row = _fill(
            Row(f"train loop b{batch} p{patch}", "python -m esrt_lit.train", scale, (patch, patch)), loop
        )
        if loop.get("ok"):
            row.note = (
                f"{loop['it_per_s']:.1f} it/s, {loop['samples_per_s']:.0f} samples/s from step "
                f"{loop['from_step']:.0f} ({loop['data']}; data, logging, checkpoints included); "
                f"first step {loop['first_step_s']:.1f} s (second run: compile cache warm)"
            )
        rows.append(row)
    return rows


def _uhd(run: _Runner, mode: str, tile: int, overlap: int) -> list[Row]:
    """A 960×540 photo upscaled tiled (and, with --full, whole-image and streamed): x4 with random
    weights (the 3840×2160 target) and, with --ckpt, the checkpoint's network, whose PSNRs against the
    HR photo are meaningful (a random network's are not; its tiled-vs-whole PSNR still is a measure)."""
    import tempfile

    from esrt_lit.models import ESRT
    from esrt_lit.models.loading import load_network

    if mode == "quick":
        return []
    nets: list[tuple[str | None, torch.nn.Module]] = [(None, ESRT(scale=4))]
    if run.ckpt is not None:
        trained = load_network(run.ckpt)
        nets = [(run.ckpt, trained)] if trained.scale == 4 else [*nets, (run.ckpt, trained)]
    paths = {"tiled": {"tile": tile}, "whole": {"tile": None}, "streamed": {"stream_rows": DEFAULT_ROWS}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="esrt_bench_") as tmp:
        for ckpt, net in nets:
            s = net.scale
            what = f"{UHD_LR[1] * s}×{UHD_LR[0] * s} out"
            weights = f"weights of {Path(ckpt).name}" if ckpt else "random weights"
            outs = {name: str(Path(tmp) / f"{name}_{s}_{ckpt is None}.npy") for name in paths}
            whole_macs = count_macs(net, UHD_LR)["exact"]
            made = {
                "tiled": Row(
                    what, f"tiled {tile}/{overlap}", s, UHD_LR, macs=_tiled_macs(net, UHD_LR, tile, overlap)
                )
            }
            if mode == "full":
                made["whole"] = Row(what, "default (whole image)", s, UHD_LR, macs=whole_macs)
                made["streamed"] = Row(what, f"streamed {DEFAULT_ROWS} rows", s, UHD_LR, macs=whole_macs)
            for name, row in made.items():
                _fill(
                    row,
                    run(
                        "uhd_worker",
                        overlap=overlap,
                        out_path=outs[name],
                        ckpt=ckpt,
                        **{"tile": None, **paths[name]},
                    ),
                )
                rows.append(row)
            if mode != "full":
                made["tiled"].note = f"{weights}; the PSNR against whole-image inference needs --full"
                continue
            if made["whole"].seconds is None:
                continue
            _, hr, name = _photo_pair(s)
            sr_w = np.load(outs["whole"])
            p_w = _psnr(sr_w, hr)
            for key in ("tiled", "streamed"):
                row = made[key]
                if row.seconds is None:
                    continue
                sr = np.load(outs[key])
                p, p_vs = _psnr(sr, hr), _psnr(sr, sr_w)
                row.extra.update(psnr=p, psnr_whole=p_w, psnr_vs_whole=p_vs)
                row.note = (
                    f"{name}, {weights}: RGB PSNR vs HR {p:.3f} / whole {p_w:.3f} dB "
                    f"(Δ {p - p_w:+.3f} dB); vs whole {p_vs:.1f} dB, "
                    f"{int(np.count_nonzero(sr != sr_w))} of {sr.size} values differ"
                )
                _ratios(row, made["whole"])
    return rows


def _context(threads: int | None) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "torch": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table."""
    header = [
        "measurement", "path", "x", "LR h×w", "exact GMAC", "paper GMAC", "time s", "peak MB", "GFLOP/s",
        "explicit/default time", "explicit/default peak", "note",
    ]  # fmt: skip
    cells = [
        [
            r.what,
            r.path,
            _fmt(r.scale, "d"),
            f"{r.lr_hw[0]}×{r.lr_hw[1]}" if r.lr_hw else "",
            _fmt(r.macs and r.macs / 1e9, ".1f"),
            _fmt(r.macs_paper and r.macs_paper / 1e9, ".1f"),
            _fmt(r.seconds, ".3f"),
            _fmt(r.peak_bytes and r.peak_bytes / 2**20, ".0f"),
            _fmt(r.gflops, ".0f"),
            _fmt(r.ratio_time, ".1f"),
            _fmt(r.ratio_peak, ".1f"),
            r.note,
        ]
        for r in rows
    ]
    return markdown_table(header, cells)


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def check_device(device: str) -> None:
    """Refuse ``--device cuda`` where CUDA is not available (every row would fail).

    Raises:
        ConfigError: naming the option, torch's version and why.
    """
    if device == "cuda" and not torch.cuda.is_available():
        why = (
            "built without CUDA"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda} build, no GPU found"
        )
        raise ConfigError(
            f"--device cuda: CUDA is not available on this machine (torch {torch.__version__}, {why})"
        )


def check_ckpt(ckpt: str | None) -> None:
    """Load ``--ckpt`` once before any row runs, so that a bad file is refused at once.

    Raises:
        FileNotFoundError, ValueError: the loader's error, naming the option and the file.
    """
    if ckpt is None:
        return
    from esrt_lit.models.loading import load_network

    try:
        load_network(ckpt)
    except (FileNotFoundError, ValueError) as err:  # the loader names the file; this names the option too
        raise type(err)(f"--ckpt {ckpt}: {str(err).removeprefix(f'{ckpt}: ')}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m esrt_lit.bench``); returns the exit status: 1 when an argument is
    refused or any row failed (the table is printed first, the failed rows named on the error line)."""
    parser = argparse.ArgumentParser(prog="python -m esrt_lit.bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="x4 only, about a minute")
    mode.add_argument(
        "--full", action="store_true", help="add the explicit path at the standard sizes and the 4K reference"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument(
        "--ckpt",
        default=None,
        help="trained checkpoint for the tiled-vs-whole PSNR rows (default: random x4)",
    )
    parser.add_argument("--tile", type=_count(1), default=192, help="LR tile side of the tiled rows")
    parser.add_argument("--overlap", type=_count(0), default=16, help="LR overlap of the tiled rows")
    parser.add_argument("--threads", type=_count(1), default=None, help="torch threads in each measurement")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--timeout", type=_seconds, default=1800, help="seconds allowed per measurement")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if any)",
    )
    args = parser.parse_args(argv)
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    if unknown := sorted(set(sections) - set(SECTIONS)):
        parser.error(f"--sections {','.join(unknown)}: unknown; choose from {','.join(SECTIONS)}")
    if args.overlap >= args.tile:
        parser.error(f"--overlap {args.overlap}: expected less than --tile {args.tile}")
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} already exists; choose another path")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    mode_name = "quick" if args.quick else "full" if args.full else "default"
    start = time.perf_counter()
    try:
        check_device(args.device)
        check_ckpt(args.ckpt)
        result = run_bench(
            mode_name, args.tile, args.overlap, args.threads, args.ckpt, args.timeout, args.device, sections
        )
    except Exception as err:  # every failure ends as one line
        return report_error(err)
    result["context"]["wall_s"] = time.perf_counter() - start
    ctx = result["context"]
    print(result["table"])  # noqa: T201
    print(  # noqa: T201
        f"\n{mode_name} run on {ctx['device']}, torch {ctx['torch']}, {ctx['threads']} threads, {ctx['cpu_count']} CPUs, "
        f"load average {ctx['loadavg']} at the end, {ctx['wall_s']:.0f} s"
    )
    if args.json is not None:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str))
    failed = [r for r in result["rows"] if r["failed"]]
    if failed:
        names = "; ".join(
            f"{r['what']}, {r['path']}" + (f", x{r['scale']}" if r["scale"] else "") for r in failed
        )
        return report_error(
            ChildProcessError(
                f"{len(failed)} of {len(result['rows'])} rows failed (the table says why): {names}"
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
