"""``make demo``: the whole pipeline on the default data, and the weights shipped with the package.

Runs the command-line tools one after the other, as a user would:

1. ``python -m esrt_lit.train`` (the default: ESRT x4 on the embedded images, a few CPU minutes; extra
   arguments of this command are passed on, e.g. ``python -m esrt_lit.demo trainer.max_epochs=1``);
2. ``python -m esrt_lit.eval`` of its best checkpoint, of the shipped x4 weights (``pretrained:x4``)
   and of bicubic, on the benchmarks found (the embedded validation images when there are none);
3. ``python -m esrt_lit.upscale`` of a validation image's x4 LR with the demo's checkpoint and with the
   shipped weights (no checkpoint given),

then prints the three scores side by side and writes ``comparison.png``, a crop of that image as
``bicubic | ESRT, this demo | ESRT, shipped x4 | ground truth`` with each panel's PSNR. A hundred CPU
steps do not make ESRT beat bicubic; the shipped weights do. Everything goes to ``demo_out/<time>/``.

A failing step (a bad argument of the training run, a full disk, an unwritable ``demo_out``) ends the
demo at once with one line, ``error: <the step>: <its error>``, and exit status 1.
"""

from __future__ import annotations

import io
import json
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
from esrt_lit.files import atomic_output
from esrt_lit.metrics.functional import psnr
from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.utils.tables import markdown_table, score_cell
from esrt_lit.utils.task import report_error

__all__ = ["comparison_panel", "main", "run_demo"]

log = logging.getLogger("esrt_lit.demo")

SCALE = 4
SHIPPED = f"pretrained:x{SCALE}"
IMAGE = "chelsea"  # a validation image of the default data (never trained on)
CROP = 96  # HR pixels of each panel, shown twice as large


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
        return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]

    return psnr(tensor(image), tensor(hr), scale).item()


def comparison_panel(
    bicubic: np.ndarray,
    sr: np.ndarray,
    hr: np.ndarray,
    scale: int,
    crop: int = CROP,
    shipped: np.ndarray | None = None,
) -> Image.Image:
    """``bicubic | network | [shipped weights |] ground truth``: centred crops (2x zoom) labelled with
    whole-image PSNR (the shipped panel also with its gain over bicubic).

    Args:
        bicubic, sr, hr: ``uint8`` HWC images of one size (3 channels).
        scale: the SR factor (border cropped for the PSNR, as in the protocol).
        crop: side of the crop in HR pixels.
        shipped: the output of the shipped weights, a fourth panel.
    """
    h, w = hr.shape[:2]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    base = _psnr(bicubic, hr, scale)
    name = "ESRT" if shipped is None else "ESRT, this demo"
    panels = [(bicubic, f"bicubic {base:.2f} dB"), (sr, f"{name} {_psnr(sr, hr, scale):.2f} dB")]
    if shipped is not None:
        gain = _psnr(shipped, hr, scale)
        panels.append((shipped, f"ESRT, shipped x{scale} {gain:.2f} dB ({gain - base:+.2f})"))
    panels.append((hr, "ground truth"))
    zoom, band, gap = 2, 18, 4
    side = crop * zoom
    canvas = Image.new("RGB", (len(panels) * side + (len(panels) - 1) * gap, side + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(panels):
        tile = Image.fromarray(image[top : top + crop, left : left + crop]).resize(
            (side, side), Image.NEAREST
        )
        canvas.paste(tile, (i * (side + gap), band))
        draw.text((i * (side + gap) + 4, 3), label, fill="black")
    return canvas


def _scores_table(results: dict[str, Path]) -> str:
    """``model × benchmark`` PSNR/SSIM cells from the eval runs' ``results.json``."""
    loaded = {name: json.loads(path.read_text()) for name, path in results.items()}
    benches = list(next(iter(loaded.values()))["benchmarks"])
    rows = []
    for name, result in loaded.items():
        row = result["results"][f"x{SCALE}"]
        rows.append([name, *(score_cell(row[b]["psnr"], row[b]["ssim"]) for b in benches)])
    return markdown_table([f"x{SCALE}, PSNR dB / SSIM", *benches], rows)


def main(argv: list[str] | None = None, out_root: str | Path = "demo_out") -> int:
    """CLI entry point (``python -m esrt_lit.demo [training overrides]``); returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_demo(list(sys.argv[1:] if argv is None else argv), out_root)
    except Exception as err:  # every failure ends as one line
        return report_error(err)
    return 0


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
    bicubic = np.clip(np.floor(imresize(lr.astype(np.float64), SCALE) + 0.5), 0, 255).astype(np.uint8)
    path = out / "comparison.png"
    with atomic_output(path) as tmp:
        comparison_panel(bicubic, sr, hr, SCALE, shipped=shipped).save(tmp)
    table = _scores_table({name: out / f"eval_{i}" / "results.json" for i, name in enumerate(evals)})
    print(  # noqa: T201 - the demo's product
        f"\n{table}\n(a hundred CPU steps do not make ESRT beat bicubic; the weights shipped with the package,"
        f" trained by esrt-lit for a few CPU hours, do: docs/training.md, 'Pretrained weights')\n\n"
        f"training run: {out / 'train'} (metrics.json, checkpoints, logs)\n"
        f"upscaled: {out / 'upscaled' / f'{IMAGE}.png'} and {out / 'upscaled_shipped' / f'{IMAGE}.png'}\n"
        f"comparison (bicubic | ESRT, this demo | ESRT, shipped x{SCALE} | ground truth): {path}"
    )
    return path


if __name__ == "__main__":
    raise SystemExit(main())
