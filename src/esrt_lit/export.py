"""Export a trained network to ONNX with dynamic height and width.

Usage (Hydra-style ``key=value`` overrides of ``conf/export.yaml``)::

    python -m esrt_lit.export ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt
    python -m esrt_lit.export ckpt_path=ESRT_x4.pth output=esrt_x4.onnx opset=18
    python -m esrt_lit.export ckpt_path=null scale=4            # random weights (smoke test)
    python -m esrt_lit.export ckpt_path=<run>/checkpoints/best.ckpt format=pretrained output=esrt_x4.pt

The graph is traced once (TorchScript exporter), so every size-dependent step must be a tensor
operation: under export the EMHA's chunked attention uses
:func:`~esrt_lit.models.transformer.padded_chunked_attention` (the extra short chunk of ``torch.split``
becomes a masked, padded chunk) and the 3×3 unfold/fold become one-hot (transposed) convolutions; both
compute the same function as the eager model. After writing, onnxruntime is run against PyTorch on
``verify_hw`` sizes other than the traced one. The exported attention materialises each chunk's
``q·kᵀ`` like the released code, so memory grows with ``(H·W)² / attn_splits``: run large images in
tiles (see :mod:`esrt_lit.inference`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from esrt_lit.cli import quote_non_ascii, run_command
from esrt_lit.config_schema import check_schema
from esrt_lit.errors import ConfigError
from esrt_lit.files import atomic_output, refuse_overwriting_input, sha256
from esrt_lit.models.checkpoint import load_network
from esrt_lit.models.config import check_scale
from esrt_lit.models.esrt import ESRT
from esrt_lit.paths import CONF_DIR

__all__ = ["export_onnx", "load_net", "main", "verify_onnx"]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pretrained")


def load_net(ckpt_path: str | Path | None, scale: int | None = None) -> nn.Module:
    """The network to export, in eval mode on the CPU in float32: ``ckpt_path``'s
    (:func:`~esrt_lit.models.checkpoint.load_network`; its scale must be ``scale`` when given), or for
    None a randomly initialised ESRT (seed 0) of ``scale``.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: no scale for random weights, or a scale that disagrees with the checkpoint.
    """
    scale = check_scale(scale) if scale is not None else None
    if ckpt_path is not None:
        return load_network(ckpt_path, scale).float().cpu()
    if scale is None:
        raise ValueError("ckpt_path=null exports random weights and needs scale=2, 3 or 4")
    torch.manual_seed(0)
    return ESRT(scale=scale).eval()


def export_onnx(
    net: nn.Module,
    output: str | Path,
    opset: int = 18,
    trace_hw: Sequence[int] = (32, 48),
    overwrite: bool = False,
) -> Path:
    """Write ``net`` as ONNX with dynamic batch, height and width (input ``lr``, output ``sr``).

    The file is written through :func:`~esrt_lit.files.atomic_output`, so a failed export leaves
    nothing behind and an existing ``output`` intact.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"output={output} already exists; pass overwrite=true to replace it")
    x = torch.rand(1, 3, int(trace_hw[0]), int(trace_hw[1]))
    net = net.float().cpu().eval()
    with atomic_output(output) as tmp, warnings.catch_warnings():
        # The tracer warns about Python-level shape checks (input validation, the q/k/v unpacking
        # over the fixed dimension of 3), which are constant for this network; the exporter warns
        # that it is the legacy one (the dynamo exporter needs onnxscript, not a dependency).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            net,
            (x,),
            str(tmp),
            dynamo=False,
            opset_version=int(opset),
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={
                "lr": {0: "batch", 2: "height", 3: "width"},
                "sr": {0: "batch", 2: "sr_height", 3: "sr_width"},
            },
        )
        if output.exists() and not overwrite:
            raise FileExistsError(f"output={output} appeared during the export; pass overwrite=true")
    log.info("wrote %s (%.1f MB)", output, output.stat().st_size / 1e6)
    return output


