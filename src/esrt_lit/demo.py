"""``make demo``: the default training, then evaluation and upscaling of its best checkpoint.

Runs the three command-line tools one after the other, as a user would:

1. ``python -m esrt_lit.train`` (the default: ESRT x4 on the embedded images, a few CPU minutes; extra
   arguments of this command are passed on, e.g. ``python -m esrt_lit.demo trainer.max_epochs=1``);
2. ``python -m esrt_lit.eval ckpt_path=<best.ckpt>`` on the benchmarks found (the embedded validation
   images when there are none);
3. ``python -m esrt_lit.upscale`` of a validation image's x4 LR,

then writes ``comparison.png``, a crop of that image as ``bicubic | ESRT | ground truth`` with each
panel's PSNR, and prints its path. Everything goes to ``demo_out/<time>/``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import modcrop, read_image, write_image
from esrt_lit.data.sources import SkimageSource
from esrt_lit.metrics.functional import psnr
from esrt_lit.paths import PROJECT_ROOT

__all__ = ["comparison_panel", "main"]

log = logging.getLogger("esrt_lit.demo")

SCALE = 4
IMAGE = "chelsea"  # a validation image of the default data (never trained on)
CROP = 96  # HR pixels of each panel, shown twice as large


def _run(module: str, *args: str) -> None:
    command = [sys.executable, "-m", module, *args]
    log.info("$ %s", " ".join(command[1:]))
    subprocess.run(command, cwd=PROJECT_ROOT, check=True)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None]


def comparison_panel(
    bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int, crop: int = CROP
) -> Image.Image:
    """``bicubic | network | ground truth``: centred crops (2x zoom) labelled with whole-image PSNR.

    Args:
        bicubic, sr, hr: ``uint8`` HWC images of one size (3 channels).
        scale: the SR factor (border cropped for the PSNR, as in the protocol).
        crop: side of the crop in HR pixels.
    """
    h, w = hr.shape[:2]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    labels = [
        f"bicubic {psnr(_to_tensor(bicubic), _to_tensor(hr), scale).item():.2f} dB",
        f"ESRT {psnr(_to_tensor(sr), _to_tensor(hr), scale).item():.2f} dB",
        "ground truth",
    ]
    zoom, band, gap = 2, 18, 4
    side = crop * zoom
    canvas = Image.new("RGB", (3 * side + 2 * gap, side + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(zip((bicubic, sr, hr), labels, strict=True)):
        tile = Image.fromarray(image[top : top + crop, left : left + crop]).resize(
            (side, side), Image.NEAREST
        )
        canvas.paste(tile, (i * (side + gap), band))
        draw.text((i * (side + gap) + 4, 3), label, fill="black")
    return canvas


def main(argv: list[str] | None = None, out_root: str | Path = "demo_out") -> Path:
    """Train, evaluate, upscale; returns the comparison PNG's path."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_args = list(sys.argv[1:] if argv is None else argv)
    out = (PROJECT_ROOT / out_root / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=False)

    _run("esrt_lit.train", f"hydra.run.dir={out / 'train'}", *train_args)
    best = out / "train" / "checkpoints" / "best.ckpt"
    _run("esrt_lit.eval", f"ckpt_path={best}", f"hydra.run.dir={out / 'eval'}")

    (record,) = [r for r in SkimageSource("val").records(SCALE) if r.name == IMAGE]
    hr = modcrop(read_image(record.hr), SCALE)
    lr = imresize(hr, 1 / SCALE)
    write_image(out / "lr" / f"{IMAGE}.png", lr)
    _run("esrt_lit.upscale", f"input={out / 'lr'}", f"output={out / 'upscaled'}", f"ckpt_path={best}",
         f"hydra.run.dir={out / 'upscale'}")  # fmt: skip
    sr = read_image(out / "upscaled" / f"{IMAGE}.png")
    bicubic = np.clip(np.floor(imresize(lr.astype(np.float64), SCALE) + 0.5), 0, 255).astype(np.uint8)
    path = out / "comparison.png"
    comparison_panel(bicubic, sr, hr, SCALE).save(path)
    print(  # noqa: T201 - the demo's product
        f"\ntraining run: {out / 'train'} (metrics.json, checkpoints, logs)\n"
        f"benchmark table: {out / 'eval' / 'results.md'}\n"
        f"upscaled: {out / 'upscaled' / f'{IMAGE}.png'}\n"
        f"comparison (bicubic | ESRT | ground truth): {path}"
    )
    return path


if __name__ == "__main__":
    main()
