"""The one Markdown table writer of the commands' results (train, eval, report, bench)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["markdown_table", "score_cell", "scores_table"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: ``header`` and one line per row, cells as given (``|`` in a cell escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def score_cell(psnr: float | None, ssim: float | None) -> str:
    """A ``PSNR/SSIM`` cell as the paper prints it (``33.66/0.9299``), ``-`` when a score is missing."""
    return f"{psnr:.2f}/{ssim:.4f}" if psnr is not None and ssim is not None else "-"


def scores_table(metrics: Mapping[str, Any], stage: str = "test", model_name: str = "model") -> str:
    """``bicubic`` / ``model`` × benchmark with ``PSNR/SSIM`` cells, from a run's metrics.

    Reads ``{stage}/<set>/psnr|ssim`` and ``bicubic/<set>/psnr|ssim``; sets in the paper's column order.
    """
    from esrt_lit.data.sources import paper_order

    names = sorted(
        (k.split("/")[1] for k in metrics if k.startswith(f"{stage}/") and k.endswith("/psnr")),
        key=paper_order,
    )
    if not names:
        return "(no scores)"

    def cell(prefix: str, name: str) -> str:
        return score_cell(metrics.get(f"{prefix}/{name}/psnr"), metrics.get(f"{prefix}/{name}/ssim"))

    rows = [["bicubic", *(cell("bicubic", n) for n in names)], [model_name, *(cell(stage, n) for n in names)]]
    return markdown_table(["model", *names], rows)