def _run_record(ckpt_path: Path, commit: str | None) -> dict[str, Any]:
    """How the run behind ``ckpt_path`` (``<run>/checkpoints/<name>.ckpt``) was made, from its folder: the
    command, the resolved configuration (as its W&B run logged it), the commit, its metrics and its W&B
    run's summary."""
    from esrt_lit.wandb_offline import read_offline_run

    run_dir = ckpt_path.resolve().parent.parent
    record: dict[str, Any] = {"checkpoint": f"{run_dir.name}/checkpoints/{ckpt_path.name}"}
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        given = [str(o) for o in OmegaConf.load(overrides) if not str(o).startswith("hydra.")]
        record["command"] = " ".join(["python -m esrt_lit.train", *given])
    metrics = run_dir / "metrics.json"
    run_metrics = json.loads(metrics.read_text()) if metrics.is_file() else {}
    record["commit"] = commit or run_metrics.get("git_commit")
    keep = ("global_step", "epochs", "train_seconds", "params", "macs", "latency_128_ms")
    record["run"] = {
        k: v for k, v in run_metrics.items() if k in keep or k.startswith(("val/", "test/", "speed/"))
    }
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    wandb = read_offline_run(offline[-1]) if offline else None
    if wandb is not None:  # the resolved configuration, as the run logged it
        record["run_config"] = {k: v for k, v in wandb.config.items() if not str(k).startswith("_")}
        record["wandb_summary"] = {k: v for k, v in wandb.summary.items() if not str(k).startswith("_")}
    elif (config := run_dir / ".hydra" / "config.yaml").is_file():
        record["run_config"] = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    return record


