"""The sweep report reads job folders and W&B offline runs back into a table, a CSV and plots."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from esrt_lit.report import build_table, collect_runs, main, write_report


def _job(root: Path, num: int, n_hpb: int, psnr: float, params: int, scale: int = 4) -> Path:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- model.n_hpb={n_hpb}\n- trainer.max_steps=5\n")
    knobs = {"scale": "${scale}", "n_feats": 32, "n_hpb": n_hpb, "n_et": 1, "et_heads": 8, "attn_splits": 4}
    (job / ".hydra" / "config.yaml").write_text(json.dumps({"scale": scale, "model": knobs}))
    metrics = {
        "params": params,
        "macs": 30e9 + n_hpb * 1e9,
        "macs_paper": 10e9 + n_hpb * 1e9,
        "latency_128_ms": 100.0 * n_hpb,
        "val/Set5/psnr": psnr,
        "val/Set5/ssim": 0.8 + psnr / 1000,
        "val/Set14/psnr": psnr - 2,
        "val/Set14/ssim": 0.7,
    }
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    _job(tmp_path, 0, 1, 30.25, 300_000)
    _job(tmp_path, 1, 3, 31.5, 751_755)
    _job(tmp_path, 2, 2, 30.75, 500_000)
    return tmp_path


def test_report_table_csv_plots(sweep: Path) -> None:
    paths = write_report(sweep)
    md = paths["report.md"].read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    header, *rows = lines
    assert "model.n_hpb" in header and "trainer.max_steps" not in header  # only the knobs that vary
    assert len(rows) == 3
    assert "Set5/val_psnr_last" in header and "Set5/val_ssim_last" in header
    assert "| 1 | 3 | 751,755 | 33.00 | 13.00 | 300.00 | **31.50** | **0.8315** | 32.19/0.8947 |" in rows[1]
    assert "32.19" not in rows[0]  # paper figure only beside the released configuration
    with paths["report.csv"].open() as f:
        table = list(csv.DictReader(f))
    assert [r["model.n_hpb"] for r in table] == ["1", "3", "2"]
    assert [float(r["Set5/val_psnr_last"]) for r in table] == [30.25, 31.5, 30.75]
    for name in ("psnr_vs_params.png", "psnr_vs_macs.png"):
        with Image.open(paths[name]) as img:
            assert img.format == "PNG" and img.size == (700, 450)


def test_report_refuses_to_overwrite(sweep: Path) -> None:
    write_report(sweep)
    with pytest.raises(FileExistsError, match=r"report\.md.*--overwrite"):
        write_report(sweep)
    write_report(sweep, overwrite=True)


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sweep directory not found"):
        collect_runs(tmp_path / "missing")
    with pytest.raises(ValueError, match="no run found"):
        collect_runs(tmp_path)
    _job(tmp_path, 0, 1, 30.0, 1).joinpath("metrics.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"metrics\.json: not valid JSON"):
        collect_runs(tmp_path)


def test_report_reads_wandb_offline_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = """
import wandb
for n_hpb, psnr in ((1, 29.5), (2, 30.5)):
    run = wandb.init(project="esrt-test", group="ablation_hpb", dir=".", reinit="create_new",
                     config={"scale": 2, "model": {"n_hpb": n_hpb}})
    run.summary.update({"params": 1000 * n_hpb, "macs": 1e9 * n_hpb, "val/Set5/psnr": psnr,
                        "val/Set5/ssim": 0.9, "overrides": [f"model.n_hpb={n_hpb}"]})
    run.finish()
"""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=180)
    main([str(tmp_path / "wandb"), "--out", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert "| model.n_hpb |" in out
    assert "**30.50**" in out and "29.50" in out


def _rewrite(job: Path, **metrics: object) -> None:
    """Set ``metrics`` (keys with ``__`` for ``/``) in the job's metrics.json."""
    path = job / "metrics.json"
    values = json.loads(path.read_text())
    values.update({k.replace("__", "/"): v for k, v in metrics.items()})
    path.write_text(json.dumps(values))  # NaN and Infinity as Python's json writes them


