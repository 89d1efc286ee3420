"""The evaluation protocol behind the published SR tables (ESRT, Lu et al., arXiv 2108.11084, Sec. 4.1).

Every number is a mean over images of a per-image PSNR/SSIM on the MATLAB Y channel, ``scale`` pixels
cropped from each border (:mod:`esrt_lit.metrics`). Two ways of making the super-resolved image exist:

* **Models (RGB pipeline).** The HR image is cropped to a multiple of the scale (``modcrop``); the LR
  is MATLAB ``imresize(HR, 1/s, 'bicubic')`` on ``uint8`` (or the LR stored in a benchmark pack); a grey
  LR is repeated to three channels; the network's output is clamped to [0, 1] and rounded to ``uint8``;
  both images go to Y with MATLAB's ``rgb2ycbcr``.
* **The bicubic baseline (``model="bicubic"``, Y-first).** The published bicubic rows follow the older
  SRCNN/VDSR procedure: HR to Y with ``rgb2ycbcr`` on ``uint8`` (so Y is an integer), ``imresize`` Y down
  and back up in float (the LR is not rounded), round, compare. It reproduces the tables to the third
  decimal; the RGB pipeline lands 0.001-0.02 dB lower (pass ``Bicubic(scale)`` as a model to get it).

A grey HR image (Set14 ``bridge``) is scored on its own channel, its grey value being its Y.

:func:`iter_sr_pairs` is the one place where the pipeline lives; :func:`score_pair` scores what it
yields; :func:`evaluate_folder` and :func:`run_benchmarks` build on both, and the Hydra CLI
``python -m esrt_lit.eval`` on :func:`run_benchmarks`.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import IMAGE_SUFFIXES, list_images, modcrop, read_image
from esrt_lit.inference import upscale
from esrt_lit.metrics.color import quantize, rgb_to_y
from esrt_lit.metrics.functional import psnr, ssim

__all__ = [
    "Benchmark",
    "ModelSpec",
    "evaluate_folder",
    "find_benchmarks",
    "format_table",
    "iter_sr_pairs",
    "load_model",
    "run_benchmarks",
    "score_pair",
]

log = logging.getLogger(__name__)

#: What ``model`` may be: ``"bicubic"``, a network, or a checkpoint path (released or Lightning).
ModelSpec = str | Path | nn.Module

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
#: Column order of the paper's tables; other benchmarks follow alphabetically.
PAPER_ORDER = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109")
RESULT_FILES = ("results.json", "results.md")


@dataclass(frozen=True)
class Benchmark:
    """A benchmark folder: HR images, and LR images per scale when it is a pack (``HR/``, ``LR_bicubic/X4/``)."""

    name: str
    hr_dir: Path
    lr_dirs: Mapping[int, Path] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Benchmark:
        """Read a plain folder of HR images, or a pack with ``HR/`` and ``LR_bicubic/X{s}/`` inside."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"benchmark folder not found: {folder}")
        if (folder / "HR").is_dir():
            lr_root = folder / "LR_bicubic"
            lr_dirs = {}
            if lr_root.is_dir():
                for sub in lr_root.iterdir():
                    if sub.is_dir() and sub.name[:1] in "xX" and sub.name[1:].isdigit():
                        lr_dirs[int(sub.name[1:])] = sub
            return cls(folder.name, folder / "HR", lr_dirs)
        return cls(folder.name, folder)


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def find_benchmarks(root: str | Path, names: Sequence[str] | None = None) -> list[Benchmark]:
    """Benchmark folders directly under ``root``, in the paper's column order.

    A subfolder counts when it holds images (``Set5/*.png``) or an ``HR/`` folder with images (a pack).

    Raises:
        FileNotFoundError: ``root`` is missing, or a name in ``names`` is not a benchmark under it.
        ValueError: no benchmark under ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark root not found: {root}")
    found = {
        sub.name: Benchmark.from_folder(sub)
        for sub in root.iterdir()
        if sub.is_dir() and (_has_images(sub) or ((sub / "HR").is_dir() and _has_images(sub / "HR")))
    }
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise FileNotFoundError(
                f"benchmark(s) {', '.join(missing)} not found under {root}; found: {', '.join(sorted(found)) or 'none'}"
            )
        found = {n: found[n] for n in names}
    if not found:
        raise ValueError(f"{root}: no benchmark folder (a subfolder with images, or with HR/ holding images)")
    order = {n: i for i, n in enumerate(PAPER_ORDER)}
    return [found[n] for n in sorted(found, key=lambda n: (order.get(n, len(order)), n))]


def load_model(model: ModelSpec) -> nn.Module:
    """The network behind a model spec (anything but ``"bicubic"``), in eval mode.

    A path is loaded as a Lightning checkpoint (a dict with ``state_dict`` and ``hyper_parameters``, or
    one that needs full unpickling) through ``esrt_lit.lit_module.load_net_from_checkpoint``, otherwise
    as a checkpoint of the authors' released code through ``ESRT.from_official_checkpoint``.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: ``model`` is neither a module nor a checkpoint path.
        ImportError: a Lightning checkpoint, but ``esrt_lit.lit_module`` is not available.
    """
    if isinstance(model, nn.Module):
        return model.eval()
    path = Path(model)
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ValueError(
            f"model={str(model)!r}: expected 'bicubic', an nn.Module or a checkpoint path ending in "
            f"{', '.join(CHECKPOINT_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        lightning = isinstance(content, Mapping) and "state_dict" in content and "hyper_parameters" in content
    except pickle.UnpicklingError as err:
        # Lightning checkpoints may pickle hyper-parameter objects; released weights are plain tensors.
        if path.suffix.lower() != ".ckpt":
            raise ValueError(
                f"{path}: not loadable with weights_only=True ({err}); expected released ESRT weights "
                "(.pt/.pth) or a Lightning .ckpt"
            ) from err
        lightning = True
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: unreadable checkpoint ({err})") from err
    if lightning:
        try:
            lit_module = import_module("esrt_lit.lit_module")
        except ImportError as err:
            raise ImportError(
                f"{path} is a Lightning checkpoint but esrt_lit.lit_module (load_net_from_checkpoint) "
                "is not available"
            ) from err
        net = lit_module.load_net_from_checkpoint(path)
    else:
        from esrt_lit.models.esrt import ESRT

        net = ESRT.from_official_checkpoint(path)
    return net.eval()


def _describe(model: ModelSpec) -> str:
    return type(model).__name__ if isinstance(model, nn.Module) else str(model)


def _forward(
    net: nn.Module, lr: torch.Tensor, scale: int, tile: int | None, tile_overlap: int
) -> torch.Tensor:
    """``net(lr)``, or blended over overlapping ``tile``-pixel LR tiles (:func:`esrt_lit.inference.upscale`)."""
    if tile is None:
        return net(lr)
    return upscale(net, lr, tile=tile, overlap=tile_overlap, scale=scale)


def _lr_files(lr_dir: Path, scale: int) -> dict[str, Path]:
    """Stored LR images by HR stem (``baby.png`` or ``babyx4.png`` for ``baby.png``)."""
    files = {}
    for p in list_images(lr_dir):
        stem = p.stem
        suffix = f"x{scale}"
        files[stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem] = p
    return files


def _y_first_bicubic(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The published bicubic rows' procedure on a modcropped ``uint8`` HR: ``(sr_y, hr_y)`` as ``uint8 [H, W, 1]``."""
    hr_y = hr if hr.shape[2] == 1 else rgb_to_y(hr)
    up = imresize(imresize(hr_y.astype(np.float64), 1 / scale), scale)
    sr_y = np.floor(np.clip(up, 0, 255) + 0.5).astype(np.uint8)
    return sr_y, hr_y


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, C]`` → ``uint8 [1, C, H, W]``."""
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None]


def iter_sr_pairs(
    hr_dir: str | Path,
    scale: int,
    model: ModelSpec = "bicubic",
    device: str | torch.device = "cpu",
    tile: int | None = None,
    lr_dir: str | Path | None = None,
    tile_overlap: int = 16,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Super-resolve every image of a folder following the protocol; the one home of the pipeline.

    Args:
        hr_dir: folder of HR images.
        scale: upscaling factor; also the border cropped when scoring.
        model: ``"bicubic"`` (Y-first published baseline), an ``nn.Module`` taking ``[1, 3, h, w]`` in
            [0, 1] and returning ``[1, 3, h·s, w·s]``, or a checkpoint path (see :func:`load_model`).
        device: where the network runs.
        tile: LR tile size for networks that do not fit an image at once (None: whole images).
        lr_dir: stored LR images to feed the network instead of MATLAB-downscaling the HR
            (``baby.png`` or ``babyx4.png``), ``scale`` times smaller than the modcropped HR. Ignored by
            ``"bicubic"``, whose Y-first procedure starts from the HR.
        tile_overlap: LR pixels shared by neighbouring tiles.

    Yields:
        ``(name, sr, hr)``: the file stem and ``uint8 [1, C, H, W]`` CPU tensors ready for
        :func:`score_pair` — ``C = 1`` (Y) for ``"bicubic"``; for a network ``sr`` is RGB and ``hr`` is
        the HR as stored (1 or 3 channels).

    Raises:
        FileNotFoundError: a folder, checkpoint or stored LR image is missing.
        ValueError: an image is unreadable, or a network's output or a stored LR has the wrong size.
    """
    files = list_images(hr_dir)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale={scale!r}; expected a positive integer")
    scale = int(scale)
    if isinstance(model, str) and model == "bicubic":
        for path in files:
            sr_y, hr_y = _y_first_bicubic(modcrop(read_image(path), scale), scale)
            yield path.stem, _to_tensor(sr_y), _to_tensor(hr_y)
        return
    net = load_model(model).to(device)
    param = next(iter(net.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    lr_files = _lr_files(Path(lr_dir), scale) if lr_dir is not None else None
    for path in files:
        hr = read_image(path)
        if lr_files is None:
            hr = modcrop(hr, scale)
            lr = imresize(hr, 1 / scale)
        else:
            if path.stem not in lr_files:
                raise FileNotFoundError(
                    f"{lr_dir}: no LR image for {path.name} (expected {path.stem}x{scale}.png)"
                )
            lr = read_image(lr_files[path.stem])
            hr = modcrop(hr, scale)
            if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
                raise ValueError(
                    f"{lr_files[path.stem]}: LR of {lr.shape[0]}x{lr.shape[1]} does not match the HR {path} "
                    f"({hr.shape[0]}x{hr.shape[1]} after modcrop) at x{scale}"
                )
        x = _to_tensor(lr).to(device=device, dtype=dtype) / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)  # grey images are fed to RGB models with the channel repeated
        with torch.inference_mode():
            out = _forward(net, x, scale, tile, tile_overlap)
        expected = (1, 3, hr.shape[0], hr.shape[1])
        if tuple(out.shape) != expected:
            raise ValueError(
                f"{path}: {_describe(model)} returned {tuple(out.shape)} for an LR of {tuple(x.shape)}; "
                f"expected {expected} (a x{scale} model)"
            )
        yield path.stem, quantize(out).to(device="cpu", dtype=torch.uint8), _to_tensor(hr)


def score_pair(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one pair from :func:`iter_sr_pairs`: MATLAB Y, ``scale`` pixels cropped."""
    return psnr(sr, hr, crop_border=scale).item(), ssim(sr, hr, crop_border=scale).item()


def evaluate_folder(
    hr_dir: str | Path,
    scale: int,
    model: ModelSpec = "bicubic",
    device: str | torch.device = "cpu",
    tile: int | None = None,
    lr_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Mean PSNR/SSIM of a model on a folder of HR images, as in the published tables.

    Args:
        hr_dir: folder of HR images, or a benchmark pack holding ``HR/`` (and ``LR_bicubic/X{s}/``,
            whose LR images are then fed to the network).
        scale: upscaling factor (also the border cropped).
        model: ``"bicubic"``, an ``nn.Module`` or a checkpoint path (see :func:`iter_sr_pairs`).
        device: where the network runs.
        tile: LR tile size, or None for whole images.
        lr_dir: stored LR images (overrides the pack's).

    Returns:
        ``{"psnr": mean, "ssim": mean, "images": [{"name", "psnr", "ssim"}, ...]}``.

    Raises:
        FileNotFoundError: the folder is missing.
        ValueError: the folder has no image, or an image is unreadable (the message names the file).
    """
    bench = Benchmark.from_folder(hr_dir)
    if lr_dir is None:
        lr_dir = bench.lr_dirs.get(int(scale))
    images = []
    for name, sr, hr in iter_sr_pairs(bench.hr_dir, scale, model, device, tile, lr_dir):
        p, s = score_pair(sr, hr, scale)
        images.append({"name": name, "psnr": p, "ssim": s})
    return {
        "psnr": math.fsum(i["psnr"] for i in images) / len(images),
        "ssim": math.fsum(i["ssim"] for i in images) / len(images),
        "images": images,
    }


def run_benchmarks(
    model: ModelSpec | Mapping[int, ModelSpec],
    scales: Sequence[int],
    benchmark_root: str | Path | None = None,
    names: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model on every benchmark under ``benchmark_root`` at every scale.

    Args:
        model: ``"bicubic"``, a network or a checkpoint path, used at every scale; or a mapping
            ``{scale: model}`` (networks are trained for one scale).
        scales: upscaling factors, e.g. ``[2, 3, 4]``.
        benchmark_root: folder of benchmarks (plain HR folders or packs, see :func:`find_benchmarks`);
            default ``esrt_lit.paths.benchmark_root()``.
        names: benchmarks to run (default: all found).
        out_dir: when given, ``results.json`` (this function's return value) and ``results.md`` (the
            table of :func:`format_table`) are written there. Existing files are never replaced: the
            run refuses to start if either exists.
        device: where the network runs.
        tile: LR tile size, or None for whole images.

    Returns:
        ``{"model": str, "scales": [...], "benchmarks": [...], "results": {"x4": {"Set5":
        evaluate_folder(...)}}}``.

    Raises:
        FileExistsError: ``out_dir`` already holds ``results.json`` or ``results.md``.
        FileNotFoundError / ValueError: see :func:`find_benchmarks` and :func:`evaluate_folder`.
    """
    if benchmark_root is None:
        from esrt_lit.paths import benchmark_root as default_root

        benchmark_root = default_root()
        if benchmark_root is None:
            raise FileNotFoundError("no benchmark_root given and shared/data/benchmark was not found")
    scales = [int(s) for s in scales]
    if not scales:
        raise ValueError("scales is empty; expected e.g. [2, 3, 4]")
    out_paths = [Path(out_dir) / f for f in RESULT_FILES] if out_dir is not None else []
    existing = [str(p) for p in out_paths if p.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} exist; choose another out_dir or remove them")
    benches = find_benchmarks(benchmark_root, names)
    if isinstance(model, Mapping):
        missing = [s for s in scales if s not in model]
        if missing:
            raise ValueError(f"model mapping has no entry for scale(s) {missing}; it has {sorted(model)}")
        description = ", ".join(f"x{s}: {_describe(model[s])}" for s in scales)
    else:
        description = _describe(model)
    results: dict[str, Any] = {
        "model": description,
        "scales": scales,
        "benchmarks": [b.name for b in benches],
        "results": {},
    }
    for scale in scales:
        spec = model[scale] if isinstance(model, Mapping) else model
        if not isinstance(spec, nn.Module) and spec != "bicubic":
            spec = load_model(spec)  # load a checkpoint once per scale, not once per benchmark
        per_bench = results["results"][f"x{scale}"] = {}
        for bench in benches:
            res = evaluate_folder(bench.hr_dir, scale, spec, device, tile, bench.lr_dirs.get(scale))
            per_bench[bench.name] = res
            log.info("x%d %s: PSNR %.4f dB, SSIM %.4f", scale, bench.name, res["psnr"], res["ssim"])
    if out_paths:
        out_paths[0].parent.mkdir(parents=True, exist_ok=True)
        with out_paths[0].open("x") as f:
            json.dump(results, f, indent=2)
        with out_paths[1].open("x") as f:
            f.write(
                f"# {description}\n\nPSNR (dB) / SSIM on Y, `scale` pixels cropped.\n\n{format_table(results)}\n"
            )
    return results


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown table of :func:`run_benchmarks` results, formatted like the paper's.

    One row per scale, one column per benchmark, cells ``PSNR/SSIM`` (``33.66/0.9299``).
    """
    per_scale = results["results"]
    benches = list(results.get("benchmarks") or dict.fromkeys(b for r in per_scale.values() for b in r))
    lines = ["| scale | " + " | ".join(benches) + " |", "|---|" + "---|" * len(benches)]
    for scale, row in per_scale.items():
        cells = [f"{row[b]['psnr']:.2f}/{row[b]['ssim']:.4f}" if b in row else "-" for b in benches]
        lines.append(f"| {scale} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
