"""The bench's rows and their one Markdown table (:func:`esrt_lit.metrics.tables.markdown_table`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from esrt_lit.metrics.tables import markdown_table

__all__ = ["Row", "fill", "format_table", "ratios"]

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One line of the table (None = not applicable); ``note`` carries failures and extra figures,
    ``failed`` whether its measurement failed."""

    what: str
    path: str
    scale: int | None = None
    lr_hw: tuple[int, int] | None = None
    macs: int | None = None
    macs_paper: int | None = None
    seconds: float | None = None
    peak_bytes: int | None = None
    ratio_time: float | None = None
    ratio_peak: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    @property
    def gflops(self) -> float | None:
        if self.macs is None or not self.seconds:
            return None
        return 2 * self.macs / self.seconds / 1e9


def fill(row: Row, result: dict[str, Any]) -> Row:
    """``row`` with the time and peak memory of a measurement's ``result``, or marked failed with its error."""
    if result.get("ok"):
        row.seconds = result.get("seconds")
        row.peak_bytes = result.get("peak_bytes")
    else:
        row.failed = True
        row.note = (row.note + " " if row.note else "") + f"FAILED: {result.get('error')}"
    log.info("row: %s", format_table([row]).splitlines()[-1])  # kept in the log if a later row hangs
    return row


def ratios(default: Row, explicit: Row) -> None:
    """Set ``default``'s ``explicit / default`` ratios of time and peak memory where both were measured."""
    if default.seconds and explicit.seconds:
        default.ratio_time = explicit.seconds / default.seconds
    if default.peak_bytes and explicit.peak_bytes:
        default.ratio_peak = explicit.peak_bytes / default.peak_bytes


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table."""
    header = [
        "measurement", "path", "x", "LR h×w", "exact GMAC", "paper GMAC", "time s", "peak MB", "GFLOP/s",
        "explicit/default time", "explicit/default peak", "note",
    ]  # fmt: skip
    cells = [
        [
            r.what,
            r.path,
            _fmt(r.scale, "d"),
            f"{r.lr_hw[0]}×{r.lr_hw[1]}" if r.lr_hw else "",
            _fmt(r.macs and r.macs / 1e9, ".1f"),
            _fmt(r.macs_paper and r.macs_paper / 1e9, ".1f"),
            _fmt(r.seconds, ".3f"),
            _fmt(r.peak_bytes and r.peak_bytes / 2**20, ".0f"),
            _fmt(r.gflops, ".0f"),
            _fmt(r.ratio_time, ".1f"),
            _fmt(r.ratio_peak, ".1f"),
            r.note,
        ]
        for r in rows
    ]
    return markdown_table(header, cells)
