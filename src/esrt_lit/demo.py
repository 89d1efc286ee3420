"""``make demo``: the whole pipeline on the default data, and the weights shipped with the package.

Runs the command-line tools one after the other, as a user would:

1. ``python -m esrt_lit.train`` (the default: ESRT x4 on the embedded images, a few CPU minutes; extra
   arguments of this command are passed on, e.g. ``python -m esrt_lit.demo trainer.max_epochs=1``);
2. ``python -m esrt_lit.eval`` of its best checkpoint, of the shipped x4 weights (``pretrained:x4``)
   and of bicubic, on the benchmarks found (the embedded validation images when there are none);
3. ``python -m esrt_lit.upscale`` of a validation image's x4 LR with the demo's checkpoint and with the
   shipped weights (no checkpoint given),

then prints the three scores side by side and writes ``comparison.png``: three 128-pixel crops of that
image (the most detailed ones), each as ``bicubic | ESRT, shipped x4 weights | ESRT, this demo's short
run | ground truth``, every column labelled with its whole-image PSNR on Y. A hundred CPU steps do not
make ESRT beat bicubic, and the label says so; the shipped weights do. Everything goes to
``demo_out/<time>/``.

A failing step (a bad argument of the training run, a full disk, an unwritable ``demo_out``) ends the
demo at once with one line, ``error: <the step>: <its error>``, and exit status 1.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from esrt_lit.cli import run_command
from esrt_lit.data.imresize import imresize, round_uint8
from esrt_lit.data.io import image_to_tensor, modcrop, read_image, write_image
from esrt_lit.data.sources import SkimageSource
from esrt_lit.files import atomic_output
from esrt_lit.metrics.collection import format_scores
from esrt_lit.metrics.functional import psnr
from esrt_lit.metrics.tables import markdown_table
from esrt_lit.paths import PROJECT_ROOT

__all__ = ["comparison_panel", "detailed_crops", "font", "main", "run_demo"]

log = logging.getLogger("esrt_lit.demo")

SCALE = 4
SHIPPED = f"pretrained:x{SCALE}"
IMAGE = "chelsea"  # a validation image of the default data (never trained on)
CROP = 128  # HR pixels of each crop's side, shown twice as large
CROPS = 3  # crops of the image, one row each
ZOOM = 2


def _run(module: str, *args: str) -> None:
    """``python -m module args``, its output shown as it comes, except its ``error:`` line, which
    becomes this step's error.

    Raises:
        ChildProcessError: the command failed; names it and its error line (or its exit status).
    """
    command = [sys.executable, "-m", module, *args]
    log.info("$ %s", " ".join(command[1:]))
    error = None
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stderr=subprocess.PIPE) as proc:
        # newline="": lines end at \n or \r (progress bars) and are passed on as they came
        for line in io.TextIOWrapper(proc.stderr, encoding="utf-8", errors="replace", newline=""):
            if line.startswith("error: "):
                error = line.removeprefix("error: ").strip()
            else:
                sys.stderr.write(line)
                sys.stderr.flush()
    if proc.returncode != 0:
        raise ChildProcessError(f"{module}: {error or f'exited with status {proc.returncode}'}")


def _psnr(image: np.ndarray, hr: np.ndarray, scale: int) -> float:
    def tensor(x: np.ndarray) -> torch.Tensor:
        return image_to_tensor(x, scale_to_unit=False, batch=True, packed=True)

    return psnr(tensor(image), tensor(hr), scale).item()


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels: PIL's default bitmap font drops spaces."""
    from matplotlib import font_manager

    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(font_manager.findfont(props, fallback_to_default=True), size)


