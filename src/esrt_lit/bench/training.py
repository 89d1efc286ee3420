"""The bench's ``training`` section: the training step (eager, and on CUDA fused, compiled and captured in
CUDA graphs), on CUDA the whole Lightning loop, and the data loader's throughput."""

from __future__ import annotations

import os

from esrt_lit.bench.measure import Runner
from esrt_lit.bench.table import Row, fill, ratios
from esrt_lit.bench.workers import TRAIN_BATCH, TRAIN_PATCH

__all__ = ["GPU_TRAIN_CONFIGS", "training_rows"]


def training_rows(run: Runner, mode: str) -> list[Row]:
    """The training step's rows (CPU or CUDA), then the data loader's samples/s against what a step consumes."""
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


def _cpu_training(run: Runner, mode: str) -> list[Row]:
    steps = 1 if mode == "quick" else 3
    what = f"train step b{TRAIN_BATCH} p{TRAIN_PATCH}"
    results = {
        "default": run("train_worker", steps=steps),
        "explicit": run("train_worker", attention="explicit", channels_last=False, steps=steps),
    }
    if mode != "quick":
        results["default, NCHW"] = run("train_worker", channels_last=False, steps=steps)
        results["default + bf16 autocast"] = run("train_worker", amp="bf16", steps=steps)
    rows = {name: fill(Row(what, name, 4), res) for name, res in results.items()}
    loss0 = {name: res["loss0"] for name, res in results.items() if res.get("ok")}
    for name, row in rows.items():
        if name in loss0 and "explicit" in loss0:
            row.note = (
                f"first loss {loss0[name]:.7f} (|Δ| vs explicit {abs(loss0[name] - loss0['explicit']):.1e})"
            )
    ratios(rows["default"], rows["explicit"])
    return list(rows.values())


#: (scale, batch, LR patch) of the GPU training rows: the released recipe's batch and patch, and a
#: larger step that fills the GPU better.
GPU_TRAIN_CONFIGS = ((2, 16, 48), (4, 16, 48), (2, 64, 64), (4, 64, 64))


def _gpu_training(run: Runner, mode: str) -> list[Row]:
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


def _gpu_training_rows(run: Runner, mode: str) -> list[Row]:
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
            row = fill(Row(what, name, scale, (patch, patch)), res)
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
        row = fill(
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
