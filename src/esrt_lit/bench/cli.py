"""One performance table for ESRT, every row measured in the same run.

Usage::

    python -m esrt_lit.bench [--quick | --full] [--json PATH] [--ckpt PATH] [--tile 192] [--threads N]

Paths compared:

- ``default``: this port as it runs by default: fused attention
  (``scaled_dot_product_attention``) and, on CPU, channels-last activations;
- ``explicit``: the released computation, ``softmax(q·kᵀ)·v`` written out per chunk on
  contiguous (NCHW) activations, which materialises an ``N/4 × N/4`` matrix per head;
- ``streamed``: :func:`esrt_lit.models.streaming.forward_streamed` (``upscale(stream_rows=32)``), the
  whole-image output computed in row blocks;
- ``tiled``: :func:`esrt_lit.inference.upscale` with ``--tile`` LR tiles and ``--overlap`` pixels.

Columns: exact MACs (attention products included) and the paper's convention (convolutions and
linear layers only) from :func:`esrt_lit.profiling.count_macs`; wall time (the fastest of a few
passes after a warm-up, the figure least disturbed by other jobs; one pass for rows above 500 GMAC);
peak memory above
the loaded model and input (:class:`esrt_lit.profiling.PeakMemory`); effective GFLOP/s
(``2 · exact MACs / time``); and on each ``default`` row the ``explicit / default`` ratios of time and
memory measured in this run. Every heavy measurement runs in a fresh subprocess
(:func:`esrt_lit.profiling.run_isolated`) under an address-space limit, so an out-of-memory failure
is a row, not a crash.

Modes: ``--quick`` (about a minute: x4 only, 128×128 and 320×180), the default (x2/x3/x4 at the
standard sizes 640×360, 427×240, 320×180 and at 128×128; the explicit path at 128×128; the options
rows; the 3840×2160-output tiled run), and ``--full`` (adds the explicit path at the standard sizes,
which needs ~13 GB at 320×180 x4, 21 GB per chunk at 427×240 x3 and 106 GB at 640×360 x2, and the
whole-image and streamed 960×540 x4 runs, the references for the tiled run's PSNR difference;
~45 min on 2 cores). ``--sections`` runs a subset (``inference,options,training,uhd``). On CUDA the
options add bf16 autocast and batch-8 throughput (images/s) at every scale's standard size.

Weights: random (seed 0); timings and memory do not depend on them. The tiled-vs-whole PSNR does:
``--ckpt`` adds the 960×540 rows for a trained checkpoint (any scale), whose PSNRs against the HR
photo are meaningful (the file is loaded before any row runs).

Exit status: 0 when every row was measured; 1 when an argument is refused (``--device cuda`` without
CUDA, an unreadable ``--ckpt``) or any row failed (the table is printed first; the error line names the
failed rows); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from esrt_lit.bench.sections import SECTIONS, run_bench
from esrt_lit.cli import run_command
from esrt_lit.errors import ConfigError
from esrt_lit.files import atomic_output

__all__ = ["check_ckpt", "check_device", "main"]


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def check_device(device: str) -> None:
    """Refuse ``--device cuda`` where CUDA is not available (every row would fail).

    Raises:
        ConfigError: naming the option, torch's version and why.
    """
    if device == "cuda" and not torch.cuda.is_available():
        why = (
            "built without CUDA"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda} build, no GPU found"
        )
        raise ConfigError(
            f"--device cuda: CUDA is not available on this machine (torch {torch.__version__}, {why})"
        )


def check_ckpt(ckpt: str | None) -> None:
    """Load ``--ckpt`` once before any row runs, so that a bad file is refused at once.

    Raises:
        FileNotFoundError, ValueError: the loader's error, naming the option and the file.
    """
    if ckpt is None:
        return
    from esrt_lit.models.checkpoint import load_network

    try:
        load_network(ckpt)
    except (FileNotFoundError, ValueError) as err:  # the loader names the file; this names the option too
        raise type(err)(f"--ckpt {ckpt}: {str(err).removeprefix(f'{ckpt}: ')}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m esrt_lit.bench``); returns the exit status: 1 when an argument is
    refused or any row failed (the table is printed first, the failed rows named on the error line)."""
    parser = argparse.ArgumentParser(prog="python -m esrt_lit.bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="x4 only, about a minute")
    mode.add_argument(
        "--full", action="store_true", help="add the explicit path at the standard sizes and the 4K reference"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument(
        "--ckpt",
        default=None,
        help="trained checkpoint for the tiled-vs-whole PSNR rows (default: random x4)",
    )
    parser.add_argument("--tile", type=_count(1), default=192, help="LR tile side of the tiled rows")
    parser.add_argument("--overlap", type=_count(0), default=16, help="LR overlap of the tiled rows")
    parser.add_argument("--threads", type=_count(1), default=None, help="torch threads in each measurement")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--timeout", type=_seconds, default=1800, help="seconds allowed per measurement")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if any)",
    )
    args = parser.parse_args(argv)
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    if unknown := sorted(set(sections) - set(SECTIONS)):
        parser.error(f"--sections {','.join(unknown)}: unknown; choose from {','.join(SECTIONS)}")
    if args.overlap >= args.tile:
        parser.error(f"--overlap {args.overlap}: expected less than --tile {args.tile}")
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} already exists; choose another path")
    return run_command(lambda: _bench(args, sections))


def _bench(args: argparse.Namespace, sections: list[str]) -> None:
    """Measure, print the table (and write ``--json``).

    Raises:
        ChildProcessError: a row failed (after the table is printed), naming the failed rows.
    """
    mode_name = "quick" if args.quick else "full" if args.full else "default"
    start = time.perf_counter()
    check_device(args.device)
    check_ckpt(args.ckpt)
    result = run_bench(
        mode_name, args.tile, args.overlap, args.threads, args.ckpt, args.timeout, args.device, sections
    )
    result["context"]["wall_s"] = time.perf_counter() - start
    ctx = result["context"]
    print(result["table"])  # noqa: T201
    print(  # noqa: T201
        f"\n{mode_name} run on {ctx['device']}, torch {ctx['torch']}, {ctx['threads']} threads, {ctx['cpu_count']} CPUs, "
        f"load average {ctx['loadavg']} at the end, {ctx['wall_s']:.0f} s"
    )
    if args.json is not None:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str))
    failed = [r for r in result["rows"] if r["failed"]]
    if failed:
        names = "; ".join(
            f"{r['what']}, {r['path']}" + (f", x{r['scale']}" if r["scale"] else "") for r in failed
        )
        raise ChildProcessError(
            f"{len(failed)} of {len(result['rows'])} rows failed (the table says why): {names}"
        )
