"""The bench's sections and the run of them: :func:`run_bench` measures ``inference`` (every scale's
paths at 128×128 and at the standard sizes), ``options`` (what each optimisation buys), ``training``
(:mod:`esrt_lit.bench.training`) and ``uhd`` (a 960×540 photo upscaled tiled, whole and streamed)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esrt_lit.bench.measure import Runner
from esrt_lit.bench.table import Row, fill, format_table, ratios
from esrt_lit.bench.training import training_rows
from esrt_lit.bench.workers import UHD_LR, photo_pair
from esrt_lit.data.io import image_to_tensor
from esrt_lit.metrics.functional import psnr
from esrt_lit.models.streaming import DEFAULT_ROWS
from esrt_lit.profiling import count_macs

__all__ = ["HEAVY_MACS", "SECTIONS", "SQUARE", "STANDARD_SIZES", "run_bench"]

#: LR sizes whose SR output is 1280×720, the size of the paper's Multi-Adds column.
STANDARD_SIZES = {2: (360, 640), 3: (240, 427), 4: (180, 320)}
SQUARE = (128, 128)
HEAVY_MACS = 500e9  # above this, a row is timed from a single pass
SECTIONS = ("inference", "options", "training", "uhd")


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
    run = Runner(threads, timeout, ckpt, device)
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
        rows += training_rows(run, mode)
    if "uhd" in sections:
        rows += _uhd(run, mode, tile, overlap)
    return {
        "mode": mode,
        "rows": [dict(asdict(r), gflops=r.gflops) for r in rows],
        "context": {**_context(threads), "device": device},
        "table": format_table(rows),
    }


def _inference_rows(
    run: Runner, net: torch.nn.Module, s: int, hw: tuple[int, int], mode: str, tile: int, overlap: int
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
    default = fill(
        Row("inference", "default", **base),
        run("infer_worker", scale=s, lr_hw=hw, **(one_pass if long else few)),
    )
    rows = [default]
    if not standard or mode == "full":
        explicit = fill(
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
        ratios(default, explicit)
    if standard:
        streamed = Row("inference", f"streamed {DEFAULT_ROWS} rows", **base)
        streamed.note = "the whole-image output in row blocks"
        rows.append(
            fill(
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
        rows.append(fill(tiled, run("infer_worker", scale=s, lr_hw=hw, tile=tile, overlap=overlap, **timing)))
    return rows


def _tiled_macs(net: torch.nn.Module, hw: tuple[int, int], tile: int, overlap: int) -> int:
    from esrt_lit.inference import tile_starts

    ys, xs = tile_starts(hw[0], tile, overlap), tile_starts(hw[1], tile, overlap)
    per_tile = count_macs(net, (min(tile, hw[0]), min(tile, hw[1])))["exact"]
    return per_tile * len(ys) * len(xs)


def _options(run: Runner, mode: str) -> list[Row]:
    """What each optimisation buys, each row differing from ``default`` in one switch: x4 at 320×180
    on CPU; on CUDA, bf16 autocast at every scale's standard size and batch-8 throughput."""
    if mode == "quick":
        return []
    cuda = run.device == "cuda"
    s, hw = 4, STANDARD_SIZES[4]
    rows: list[Row] = []
    if not cuda:  # channels-last is applied on CPU only
        rows.append(
            fill(
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
        rows.append(fill(amp, run("infer_worker", scale=s, lr_hw=hw, amp="bf16", repeats=2)))
        if cuda:
            for precision in (None, "bf16"):
                row = Row("inference, batch 8", f"default{' + bf16 autocast' if precision else ''}", s, hw)
                fill(row, run("infer_worker", scale=s, lr_hw=hw, amp=precision, batch=8, repeats=2))
                if row.seconds:
                    row.note = f"{8 / row.seconds:.1f} images/s"
                rows.append(row)
    if mode == "full":
        s, hw = 4, STANDARD_SIZES[4]
        rows.append(
            fill(
                Row("inference", "default + torch.compile", s, hw, note="after one compiling call"),
                run("infer_worker", scale=s, lr_hw=hw, compile=True, repeats=2),
            )
        )
    return rows


def _uhd(run: Runner, mode: str, tile: int, overlap: int) -> list[Row]:
    """A 960×540 photo upscaled tiled (and, with --full, whole-image and streamed): x4 with random
    weights (the 3840×2160 target) and, with --ckpt, the checkpoint's network, whose PSNRs against the
    HR photo are meaningful (a random network's are not; its tiled-vs-whole PSNR still is a measure)."""
    import tempfile

    from esrt_lit.models import ESRT
    from esrt_lit.models.checkpoint import load_network

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
                fill(
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
            _, hr, name = photo_pair(s)
            sr_w = np.load(outs["whole"])
            p_w = _rgb_psnr(sr_w, hr)
            for key in ("tiled", "streamed"):
                row = made[key]
                if row.seconds is None:
                    continue
                sr = np.load(outs[key])
                p, p_vs = _rgb_psnr(sr, hr), _rgb_psnr(sr, sr_w)
                row.extra.update(psnr=p, psnr_whole=p_w, psnr_vs_whole=p_vs)
                row.note = (
                    f"{name}, {weights}: RGB PSNR vs HR {p:.3f} / whole {p_w:.3f} dB "
                    f"(Δ {p - p_w:+.3f} dB); vs whole {p_vs:.1f} dB, "
                    f"{int(np.count_nonzero(sr != sr_w))} of {sr.size} values differ"
                )
                ratios(row, made["whole"])
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


def _rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two ``uint8`` ``H×W×3`` images on R, G, B (peak 255, no border cropped), by the project's
    metric (:func:`esrt_lit.metrics.functional.psnr`); ``inf`` where they are identical."""
    sr, hr = (image_to_tensor(x, scale_to_unit=False, batch=True, packed=True) for x in (a, b))
    return float(psnr(sr, hr, crop_border=0, test_y_channel=False)[0])