def detailed_crops(hr: np.ndarray, crop: int = CROP, count: int = CROPS) -> list[tuple[int, int]]:
    """``(top, left)`` of ``count`` non-overlapping ``crop``-pixel squares of ``hr`` with the most detail
    (mean absolute gradient), best first; fewer when the image has no room for them (at least one)."""
    grey = hr.astype(np.float64).mean(axis=2) if hr.ndim == 3 else hr.astype(np.float64)
    detail = np.zeros_like(grey)
    detail[:, 1:] += np.abs(np.diff(grey, axis=1))
    detail[1:, :] += np.abs(np.diff(grey, axis=0))
    h, w = grey.shape
    side = min(crop, h, w)
    step = max(1, side // 4)
    candidates = sorted(
        ((detail[t : t + side, x : x + side].mean(), t, x) for t in range(0, h - side + 1, step)
         for x in range(0, w - side + 1, step)),
        reverse=True,
    )  # fmt: skip
    chosen: list[tuple[int, int]] = []
    for _, top, left in candidates:
        if all(abs(top - t) >= side or abs(left - x) >= side for t, x in chosen):
            chosen.append((top, left))
        if len(chosen) == count:
            break
    return chosen


def comparison_panel(
    bicubic: np.ndarray,
    outputs: Sequence[tuple[str, np.ndarray]],
    hr: np.ndarray,
    scale: int,
    crop: int = CROP,
    crops: int = CROPS,
    zoom: int = ZOOM,
    title: str = "",
) -> Image.Image:
    """A grid of ``crops`` rows (:func:`detailed_crops`) by ``bicubic | outputs... | ground truth``
    columns, each crop zoomed ``zoom`` times; every column says what it is and its **whole-image** PSNR
    on Y (the protocol's, ``scale`` pixels of border cropped), the outputs also their gain over bicubic.

    Args:
        bicubic, hr: ``uint8`` HWC images of one size (3 channels).
        outputs: ``(label, image)`` of each network's output, in the order shown.
        scale: the SR factor.
        crop: side of each crop in HR pixels.
        crops: how many crops (rows).
        zoom: the crops' magnification (nearest neighbour: pixels stay pixels).
        title: the first line of the footer (e.g. the image's name).
    """
    base = _psnr(bicubic, hr, scale)
    columns = [("bicubic", bicubic, f"whole-image PSNR on Y: {base:.2f} dB", "")]
    for label, image in outputs:
        value = _psnr(image, hr, scale)
        columns.append(
            (label, image, f"whole-image PSNR on Y: {value:.2f} dB", f"{value - base:+.2f} dB over bicubic")
        )
    columns.append(("ground truth (HR)", hr, "the reference of the PSNRs", ""))
    boxes = detailed_crops(hr, crop, crops)
    side = min(crop, *hr.shape[:2]) * zoom
    gap, margin = 6, 8
    head, body = font(17, bold=True), font(14)
    line = body.size + 6
    header = head.size + 3 * line + margin
    footer = 2 * line + margin
    width = len(columns) * side + (len(columns) - 1) * gap
    canvas = Image.new("RGB", (width, header + len(boxes) * (side + gap) + footer), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (label, image, score, gain) in enumerate(columns):
        x = c * (side + gap)
        size = head.size  # a long label gets a smaller font rather than running into the next column
        while size > 10 and draw.textlength(label, font=font(size, bold=True)) > side - 8:
            size -= 1
        draw.text((x + 4, margin // 2), label, fill="black", font=font(size, bold=True))
        draw.text((x + 4, margin // 2 + head.size + 6), score, fill="black", font=body)
        if gain:
            colour = (0, 110, 0) if gain.startswith("+") else (170, 0, 0)
            draw.text((x + 4, margin // 2 + head.size + 6 + line), gain, fill=colour, font=body)
        for r, (top, left) in enumerate(boxes):
            tile = Image.fromarray(image[top : top + side // zoom, left : left + side // zoom])
            canvas.paste(tile.resize((side, side), Image.NEAREST), (x, header + r * (side + gap)))
    notes = [
        title,
        f"{len(boxes)} crops of {side // zoom}x{side // zoom} HR pixels (x{scale}), shown {zoom}x larger; the PSNRs "
        "are over the whole image, not the crops",
    ]
    y = header + len(boxes) * (side + gap)
    for note in filter(None, notes):
        draw.text((4, y), note, fill=(60, 60, 60), font=body)
        y += line
    return canvas


def _scores_table(results: dict[str, Path]) -> str:
    """``model × benchmark`` PSNR/SSIM cells from the eval runs' ``results.json``."""
    loaded = {name: json.loads(path.read_text()) for name, path in results.items()}
    benches = list(next(iter(loaded.values()))["benchmarks"])
    rows = []
    for name, result in loaded.items():
        row = result["results"][f"x{SCALE}"]
        rows.append([name, *(format_scores(row[b]) for b in benches)])
    return markdown_table([f"x{SCALE}, PSNR dB / SSIM", *benches], rows)


def main(argv: list[str] | None = None, out_root: str | Path = "demo_out") -> int:
    """CLI entry point (``python -m esrt_lit.demo [training overrides]``); returns the exit status."""

    def work() -> None:
        run_demo(list(sys.argv[1:] if argv is None else argv), out_root)

    return run_command(work)


def run_demo(train_args: list[str], out_root: str | Path = "demo_out") -> Path:
    """Train (with ``train_args``), evaluate, upscale under ``out_root/<time>`` (relative to the project
    root); returns the comparison PNG's path.

    Raises:
        ChildProcessError: a command of the demo failed (naming it and its error).
        OSError: the output folder cannot be made.
    """
    out = (PROJECT_ROOT / out_root / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    try:
        out.mkdir(parents=True, exist_ok=False)
    except OSError as err:
        raise type(err)(f"{out}: cannot make the demo's output folder ({err.strerror or err})") from None

    _run("esrt_lit.train", f"hydra.run.dir={out / 'train'}", *train_args)
    best = out / "train" / "checkpoints" / "best.ckpt"
    evals = {
        "bicubic (published procedure)": ["model=bicubic", f"scales=[{SCALE}]"],
        "ESRT, this demo's run": [f"ckpt_path={best}"],
        "ESRT, shipped weights": [f"ckpt_path={SHIPPED}"],
    }
    for i, args in enumerate(evals.values()):
        _run("esrt_lit.eval", *args, f"hydra.run.dir={out / f'eval_{i}'}")

    (record,) = [r for r in SkimageSource("val").records(SCALE) if r.name == IMAGE]
    hr = modcrop(read_image(record.hr), SCALE)
    lr = imresize(hr, 1 / SCALE)
    write_image(out / "lr" / f"{IMAGE}.png", lr)
    for name, args in (("upscaled", [f"ckpt_path={best}"]), ("upscaled_shipped", [f"scale={SCALE}"])):
        _run("esrt_lit.upscale", f"input={out / 'lr'}", f"output={out / name}", *args,
             f"hydra.run.dir={out / ('upscale_' + name)}")  # fmt: skip
    sr, shipped = (read_image(out / name / f"{IMAGE}.png") for name in ("upscaled", "upscaled_shipped"))
    bicubic = round_uint8(imresize(lr.astype(np.float64), SCALE))
    steps = json.loads((out / "train" / "metrics.json").read_text()).get("global_step")
    outputs = [
        (f"ESRT, shipped x{SCALE} weights", shipped),
        (f"ESRT, this demo's {steps}-step run", sr),
    ]
    title = f"{IMAGE} (a validation image, never trained on), x{SCALE}; the demo's run is far too short to train ESRT"
    path = out / "comparison.png"
    with atomic_output(path) as tmp:
        comparison_panel(bicubic, outputs, hr, SCALE, title=title).save(tmp)
    table = _scores_table({name: out / f"eval_{i}" / "results.json" for i, name in enumerate(evals)})
    print(  # noqa: T201 - the demo's product
        f"\n{table}\n(a hundred CPU steps do not make ESRT beat bicubic; the weights shipped with the package,"
        f" trained by esrt-lit for a few CPU hours, do: docs/training.md, 'Pretrained weights')\n\n"
        f"training run: {out / 'train'} (metrics.json, checkpoints, logs)\n"
        f"upscaled: {out / 'upscaled' / f'{IMAGE}.png'} and {out / 'upscaled_shipped' / f'{IMAGE}.png'}\n"
        f"comparison (bicubic | ESRT, shipped x{SCALE} | ESRT, this demo's run | ground truth): {path}"
    )
    return path


if __name__ == "__main__":
    raise SystemExit(main())