def test_report_never_bolds_a_score_that_is_not_finite(sweep: Path) -> None:
    _rewrite(sweep / "0", val__Set5__psnr=float("nan"), val__Set14__ssim=float("inf"))
    _rewrite(sweep / "2", val__Set5__ssim=float("nan"))
    _, _, best = build_table(collect_runs(sweep))
    assert best == {
        "Set5/val_psnr_last": 1,
        "Set5/val_ssim_last": 1,
        "Set14/val_psnr_last": 1,
        "Set14/val_ssim_last": 1,
    }
    rows = [
        line for line in write_report(sweep)["report.md"].read_text().splitlines() if line.startswith("| 0 |")
    ]
    assert (
        "| nan |" in rows[0]
        and "| inf |" in rows[0]
        and "**nan**" not in rows[0]
        and "**inf**" not in rows[0]
    )


def test_report_nan_everywhere_bolds_nothing(tmp_path: Path) -> None:
    _rewrite(_job(tmp_path, 0, 1, 30.0, 1), val__Set5__psnr=float("nan"))
    _, _, best = build_table(collect_runs(tmp_path))
    assert "Set5/val_psnr_last" not in best and best["Set14/val_psnr_last"] == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [("val/Set5/psnr", "31.2"), ("val/Set14/ssim", [0.9]), ("params", "many"), ("val/Set5/psnr", True)],
)
def test_report_refuses_scores_that_are_not_numbers(
    key: str, value: object, sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite(sweep / "1", **{key.replace("/", "__"): value})
    assert main([str(sweep)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"error: {sweep / '1' / 'metrics.json'}: {key}={value!r} is not a number")
    assert not (sweep / "report.md").exists()


def test_report_refuses_metrics_that_are_no_object(tmp_path: Path) -> None:
    _job(tmp_path, 0, 1, 30.0, 1).joinpath("metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"metrics\.json: holds a JSON list; expected the object"):
        collect_runs(tmp_path)


def test_report_labels_validation_and_test_scores(sweep: Path) -> None:
    for num, test_psnr in ((0, 29.0), (1, 30.5), (2, 30.0)):
        _rewrite(sweep / str(num), test__Set5__psnr=test_psnr, test__Set5__ssim=0.85)
    columns, rows, best = build_table(collect_runs(sweep))
    i = columns.index("Set5/val_psnr_last")
    assert columns[i : i + 5] == [
        "Set5/val_psnr_last",
        "Set5/val_ssim_last",
        "Set5/test_psnr",
        "Set5/test_ssim",
        "Set5/paper",
    ]
    assert [row[i + 2] for row in rows] == [29.0, 30.5, 30.0] and best["Set5/test_psnr"] == 1
    md = write_report(sweep)["report.md"].read_text()
    assert "`val_*_last`: the last validation's scores" in md and "`test_*`: the best checkpoint's" in md


def test_report_has_a_bicubic_row(sweep: Path) -> None:
    for num in range(3):
        _rewrite(
            sweep / str(num), bicubic__Set5__psnr=28.5, bicubic__Set5__ssim=0.81, bicubic__Set14__psnr=26.0
        )
    columns, rows, best = build_table(collect_runs(sweep))
    assert rows[0][0] == "bicubic" and len(rows) == 4
    assert rows[0][columns.index("Set5/val_psnr_last")] == 28.5 and rows[0][columns.index("params")] is None
    assert best["Set5/val_psnr_last"] == 2  # the run's row, after bicubic's
    md = write_report(sweep)["report.md"].read_text()
    assert "| bicubic | – | – | – | – | – | 28.50 | 0.8100 |" in md
    assert "**31.50**" in md


def test_report_plots_label_their_axes_and_bicubic(sweep: Path) -> None:
    from esrt_lit.report import format_count, macs_input, plot_figure

    for num in range(3):
        _rewrite(sweep / str(num), bicubic__Set5__psnr=28.5, macs_lr_hw=[128, 128])
    runs = collect_runs(sweep)
    columns, rows, _ = build_table(runs)
    assert [format_count(v) for v in (680_000, 1_234_567, 27_000, 512)] == ["0.68M", "1.23M", "27.0K", "512"]
    assert macs_input(runs) == "128x128"
    fig = plot_figure(runs, rows, columns, "params", "parameters", "t")
    ax = fig.axes[0]
    assert ax.xaxis.get_major_formatter()(751_755, 0) == "0.75M"
    assert "bicubic on Set5: 28.50 dB" in [t.get_text() for t in ax.texts]
    paths = write_report(sweep)
    assert "for a 128x128 LR input" in paths["report.md"].read_text()
