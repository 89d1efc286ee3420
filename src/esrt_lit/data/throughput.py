"""How fast the training loader delivers samples, so that data loading is never the bottleneck.

Usage::

    python -m esrt_lit.data.throughput [--source skimage|FOLDER ...] [--workers 0 2] [--scale 4]
        [--batch-size 16] [--patch-size 48] [--batches 50] [--cache memory|npy|none] [--cache-dir DIR]
        [--torch-threads N]

prints samples/s per source and worker count (steady state: caches are filled at ``setup``, which is
timed separately, and the first batches, which include starting the workers, are not counted).
With ``num_workers=0`` batches are collated in this process, whose torch thread pool competes for the
cores with everything else; on a busy machine ``--torch-threads 1`` shows the loader's own cost.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from esrt_lit.data.datamodule import SRDataModule
from esrt_lit.data.sources import FolderSource, SkimageSource

__all__ = ["main", "measure"]


def _cycle(loader: Any) -> Iterator[dict[str, Any]]:
    while True:
        yield from loader


def measure(datamodule: SRDataModule, n_batches: int = 50, warmup: int = 2) -> float:
    """Training samples per second delivered by ``datamodule.train_dataloader()``.

    Args:
        datamodule: the data module (``setup("fit")`` is called if needed).
        n_batches: batches timed (the loader is restarted when an epoch ends).
        warmup: batches drawn before timing (worker start-up).

    Returns:
        Samples per second over the ``n_batches`` timed batches.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches={n_batches}; expected a positive integer")
    datamodule.setup("fit")
    batches = _cycle(datamodule.train_dataloader())
    try:
        for _ in range(warmup):
            next(batches)
        start = time.perf_counter()
        samples = sum(next(batches)["lr"].shape[0] for _ in range(n_batches))
        return samples / (time.perf_counter() - start)
    finally:
        batches.close()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m esrt_lit.data.throughput``)."""
    parser = argparse.ArgumentParser(
        prog="python -m esrt_lit.data.throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--source", nargs="+", default=["skimage"], help="'skimage' or HR image folders")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=48)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--cache", default="memory", choices=["memory", "npy", "none"])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads in this process"
    )
    args = parser.parse_args(argv)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    from esrt_lit.cli import run_command

    return run_command(lambda: _report(args), log_format=None)


def _report(args: argparse.Namespace) -> None:
    print(f"{'source':24s} {'workers':>7s} {'setup s':>8s} {'samples/s':>10s}")  # noqa: T201
    for source in args.source:
        spec = SkimageSource("train") if source == "skimage" else FolderSource(source)
        for workers in args.workers:
            dm = SRDataModule(
                scale=args.scale,
                train=[spec],
                patch_size=args.patch_size,
                batch_size=args.batch_size,
                num_workers=workers,
                cache=args.cache,
                cache_dir=args.cache_dir,
                iters_per_epoch=args.batches + 2,
            )
            start = time.perf_counter()
            dm.setup("fit")
            setup_s = time.perf_counter() - start
            rate = measure(dm, args.batches)
            print(f"{spec.label:24s} {workers:7d} {setup_s:8.2f} {rate:10.1f}")  # noqa: T201


if __name__ == "__main__":
    raise SystemExit(main())
