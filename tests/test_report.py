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
    assert "| 1 | 3 | 751,755 | 33.00 | 13.00 | 300.00 | **31.50** | **0.8315** | 32.19/0.8947 |" in rows[1]
    assert "32.19" not in rows[0]  # paper figure only beside the released configuration
    with paths["report.csv"].open() as f:
        table = list(csv.DictReader(f))
    assert [r["model.n_hpb"] for r in table] == ["1", "3", "2"]
    assert [float(r["Set5/psnr"]) for r in table] == [30.25, 31.5, 30.75]
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
    assert best == {"Set5/psnr": 1, "Set5/ssim": 1, "Set14/psnr": 1, "Set14/ssim": 1}
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
    assert "Set5/psnr" not in best and best["Set14/psnr"] == 0


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
