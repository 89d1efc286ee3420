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

Another degradation (``degradation=bd`` or ``dn``, :mod:`esrt_lit.data.degradations`) makes every LR
from the HR (stored LR files are bicubic), DN's noise seeded per image so that a table is the same on
every run; its bicubic baseline is the RGB pipeline's bicubic upscaling of that degraded LR.

:func:`iter_sr_pairs` is the one place where the pipeline lives; :func:`score_pair` scores what it
yields; :func:`evaluate_folder` and :func:`run_benchmarks` build on both; :func:`evaluate` reads an
``eval`` config (``conf/eval.yaml``) for the command ``python -m esrt_lit.eval``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from esrt_lit.config_schema import check_schema
from esrt_lit.data.datasets import PairStore, check_scorable
from esrt_lit.data.degradations import Bicubic as BicubicDegradation
from esrt_lit.data.degradations import Degradation, build_degradation
from esrt_lit.data.imresize import check_factor, imresize, round_uint8
from esrt_lit.data.io import image_to_tensor
from esrt_lit.data.sources import BenchmarkSource, BenchmarksSource
from esrt_lit.errors import ConfigError
from esrt_lit.inference import resolve_device, upscale
from esrt_lit.metrics.collection import METRICS, format_scores, score_images
from esrt_lit.metrics.color import quantize, rgb_to_y
from esrt_lit.metrics.tables import PAPER_ORDER, markdown_table
from esrt_lit.models.bicubic import is_bicubic
from esrt_lit.models.checkpoint import BICUBIC, load_network, network_source
from esrt_lit.models.config import SCALES, check_scale
from esrt_lit.paths import benchmark_root as shared_benchmark_root

__all__ = [
    "PAPER_ORDER",
    "ModelSpec",
    "evaluate",
    "evaluate_folder",
    "find_benchmarks",
    "format_table",
    "iter_sr_pairs",
    "run_benchmarks",
    "score_pair",
    "write_embedded_benchmark",
]

log = logging.getLogger(__name__)

#: What ``model`` may be: ``"bicubic"``, a network, or a checkpoint (a path or a shipped name).
ModelSpec = str | Path | nn.Module

RESULT_FILES = ("results.json", "results.md")


def find_benchmarks(root: str | Path, names: Sequence[str] | None = None) -> list[BenchmarkSource]:
    """Benchmark folders directly under ``root``, in the paper's column order (the data layer's
    :class:`~esrt_lit.data.sources.BenchmarksSource`: plain folders of HR images, or packs with ``HR/``).

    Raises:
        FileNotFoundError: ``root`` is missing, or a name in ``names`` is not a benchmark under it.
        ValueError: no benchmark under ``root``.
    """
    return BenchmarksSource(str(root), list(names) if names is not None else None).expand()


def _describe(model: ModelSpec) -> str:
    if isinstance(model, nn.Module):
        return type(model).__name__
    return "bicubic (the published rows' Y-first procedure)" if model == BICUBIC else str(model)


