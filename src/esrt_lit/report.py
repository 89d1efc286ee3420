"""Read an ablation sweep back: ``python -m esrt_lit.report DIR``.

``DIR`` is a Hydra multirun directory (each job folder holds ``.hydra/`` and the ``metrics.json``
that training writes) or a folder of W&B offline runs (``offline-run-*``, read without network).
Writes ``report.md`` (one row per run: the overridden knobs, parameters, MACs, latency, per benchmark
the last validation's PSNR/SSIM and, when the runs were tested, the best checkpoint's test PSNR/SSIM
(what training printed), best marked, the paper's figure beside the released configuration; a bicubic
row), ``report.csv`` and PNG plots of validation PSNR against parameters and against MACs, each run
labelled, bicubic's PSNR drawn and written beside its line.
When a W&B run is active the table is logged to it too.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from esrt_lit.files import atomic_output
from esrt_lit.metrics.collection import METRICS, PRIMARY, find_metric
from esrt_lit.metrics.tables import markdown_table, score_cell
from esrt_lit.models.official import RELEASED_KNOBS
from esrt_lit.reference import PAPER_ESRT
from esrt_lit.wandb_offline import read_offline_run

log = logging.getLogger(__name__)

METRIC_KEY = re.compile(r"^(?P<stage>val|test)/(?P<bench>[^/]+)/(?P<metric>psnr|ssim)$")
#: The score columns' names: ``Set5/val_psnr_last`` (the last validation) and ``Set5/test_psnr``.
SCORE_COLUMN = {"val": "{bench}/val_{metric}_last", "test": "{bench}/test_{metric}"}
#: Metrics the table shows as numbers (besides the scores :data:`METRIC_KEY` matches).
NUMBER_KEYS = re.compile(r"^(params|macs|macs_paper|latency_128_ms|bicubic/[^/]+/(psnr|ssim))$")
#: The released architecture; a run with these knobs gets the paper's figure beside its own.
RELEASED = {**RELEASED_KNOBS, "rsa": True}
OUTPUTS = ("report.md", "report.csv", "psnr_vs_params.png", "psnr_vs_macs.png")


@dataclass
class Run:
    """One finished run of a sweep; ``source`` is the file (or W&B run folder) its metrics come from."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        """Refuse a score, or another number the table shows, that is not a number."""
        for key, value in self.metrics.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not numeric and (METRIC_KEY.match(key) or NUMBER_KEYS.match(key)):
                raise ValueError(
                    f"{self.source or self.path}: {key}={value!r} is not a number; expected the value "
                    "training logs (a float, or null)"
                )

    @property
    def scale(self) -> int | None:
        scale = self.model.get("scale", self.metrics.get("scale"))
        return int(scale) if scale is not None else None

    def score(self, bench: str, metric: str, stage: str = "val") -> float | None:
        """The run's ``<stage>/<bench>/<metric>`` (the last validation's, or the best checkpoint's test)."""
        value = self.metrics.get(f"{stage}/{bench}/{metric}")
        return float(value) if value is not None else None

    @property
    def is_released(self) -> bool:
        return bool(self.model) and all(self.model.get(k, v) == v for k, v in RELEASED.items())


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def _hydra_run(metrics_file: Path) -> Run:
    run_dir = metrics_file.parent
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{metrics_file}: not valid JSON ({err}); expected the metrics.json written by training"
        ) from err
    if not isinstance(metrics, dict):
        raise ValueError(
            f"{metrics_file}: holds a JSON {type(metrics).__name__}; expected the object (key: value) "
            "that training writes"
        )
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    config_file = run_dir / ".hydra" / "config.yaml"
    overrides = (
        list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else metrics.get("overrides", [])
    )
    model = {}
    if config_file.is_file():
        cfg = OmegaConf.load(config_file)
        if "model" in cfg:
            model = OmegaConf.to_container(cfg.model, resolve=False)
            if not isinstance(model.get("scale"), int) and isinstance(cfg.get("scale"), int):
                model["scale"] = cfg.scale
    return Run(run_dir, _parse_overrides([str(o) for o in overrides]), metrics, model, metrics_file)


