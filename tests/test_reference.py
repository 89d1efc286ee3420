"""The paper's numbers in the product (``esrt_lit.reference``) are those of the reference notes
(``shared/reference/ESRT.md``), cell by cell, so that they cannot drift apart again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from esrt_lit.reference import BENCHMARKS, PAPER_BICUBIC, PAPER_ESRT, PORT_PARAMS


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of ``text``: rows of stripped cells, header first, the rule dropped."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _scores(table: list[list[str]]) -> dict[int, dict[str, tuple[float, float]]]:
    """``{scale: {benchmark: (psnr, ssim)}}`` of a table whose rows start with ``x2``/``x3``/``x4``."""
    header, *rows = table
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for row in rows:
        scale = int(row[0].removeprefix("x"))
        for name, cell in zip(header, row, strict=True):
            if name in BENCHMARKS:
                psnr, ssim = re.fullmatch(
                    r"([\d.]+)/([\d.]+)[*†]*", cell
                ).groups()  # marks: secondary, recalled
                out.setdefault(scale, {})[name] = (float(psnr), float(ssim))
    return out


@pytest.fixture(scope="module")
def notes(shared: Path) -> str:
    return (shared / "reference" / "ESRT.md").read_text()


def test_paper_numbers_match_the_reference_notes(notes: str) -> None:
    published = notes[notes.index("## Published numbers") :]
    esrt, bicubic = [t for t in _tables(published) if t[0][0] == "scale"][:2]
    assert "params" in esrt[0] and "params" not in bicubic[0]
    assert _scores(esrt) == PAPER_ESRT
    assert _scores(bicubic) == PAPER_BICUBIC


def test_port_parameter_counts_match_the_reference_notes(notes: str) -> None:
    counts = re.search(r"a\s+port\s+without\s+them\s+has\s+\*\*([\d,]+) · ([\d,]+) · ([\d,]+)\*\*", notes)
    assert counts is not None
    assert [int(c.replace(",", "")) for c in counts.groups()] == [PORT_PARAMS[s] for s in (2, 3, 4)]
