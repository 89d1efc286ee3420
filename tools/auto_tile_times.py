"""Time whole-image, streamed and tiled ESRT inference by LR size: the data behind ``tile=auto``.

Usage::

    .venv/bin/python tools/auto_tile_times.py [--scales 2 4] [--sizes 128 192 256 384] [--tiles 64 96 128 192]

For each scale (the shipped weights, ``pretrained:x<scale>``; random weights where none ship) and LR
side, a square crop of a Sun80 photograph (``shared/data/train/Sun80``; scikit-image's astronaut
without it) is upscaled whole, with
``stream_rows=32`` and in tiles of each side (overlap 16). The LR is the MATLAB-bicubic downscale of
an HR crop where the photograph holds one (then the PSNR of each output to that HR is reported), else
an LR-sized crop of the photograph. Times are the fastest of ``--repeats`` passes after a warm-up
pass (one pass above 10 s), as CPU seconds of the process (with ``--threads 1`` the single-core time,
little disturbed by other jobs on a shared machine) and wall seconds. Prints a Markdown table
(``docs/performance.md``, "Choosing tile=auto"). ``--quality Set5 Set14`` instead scores each
scale's network on those benchmarks (``shared/data/benchmark``; the published tables' protocol)
whole and in tiles of each ``--tiles`` side.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import read_image
from esrt_lit.inference import upscale
from esrt_lit.models import ESRT
from esrt_lit.models.loading import load_network
from esrt_lit.models.pretrained import PRETRAINED
from esrt_lit.paths import shared_dir


def _photo() -> tuple[np.ndarray, str]:
    shared = shared_dir()
    path = shared / "data" / "train" / "Sun80" / "abbey_sun_asztnlqhlrvirneh.jpg" if shared else None
    if path is not None and path.is_file():
        return read_image(path), f"Sun80/{path.name}"
    from skimage import data

    return data.astronaut(), "skimage astronaut"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, float, np.ndarray]:
    """``(CPU seconds, wall seconds, output)`` of the fastest pass."""
    times = []
    for i in range(repeats + 1):
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn()
        times.append((time.process_time() - cpu, time.perf_counter() - wall))
        if i == 0 and times[0][0] > 10:
            return (*times[0], out)
    return (*min(times[1:]), out)


def _quality(scales: list[int], tiles: list[int], names: list[str]) -> None:
    """Mean PSNR (Y, the published tables' protocol) whole and in tiles, per benchmark."""
    from esrt_lit.evaluation import evaluate_folder
    from esrt_lit.paths import benchmark_root

    root = benchmark_root()
    if root is None:
        raise SystemExit("--quality: shared/data/benchmark not found")
    print("| x | set | whole dB | " + " | ".join(f"tiles {t}/16 dB (Δ)" for t in tiles) + " |")  # noqa: T201
    print("|---|---|---|" + "---|" * len(tiles))  # noqa: T201
    for scale in scales:
        net = load_network(f"pretrained:x{scale}")
        for name in names:
            whole = evaluate_folder(root / name, scale, net)["psnr"]
            cells = []
            for t in tiles:
                tiled = evaluate_folder(root / name, scale, net, tile=t)["psnr"]
                cells.append(f"{tiled:.3f} ({tiled - whole:+.3f})")
            print(f"| {scale} | {name} | {whole:.3f} | " + " | ".join(cells) + " |", flush=True)  # noqa: T201


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256, 384])
    parser.add_argument("--tiles", type=int, nargs="+", default=[64, 96, 128, 192])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--quality", nargs="+", metavar="SET", help="score benchmarks whole and tiled instead"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quality:
        _quality(args.scales, args.tiles, args.quality)
        return
    photo, name = _photo()
    print(  # noqa: T201
        f"{name} {photo.shape[1]}x{photo.shape[0]}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print("| x | LR | mode | CPU s | wall s | whole / mode | PSNR to whole dB | PSNR to HR dB (Δ) |")  # noqa: T201
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    for scale in args.scales:
        trained = f"x{scale}" in PRETRAINED
        if trained:
            net = load_network(f"pretrained:x{scale}")
        else:  # no shipped weights (x3): random ones take the same time; PSNR to HR would mean nothing
            torch.manual_seed(0)
            net = ESRT(scale=scale).eval()
        for size in args.sizes:
            hr_side = size * scale
            if trained and hr_side <= min(photo.shape[:2]):
                hr = photo[:hr_side, :hr_side]
                lr = imresize(hr, 1 / scale)
            else:
                hr, lr = None, np.ascontiguousarray(photo[:size, :size])
            modes: list[tuple[str, dict]] = [("whole", {}), ("streamed 32 rows", {"stream_rows": 32})]
            modes += [(f"tiles {t}/16", {"tile": t, "overlap": 16}) for t in args.tiles if t < size]
            whole_time = whole = None
            for label, how in modes:
                run = functools.partial(upscale, net, lr, scale=scale, **how)
                seconds, wall, out = _timed(run, args.repeats)
                if whole is None:
                    whole_time, whole = seconds, out
                to_hr = ""
                if hr is not None:
                    p, p_whole = _psnr(out, hr), _psnr(whole, hr)
                    to_hr = f"{p:.3f} ({p - p_whole:+.3f})"
                print(  # noqa: T201
                    f"| {scale} | {size}² | {label} | {seconds:.2f} | {wall:.2f} | {whole_time / seconds:.2f}x | "
                    f"{_psnr(out, whole):.1f} | {to_hr} |",
                    flush=True,
                )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
