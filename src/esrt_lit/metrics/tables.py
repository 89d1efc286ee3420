"""Markdown tables of the commands' results (train, eval, report, bench, demo), benchmarks in the paper's column order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from esrt_lit.metrics.collection import PRIMARY, format_scores

__all__ = ["PAPER_ORDER", "markdown_table", "paper_order", "score_cell", "scores_table"]

#: Column order of the paper's tables; other benchmarks follow alphabetically.
PAPER_ORDER: tuple[str, ...] = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109")


def paper_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's benchmarks in its column order, then the others by name."""
    return (PAPER_ORDER.index(name) if name in PAPER_ORDER else len(PAPER_ORDER), name)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: ``header`` and one line per row, cells as given (``|`` in a cell escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def score_cell(psnr: float | None, ssim: float | None) -> str:
    """A ``PSNR/SSIM`` cell from two values (:func:`~esrt_lit.metrics.format_scores`, which formats
    every metric of :data:`~esrt_lit.metrics.METRICS` from a mapping)."""
    return format_scores({"psnr": psnr, "ssim": ssim})


def scores_table(metrics: Mapping[str, Any], stage: str = "test", model_name: str = "model") -> str:
    """``bicubic`` / ``model`` × benchmark with ``PSNR/SSIM`` cells, from a run's metrics.

    Reads ``{stage}/<set>/<metric>`` and ``bicubic/<set>/<metric>`` of every metric of
    :data:`~esrt_lit.metrics.METRICS`; sets in the paper's column order.
    """
    names = sorted(
        (k.split("/")[1] for k in metrics if k.startswith(f"{stage}/") and k.endswith(f"/{PRIMARY.name}")),
        key=paper_order,
    )
    if not names:
        return "(no scores)"

    def cell(prefix: str, name: str) -> str:
        return format_scores(metrics, f"{prefix}/{name}/")

    rows = [["bicubic", *(cell("bicubic", n) for n in names)], [model_name, *(cell(stage, n) for n in names)]]
    return markdown_table(["model", *names], rows)