def _y_first_bicubic(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The published bicubic rows' procedure on a modcropped ``uint8`` HR: ``(sr_y, hr_y)`` as ``uint8 [H, W, 1]``."""
    hr_y = hr if hr.shape[2] == 1 else rgb_to_y(hr)
    up = imresize(imresize(hr_y.astype(np.float64), 1 / scale), scale)
    sr_y = round_uint8(up)
    return sr_y, hr_y


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, C]`` → ``uint8 [1, C, H, W]``, packed (contiguous)."""
    return image_to_tensor(image, scale_to_unit=False, batch=True, packed=True)


def iter_sr_pairs(
    hr_dir: str | Path,
    scale: int,
    model: ModelSpec = BICUBIC,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    lr_dir: str | Path | None = None,
    tile_overlap: int = 16,
    degradation: Degradation | None = None,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Super-resolve every image of a benchmark folder following the protocol; the one home of the pipeline.

    The images and their LR come from the data layer (:class:`~esrt_lit.data.sources.BenchmarkSource`
    and :class:`~esrt_lit.data.datasets.PairStore`, as in training's validation): HR modcropped, the
    stored LR when the folder is a pack with one for ``scale`` (its size checked, even for
    ``"bicubic"``, which starts from the HR), else MATLAB ``imresize(HR, 1/s)`` rounded to ``uint8``.

    Args:
        hr_dir: a folder of HR images, or a benchmark pack holding ``HR/`` (and ``LR_bicubic/X{s}/``).
        scale: upscaling factor; also the border cropped when scoring.
        model: ``"bicubic"`` (Y-first published baseline), an ``nn.Module`` taking ``[1, 3, h, w]`` in
            [0, 1] and returning ``[1, 3, h·s, w·s]``, or a checkpoint (see :func:`~esrt_lit.models.checkpoint.load_network`).
        device: where the network runs.
        tile: LR tile size for networks that do not fit an image at once (None: whole images).
        lr_dir: stored LR images (``baby.png`` or ``babyx4.png``) instead of the pack's or ``imresize``'s.
        tile_overlap: LR pixels shared by neighbouring tiles.
        degradation: how the LR is made (default bicubic); another one ignores stored LR images, and
            ``"bicubic"`` then upscales its LR in RGB (:class:`~esrt_lit.models.bicubic.Bicubic`).

    Yields:
        ``(name, sr, hr)``: the file stem and ``uint8 [1, C, H, W]`` CPU tensors ready for
        :func:`score_pair` — ``C = 1`` (Y) for ``"bicubic"``; for a network ``sr`` is RGB and ``hr`` is
        the HR as stored (1 or 3 channels).

    Raises:
        FileNotFoundError: a folder, checkpoint or stored LR image is missing.
        ValueError: an image is unreadable or too small, or a network's output or a stored LR has the
            wrong size (the messages name the files).
    """
    scale = check_factor(scale)
    source = BenchmarkSource(str(hr_dir), lr_dir=str(lr_dir) if lr_dir is not None else None)
    records = source.records(scale)
    degradation = degradation if degradation is not None else BicubicDegradation()
    store = PairStore(scale, cache="none", degradation=degradation)
    if isinstance(model, str) and model == BICUBIC and not isinstance(degradation, BicubicDegradation):
        from esrt_lit.models.bicubic import Bicubic

        model = Bicubic(scale)  # the published Y-first procedure exists for the bicubic LR only
    if isinstance(model, str) and model == BICUBIC:
        for record in records:
            hr = store.hr(record)  # checks a stored LR too; the procedure makes its own from Y
            check_scorable(record.hr, hr, scale)
            sr_y, hr_y = _y_first_bicubic(hr, scale)
            yield record.name, _to_tensor(sr_y), _to_tensor(hr_y)
        return
    net = load_network(model).to(device)
    param = next(iter(net.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    min_size = int(getattr(net, "min_size", 1))
    for record in records:
        lr, hr = store.get(record)
        check_scorable(record.hr, hr, scale)
        if min(lr.shape[:2]) < min_size:
            raise ValueError(
                f"{record.hr}: its LR of {lr.shape[1]}x{lr.shape[0]} pixels at x{scale} is smaller than "
                f"{_describe(model)}'s smallest input, {min_size}x{min_size}; expected an HR of at least "
                f"{min_size * scale}x{min_size * scale}"
            )
        x = _to_tensor(lr).to(device=device, dtype=dtype) / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)  # grey images are fed to RGB models with the channel repeated
        with torch.inference_mode():
            out = net(x) if tile is None else upscale(net, x, tile=tile, overlap=tile_overlap, scale=scale)
        expected = (1, 3, hr.shape[0], hr.shape[1])
        if tuple(out.shape) != expected:
            raise ValueError(
                f"{record.hr}: {_describe(model)} returned {tuple(out.shape)} for an LR of {tuple(x.shape)}; "
                f"expected {expected} (a x{scale} model)"
            )
        yield record.name, quantize(out).to(device="cpu", dtype=torch.uint8), _to_tensor(hr)


def score_pair(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """Every metric of :data:`~esrt_lit.metrics.METRICS` for one pair from :func:`iter_sr_pairs`:
    MATLAB Y, ``scale`` pixels cropped (``{"psnr": dB, "ssim": ...}``)."""
    return score_images(sr, hr, scale)


def evaluate_folder(
    hr_dir: str | Path,
    scale: int,
    model: ModelSpec = BICUBIC,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    lr_dir: str | Path | None = None,
    degradation: Degradation | None = None,
) -> dict[str, Any]:
    """Mean PSNR/SSIM of a model on a folder of HR images, as in the published tables.

    Args:
        hr_dir: folder of HR images, or a benchmark pack holding ``HR/`` (and ``LR_bicubic/X{s}/``,
            whose LR images are then fed to the network).
        scale: upscaling factor (also the border cropped).
        model: ``"bicubic"``, an ``nn.Module`` or a checkpoint (see :func:`iter_sr_pairs`).
        device: where the network runs.
        tile: LR tile size, or None for whole images.
        label: what the results call the model (default: the path, ``bicubic`` or the network's class).
        lr_dir: stored LR images (overrides the pack's).
        degradation: how the LR is made (default bicubic; see :func:`iter_sr_pairs`).

    Returns:
        ``{"psnr": mean, "ssim": mean, "images": [{"name", "psnr", "ssim"}, ...]}``.

    Raises:
        FileNotFoundError: the folder is missing.
        ValueError: the folder has no image, or an image is unreadable (the message names the file).
    """
    images = [
        {"name": name, **score_pair(sr, hr, scale)}
        for name, sr, hr in iter_sr_pairs(hr_dir, scale, model, device, tile, lr_dir, degradation=degradation)
    ]
    means = {m.name: math.fsum(i[m.name] for i in images) / len(images) for m in METRICS}
    return {**means, "images": images}


def run_benchmarks(
    model: ModelSpec | Mapping[int, ModelSpec],
    scales: Sequence[int],
    benchmark_root: str | Path | None = None,
    names: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    label: str | None = None,
    degradation: Degradation | None = None,
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
        degradation: how the LR is made (default bicubic; see :func:`iter_sr_pairs`).

    Returns:
        ``{"model": str, "degradation": str, "scales": [...], "benchmarks": [...], "results": {"x4": {"Set5":
        evaluate_folder(...)}}}``.

    Raises:
        FileExistsError: ``out_dir`` already holds ``results.json`` or ``results.md``.
        FileNotFoundError / ValueError: see :func:`find_benchmarks` and :func:`evaluate_folder`.
    """
    if benchmark_root is None:
        benchmark_root = shared_benchmark_root()
        if benchmark_root is None:
            raise FileNotFoundError("no benchmark_root given and shared/data/benchmark was not found")
    scales = _check_scales(scales)
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
    degradation = degradation if degradation is not None else BicubicDegradation()
    if model == BICUBIC and not isinstance(degradation, BicubicDegradation):
        description = f"bicubic (RGB upscaling of the {degradation.name} LR)"
    results: dict[str, Any] = {
        "model": label or description,
        "degradation": degradation.name,
        "scales": scales,
        "benchmarks": [b.label for b in benches],
        "results": {},
    }
    for scale in scales:
        spec = model[scale] if isinstance(model, Mapping) else model
        if not isinstance(spec, nn.Module) and spec != BICUBIC:
            spec = load_network(spec)  # load a checkpoint once per scale, not once per benchmark
        per_bench = results["results"][f"x{scale}"] = {}
        for bench in benches:
            res = evaluate_folder(bench.root, scale, spec, device, tile, bench.lr_dir, degradation)
            per_bench[bench.label] = res
            log.info(
                "x%d %s: %s", scale, bench.label, ", ".join(f"{m.name} {res[m.name]:.4f}" for m in METRICS)
            )
    if out_paths:
        out_paths[0].parent.mkdir(parents=True, exist_ok=True)
        with out_paths[0].open("x") as f:
            json.dump(_json_safe(results), f, indent=2, allow_nan=False)
        with out_paths[1].open("x") as f:
            title = (
                description
                if results["degradation"] == BICUBIC
                else f"{description}, {results['degradation']} LR"
            )
            f.write(
                f"# {title}\n\nPSNR (dB) / SSIM on Y, `scale` pixels cropped.\n\n{format_table(results)}\n"
            )
    return results


def _check_scales(scales: Sequence[Any]) -> list[int]:
    """``scales`` as SR factors of ESRT's (2, 3, 4).

    Raises:
        ValueError: empty, or a value that is not one of them (naming ``scales``).
    """
    values = list(scales) if isinstance(scales, Sequence) and not isinstance(scales, str) else [scales]
    if not values:
        raise ValueError("scales=[]: empty; expected a list of 2, 3 and 4, e.g. [2, 3, 4]")
    for value in values:
        try:
            check_scale(value)
        except ValueError:
            raise ValueError(
                f"scales={values!r}: {value!r} is not supported; allowed values: 2, 3, 4"
            ) from None
    return [int(v) for v in values]


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no Infinity or NaN; a perfect PSNR is infinite)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown table of :func:`run_benchmarks` results, formatted like the paper's.

    One row per scale, one column per benchmark, cells ``PSNR/SSIM`` (``33.66/0.9299``).
    """
    per_scale = results["results"]
    benches = list(results.get("benchmarks") or dict.fromkeys(b for r in per_scale.values() for b in r))
    rows = [
        [scale, *(format_scores(row[b]) if b in row else "-" for b in benches)]
        for scale, row in per_scale.items()
    ]
    return markdown_table(["scale", *benches], rows)


def write_embedded_benchmark(folder: Path) -> Path:
    """Copy the embedded validation images (scikit-image's, see :mod:`esrt_lit.data.sources`) into
    ``folder/skimage`` as PNGs, so they can be scored like a benchmark; returns ``folder``."""
    from esrt_lit.data.io import read_image, write_image
    from esrt_lit.data.sources import SkimageSource

    for record in SkimageSource("val").records(1):
        target = folder / "skimage" / f"{record.name}.png"
        if not target.exists():
            write_image(target, read_image(record.hr))
    return folder


def _benchmark_root(cfg: DictConfig) -> Path:
    root = cfg.get("benchmark_root")
    if root in (None, "auto"):
        shared = shared_benchmark_root()
        if shared is not None:
            return shared
        log.warning("no benchmark folder found: scoring the embedded validation images instead")
        return write_embedded_benchmark(Path(cfg.paths.output_dir) / "embedded_benchmark")
    path = Path(root)
    if not path.is_dir():
        raise ConfigError(f"benchmark_root={root}: folder not found")
    return path


def _scales(cfg: DictConfig) -> list[Any] | None:
    value = cfg.get("scales")
    if value is None:
        return None
    return list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]


def _instantiate_degradation(cfg: DictConfig) -> Degradation:
    """The ``degradation`` group's object (:mod:`esrt_lit.data.degradations`), errors naming the key."""
    try:
        return build_degradation(OmegaConf.to_container(cfg.degradation, resolve=True))
    except (ValueError, hydra.errors.InstantiationException) as err:
        raise ConfigError(f"degradation: {err.__cause__ or err}") from err


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the configured model; returns :func:`run_benchmarks`' results.

    Raises:
        ConfigError: no model, conflicting options, a missing benchmark folder, scales the checkpoint
            does not have.
    """
    check_schema(cfg)
    scales = _scales(cfg)
    source = network_source(cfg.get("ckpt_path"), is_bicubic(cfg.get("model")))
    label = None  # bicubic's results name the procedure; a network's, its checkpoint
    if source == BICUBIC:  # the published rows' Y-first procedure, at every scale asked
        model, scales = source, scales if scales is not None else list(SCALES)
    else:
        model = load_network(source, key="ckpt_path")
        scale = int(model.scale)
        if scales is not None and any(s != scale for s in scales):
            raise ConfigError(f"scales={scales}: the checkpoint {cfg.ckpt_path} holds an x{scale} network")
        scales, label = [scale], str(cfg.ckpt_path)
    return run_benchmarks(
        model,
        scales,
        _benchmark_root(cfg),
        names=list(cfg.names) if cfg.get("names") else None,
        out_dir=cfg.paths.output_dir,
        device=resolve_device(cfg.device),
        tile=cfg.get("tile"),
        label=label,
        degradation=_instantiate_degradation(cfg),
    )