def _wandb_run(run_dir: Path) -> Run:
    offline = read_offline_run(run_dir)
    model = offline.config.get("model") if isinstance(offline.config.get("model"), dict) else {}
    if "scale" not in model and isinstance(offline.config.get("scale"), int):
        model = {**model, "scale": offline.config["scale"]}
    overrides = offline.summary.get("overrides") or offline.config.get("overrides") or []
    return Run(run_dir, _parse_overrides([str(o) for o in overrides]), dict(offline.summary), model, run_dir)


def collect_runs(root: str | Path) -> list[Run]:
    """Every finished run under ``root``: Hydra job folders with ``metrics.json`` first; W&B offline
    runs only where no Hydra job folder encloses them.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no run found under ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory not found: {root}")
    runs = [_hydra_run(f) for f in sorted(root.rglob("metrics.json"))]
    hydra_dirs = [r.path for r in runs]
    for wb in sorted(root.rglob("offline-run-*")):
        if wb.is_dir() and not any(d in wb.parents for d in hydra_dirs):
            runs.append(_wandb_run(wb))
    if not runs:
        raise ValueError(
            f"{root}: no run found (expected job folders with metrics.json, or W&B offline-run-* folders)"
        )
    return sorted(runs, key=lambda r: str(r.path))


def _knob_columns(runs: list[Run]) -> list[str]:
    """Overridden keys that differ between runs (all overridden keys when there is one run)."""
    keys = sorted(
        {k for r in runs for k in r.overrides} - {"hydra.job.num", "hydra.sweep.dir", "hydra.run.dir"}
    )
    varying = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
    return varying or keys


def _benchmarks(runs: list[Run], stage: str = "val") -> list[str]:
    """The benchmarks with ``stage`` scores in any run, in the order first met."""
    found: list[str] = []
    for run in runs:
        for key in run.metrics:
            match = METRIC_KEY.match(key)
            if match and match["stage"] == stage and match["bench"] not in found:
                found.append(match["bench"])
    return found


def _score_columns(runs: list[Run]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per benchmark, its score columns' ``(stage, metric)``: the last validation's scores, then the test
    scores when the runs have them; the validation benchmarks first, then those only tested."""
    val, test = _benchmarks(runs, "val"), _benchmarks(runs, "test")
    return [
        (
            bench,
            [
                (stage, metric)
                for stage in ("val", "test")
                if bench in {"val": val, "test": test}[stage]
                for metric in (m.name for m in METRICS)
            ],
        )
        for bench in [*val, *(b for b in test if b not in val)]
    ]


def _bicubic_score(runs: list[Run], bench: str, metric: str) -> float | None:
    """Bicubic's ``metric`` on ``bench`` as the runs recorded it (the same for every run of one scale)."""
    values = [r.metrics.get(f"bicubic/{bench}/{metric}") for r in runs]
    return next((float(v) for v in values if v is not None), None)