def export_pretrained(
    net: nn.Module,
    ckpt_path: str | Path,
    output: str | Path,
    overwrite: bool = False,
    commit: str | None = None,
) -> dict[str, Any]:
    """Write ``net`` as weights to ship: an fp16 state dict (``output``) and its provenance beside it
    (``output`` with ``.json``: the run's record, the file's SHA-256, and the Set5/Set14 scores of the
    weights as shipped, fp16-rounded, against bicubic's). Returns the provenance.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False.
        ValueError: an output is the checkpoint or its run's ``metrics.json`` (even with ``overwrite``).
    """
    from esrt_lit.evaluation import run_benchmarks
    from esrt_lit.metrics.collection import METRICS
    from esrt_lit.training.checkpoint_io import atomic_torch_save

    output = Path(output)
    record_path = output.with_suffix(".json")
    inputs = [Path(ckpt_path), Path(ckpt_path).resolve().parent.parent / "metrics.json"]
    refuse_overwriting_input(output, inputs, "output")
    refuse_overwriting_input(record_path, inputs, "the provenance record of output")
    existing = [str(p) for p in (output, record_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); pass overwrite=true to replace")
    state = {k: v.detach().to(torch.float16).cpu() for k, v in net.state_dict().items()}
    atomic_torch_save(state, output)
    shipped = type(net)(**net.config)
    shipped.load_state_dict({k: v.float() for k, v in state.items()})
    scale, names = int(net.config["scale"]), ["Set5", "Set14"]
    scores = run_benchmarks({scale: shipped.eval()}, [scale], names=names)["results"][f"x{scale}"]
    bicubic = run_benchmarks("bicubic", [scale], names=names)["results"][f"x{scale}"]
    record = {
        "name": f"x{scale}",
        "file": output.name,
        "sha256": sha256(output),
        "config": dict(net.config),
        "scores": {n: {m.name: scores[n][m.name] for m in METRICS} for n in names},
        "bicubic": {n: {m.name: bicubic[n][m.name] for m in METRICS} for n in names},
        **_run_record(Path(ckpt_path), commit),
    }
    with atomic_output(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    log.info(
        "wrote %s (%.2f MB, sha256 %s) and %s",
        output,
        output.stat().st_size / 1e6,
        record["sha256"],
        record_path,
    )
    return record


def verify_onnx(
    net: nn.Module, path: str | Path, sizes: Sequence[Sequence[int]], seed: int = 0
) -> dict[tuple[int, int], float]:
    """Max ``|onnxruntime − PyTorch|`` of the SR output for random LR inputs of each ``(h, w)``.

    Raises:
        ValueError: naming ``path``: an output of another shape, or a NaN or infinite value in the
            output of either side (whose difference says nothing).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs = {}
    for h, w in sizes:
        x = torch.rand(1, 3, int(h), int(w), generator=gen)
        with torch.inference_mode():
            ref = net(x)
        (out,) = session.run(["sr"], {"lr": x.numpy()})
        if tuple(out.shape) != tuple(ref.shape):
            raise ValueError(
                f"{path}: onnxruntime output {out.shape} for {h}×{w}, PyTorch {tuple(ref.shape)}"
            )
        out = torch.from_numpy(out)
        bad = {name: int((~torch.isfinite(y)).sum()) for name, y in (("onnxruntime", out), ("PyTorch", ref))}
        if any(bad.values()):
            raise ValueError(
                f"{path}: the outputs are not finite for a {h}×{w} input (NaN or infinite values: "
                + ", ".join(f"{name} {n}" for name, n in bad.items())
                + "); a network with NaN or infinite weights or activations cannot be verified"
            )
        diffs[(int(h), int(w))] = float((out - ref).abs().max())
    return diffs


def _default_output(cfg: DictConfig, net: nn.Module) -> Path:
    suffix = ".pt" if cfg.format == "pretrained" else f".{cfg.format}"
    if cfg.ckpt_path is None:
        return Path(f"esrt_x{getattr(net, 'scale', cfg.scale)}_random{suffix}")
    return Path(cfg.ckpt_path).with_suffix(suffix)


def compose(overrides: Sequence[str]) -> DictConfig:
    """``conf/export.yaml`` with ``key=value`` overrides applied (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="export", overrides=list(overrides))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Export as configured; returns ``{"output", "verify"}`` (the max differences per size).

    Raises:
        ConfigError: ``overwrite`` not a boolean, ``tolerance`` not a finite positive number.
        ValueError: another bad value, an output that is the checkpoint, a failed verification.
        FileExistsError: the output exists and ``overwrite`` is False.
    """
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ValueError(
            f"missing value for {', '.join(sorted(missing))}; e.g. ckpt_path=<checkpoint> or ckpt_path=null"
        )
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format!r} is not supported; allowed values: {', '.join(FORMATS)}")
    if cfg.format == "pretrained" and cfg.ckpt_path is None:
        raise ValueError("format=pretrained ships trained weights: give ckpt_path=<the run's best.ckpt>")
    if not isinstance(cfg.overwrite, bool):
        raise ConfigError(f"overwrite={cfg.overwrite!r}: expected true or false")
    tolerance = cfg.tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 < tolerance < math.inf:
        raise ConfigError(
            f"tolerance={tolerance!r}: expected a finite positive number (the largest |onnxruntime − PyTorch| "
            "difference accepted, e.g. 1e-4)"
        )
    check_schema(cfg, "export")
    net = load_net(cfg.ckpt_path, cfg.scale)
    output = Path(cfg.output) if cfg.output is not None else _default_output(cfg, net)
    if cfg.format == "pretrained":
        record = export_pretrained(net, cfg.ckpt_path, output, cfg.overwrite, cfg.get("commit"))
        return {"output": str(output), "verify": {}, "sha256": record["sha256"]}
    refuse_overwriting_input(output, [] if cfg.ckpt_path is None else [cfg.ckpt_path], "output")
    if output.exists() and not cfg.overwrite:
        raise FileExistsError(f"output={output} already exists; pass overwrite=true to replace it")
    export_onnx(net, output, cfg.opset, cfg.trace_hw, cfg.overwrite)
    diffs = verify_onnx(net, output, cfg.verify_hw) if cfg.verify_hw else {}
    worst = max(diffs.values(), default=0.0)
    if worst > tolerance:
        raise ValueError(
            f"{output}: onnxruntime differs from PyTorch by {worst:.3g} > tolerance={tolerance} "
            f"({diffs}); the file is kept for inspection"
        )
    return {"output": str(output), "verify": diffs}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m esrt_lit.export key=value ...``; returns the exit status."""

    def work() -> None:
        result = run(compose(quote_non_ascii(sys.argv[1:] if argv is None else argv)))
        checks = ", ".join(f"{h}×{w}: {d:.2e}" for (h, w), d in result["verify"].items())
        print(f"wrote {result['output']}" + (f" (onnxruntime vs PyTorch max |Δ| {checks})" if checks else ""))  # noqa: T201

    return run_command(work)


if __name__ == "__main__":
    raise SystemExit(main())