def build_table(runs: list[Run]) -> tuple[list[str], list[list[Any]], dict[str, int]]:
    """Columns, rows (raw values: a ``bicubic`` row first when the runs recorded bicubic's scores, then
    one per run) and, per score column (``Set5/val_psnr_last``, ``Set5/test_ssim`` ...), the index of
    the run row with the best value among the finite ones (a NaN or infinite score is never the best;
    bicubic, the reference, never is)."""
    knobs, groups = _knob_columns(runs), _score_columns(runs)
    columns = ["run", *knobs, "params", "macs_G", "macs_paper_G", "latency_128_ms"]
    for bench, scores in groups:
        columns += [SCORE_COLUMN[stage].format(bench=bench, metric=metric) for stage, metric in scores]
        columns.append(f"{bench}/paper")
    bicubic: list[Any] = ["bicubic", *("" for _ in knobs), None, None, None, None]
    for bench, scores in groups:  # bicubic's scores cover whole sets: the same for validation and test
        bicubic += [*(_bicubic_score(runs, bench, metric) for _, metric in scores), ""]
    rows = [bicubic] if any(isinstance(v, float) for v in bicubic) else []
    offset = len(rows)
    for run in runs:
        m = run.metrics
        row: list[Any] = [run.path.name, *(run.overrides.get(k, "") for k in knobs)]
        row += [
            m.get("params"),
            m["macs"] / 1e9 if m.get("macs") is not None else None,
            m["macs_paper"] / 1e9 if m.get("macs_paper") is not None else None,
            m.get("latency_128_ms"),
        ]
        for bench, scores in groups:
            paper = PAPER_ESRT.get(run.scale or 0, {}).get(bench) if run.is_released else None
            row += [
                *(run.score(bench, metric, stage) for stage, metric in scores),
                score_cell(*paper) if paper else "",
            ]
        rows.append(row)
    best = {}
    for bench, scores in groups:
        for stage, metric in scores:
            values = [(run.score(bench, metric, stage), i) for i, run in enumerate(runs)]
            scored = [(value, i) for value, i in values if value is not None and math.isfinite(value)]
            if scored:  # the first of ties
                column = SCORE_COLUMN[stage].format(bench=bench, metric=metric)
                pick = max if find_metric(metric).higher_is_better else min  # the metric's direction
                best[column] = offset + pick(scored, key=lambda t: t[0])[1]
    return columns, rows, best


def _fmt(value: Any, column: str) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        metric = next((m for m in METRICS if f"_{m.name}" in column), None)
        if metric is not None:
            return format(value, metric.spec)
        if column.endswith(("_G", "_ms")):
            return f"{value:.2f}"
    if column == "params" and isinstance(value, int):
        return f"{value:,}"
    return str(value)


def to_markdown(
    columns: list[str], rows: list[list[Any]], best: dict[str, int], title: str, lr_hw: str | None = None
) -> str:
    """Markdown table; the best PSNR and the best SSIM of each score column in bold; ``lr_hw``: the LR
    input size of the MACs (:func:`macs_input`)."""
    cells = [
        [
            f"**{_fmt(v, col)}**" if best.get(col) == i else _fmt(v, col)
            for col, v in zip(columns, row, strict=True)
        ]
        for i, row in enumerate(rows)
    ]
    notes = [
        "Bold: the best PSNR and the best SSIM of each column. `val_*_last`: the last validation's scores (what "
        "the plots show); `test_*`: the best checkpoint's test scores (what training printed). `bicubic`: the "
        "reference, on the same images. `paper`: the paper's ESRT figure, shown for runs with the released knobs.",
        f"MACs are exact multiply-adds (attention included) and the paper-style count (convolutions and linears "
        f"only), in G, for a {lr_hw or '(size not recorded)'} LR input.",
    ]
    return "\n".join([f"# {title}", "", markdown_table(columns, cells), "", *notes]) + "\n"


def _finite(value: Any) -> bool:
    """Whether a cell holds a plottable number (not missing, NaN or infinite)."""
    return value is not None and math.isfinite(value)


def format_count(value: float, _position: object = None) -> str:
    """A parameter count as an axis label: ``0.68M``, ``27.0K``, ``512`` (a matplotlib tick formatter)."""
    if abs(value) >= 1e5:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}K"
    return f"{value:.0f}"


def macs_input(runs: list[Run]) -> str | None:
    """The LR input size the runs' MACs were counted for (``macs_lr_hw`` in metrics.json), e.g. ``128x128``."""
    size = next((r.metrics.get("macs_lr_hw") for r in runs if r.metrics.get("macs_lr_hw")), None)
    return "x".join(str(int(v)) for v in size) if isinstance(size, list | tuple) else None


def plot_figure(
    runs: list[Run], rows: list[list[Any]], columns: list[str], x_col: str, x_label: str, title: str
) -> Any:
    """The figure of validation PSNR (last validation) against ``x_col``: each run labelled with its
    knobs, bicubic's PSNR a dashed line with its value written beside it; parameter counts as ``0.68M``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    xi = columns.index(x_col)
    knobs = columns[1 : columns.index("params")]
    for bench in _benchmarks(runs):
        yi = columns.index(SCORE_COLUMN["val"].format(bench=bench, metric=PRIMARY.name))
        pts = [(row[xi], row[yi], row) for row in rows if _finite(row[xi]) and _finite(row[yi])]
        if not pts:
            continue
        (line,) = ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], "o", label=f"runs, last validation PSNR on {bench}"
        )
        for x, y, row in pts:
            label = (
                ", ".join(f"{k.removeprefix('model.')}={row[1 + j]}" for j, k in enumerate(knobs)) or row[0]
            )
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        bicubic = _bicubic_score(runs, bench, PRIMARY.name)
        if bicubic is not None:
            text = f"bicubic on {bench}: {bicubic:.2f} dB"
            ax.axhline(bicubic, color=line.get_color(), linestyle="--", linewidth=1, label=text)
            ax.annotate(
                text,
                (1.0, bicubic),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(-4, 3),
                ha="right",
                fontsize=7,
                color=line.get_color(),
            )
    if x_col == "params":
        ax.xaxis.set_major_formatter(FuncFormatter(format_count))
    ax.margins(x=0.15, y=0.1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_label)
    ax.set_ylabel("PSNR (dB, Y)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot(
    runs: list[Run],
    rows: list[list[Any]],
    columns: list[str],
    x_col: str,
    x_label: str,
    path: Path,
    title: str,
) -> None:
    import matplotlib.pyplot as plt

    fig = plot_figure(runs, rows, columns, x_col, x_label, title)
    with atomic_output(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_report(
    root: str | Path, out_dir: str | Path | None = None, overwrite: bool = False
) -> dict[str, Path]:
    """Write report.md, report.csv and the two plots for the sweep under ``root``.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False (names the file).
    """
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root
    paths = {name: out / name for name in OUTPUTS}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"report files exist: {', '.join(existing)}; pass --overwrite to replace them")
    runs = collect_runs(root)
    if not _benchmarks(runs):
        raise ValueError(
            f"{root}: none of its {len(runs)} run(s) has validation scores (val/<set>/psnr in metrics.json), which "
            "the report compares; did the runs end before their first validation?"
        )
    columns, rows, best = build_table(runs)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(paths["report.md"]) as tmp:
        tmp.write_text(to_markdown(columns, rows, best, f"Ablation report: {root}", macs_input(runs)))
    with atomic_output(paths["report.csv"]) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    scale = next((r.scale for r in runs if r.scale), None)
    what = f"x{scale} " if scale else ""
    name = Path(root).resolve().name
    _plot(
        runs,
        rows,
        columns,
        "params",
        "parameters",
        paths["psnr_vs_params.png"],
        f"{name}: {what}PSNR against parameters",
    )
    _plot(
        runs,
        rows,
        columns,
        "macs_G",
        f"exact MACs (G) for a {macs_input(runs) or '(size not recorded)'} LR input",
        paths["psnr_vs_macs.png"],
        f"{name}: {what}PSNR against MACs",
    )
    _log_to_wandb(columns, rows)
    return paths


def _log_to_wandb(columns: list[str], rows: list[list[Any]]) -> None:
    import wandb

    if wandb.run is not None:
        wandb.run.log(
            {"ablation/report": wandb.Table(columns=columns, data=[[str(v) for v in r] for r in rows])}
        )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m esrt_lit.report DIR [--out DIR] [--overwrite]``; returns the exit status."""
    from esrt_lit.cli import run_command

    parser = argparse.ArgumentParser(prog="python -m esrt_lit.report", description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="Hydra multirun directory or folder of W&B offline runs")
    parser.add_argument("--out", default=None, help="output folder (default: DIR)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    args = parser.parse_args(argv)

    def work() -> None:
        paths = write_report(args.dir, args.out, args.overwrite)
        print(paths["report.md"].read_text())  # noqa: T201 - the CLI's product is this table
        for name, path in paths.items():
            log.info("%s: %s", name, path)

    return run_command(work)


if __name__ == "__main__":
    raise SystemExit(main())
