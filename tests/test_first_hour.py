"""A new user's first hour (issue 20): what the default training command prints, the debug modes with a
logger of the user's choosing, and the speed figures the docs promise."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from esrt_lit.cli import RankZeroFilter, process_rank
from esrt_lit.configs import register_configs
from esrt_lit.train import CONF_DIR
from train_helpers import TINY_MODEL, assert_ok, make_tiny_images, run_cli

register_configs()

TRAIN = "esrt_lit.train"
#: Warning lines a default run may print: none.
ALLOWED_WARNINGS: tuple[str, ...] = ()


def _data_overrides(data: dict[str, Path]) -> list[str]:
    return [
        "scale=2",
        *TINY_MODEL,
        f"data.train=[{{kind:folder,path:'{data['train']}'}}]",
        f"data.val=[{{kind:folder,name:tiny,path:'{data['val']}'}}]",
        "data.patch_size=12",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
    ]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """The default command on tiny data: W&B (offline, not silenced), the rich summary and progress bar."""
    root = tmp_path_factory.mktemp("first_hour")
    data = make_tiny_images(root / "data")
    run = root / "run"
    result = run_cli(
        TRAIN,
        *_data_overrides(data),
        "data.iters_per_epoch=5",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        WANDB_SILENT="false",
    )
    assert_ok(result)
    return result, run


def test_default_run_prints_no_warning(default_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    result, _ = default_run
    output = result.stdout + result.stderr
    warnings = [
        line
        for line in output.splitlines()
        if re.search(r"warning", line, re.IGNORECASE) and not line.startswith(ALLOWED_WARNINGS or ("\0",))
    ]
    assert warnings == [], "\n".join(warnings)
    for noise in ("LeafSpec", "anonymous setting", "litlogger", "Skipping setting a default `ModelSummary`"):
        assert noise not in output
    assert "Total FLOPs: 0 " not in output and "Total FLOPs" in output  # a real count, for one patch


def test_default_run_records_its_speed(default_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, run = default_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 10
    assert metrics["speed/from_step"] == 5.0  # half of a run shorter than 2 * warmup_steps
    assert metrics["speed/it_per_s"] > 0 and metrics["speed/samples_per_s"] == pytest.approx(
        4 * metrics["speed/it_per_s"]
    )


def test_debug_mode_keeps_library_debug_lines_out(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    result = run_cli(
        TRAIN,
        "debug=limit",
        *_data_overrides(data),
        "data.iters_per_epoch=2",
        "extras.print_config=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_ok(result)
    output = result.stdout + result.stderr
    assert "STREAM b'IDAT'" not in output
    log_file = (tmp_path / "run" / "debug.log").read_text()
    assert "STREAM b'IDAT'" not in log_file and "[esrt_lit." in log_file


@pytest.mark.parametrize(("logger", "expected"), [(None, set()), ("wandb", {"wandb"}), ("csv", {"csv"})])
def test_debug_modes_keep_the_chosen_logger(logger: str | None, expected: set[str]) -> None:
    overrides = ["debug=limit", *([f"logger={logger}"] if logger else [])]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert set(cfg.get("logger") or {}) == expected
    assert cfg.hydra.job_logging.loggers.esrt_lit.level == "DEBUG"
    assert cfg.hydra.job_logging.root.level == "INFO"


def test_console_shows_info_lines_of_the_first_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_utilities.core.rank_zero import rank_zero_only

    def record(level: int) -> logging.LogRecord:
        return logging.LogRecord("esrt_lit.x", level, __file__, 1, "line", None, None)

    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    assert process_rank() == 1
    assert not RankZeroFilter().filter(record(logging.INFO))
    assert RankZeroFilter().filter(record(logging.WARNING))
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert RankZeroFilter().filter(record(logging.INFO))


def test_sweep_prints_each_jobs_overrides_not_its_config(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    result = run_cli(
        TRAIN,
        "-m",
        *_data_overrides(data),
        "data.iters_per_epoch=1",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        "callbacks=none",
        "extras.print_config=true",
        "model.n_feats=8,16",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert_ok(result)
    output = result.stdout + result.stderr
    assert "_target_" not in output  # no config dump
    assert re.search(r"job 0: .*model\.n_feats=8", output) and re.search(
        r"job 1: .*model\.n_feats=16", output
    )


def test_demo_panel_shows_three_large_crops_with_readable_labels() -> None:
    import numpy as np
    from PIL import ImageFont

    from esrt_lit.demo import comparison_panel, detailed_crops, font

    rng = np.random.default_rng(0)
    hr = np.full((300, 448, 3), 128, np.uint8)
    hr[150:300, 0:150] = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)  # the detailed corner
    boxes = detailed_crops(hr, 128, 3)
    assert len(boxes) == 3 and boxes[0][0] >= 150 - 32 and boxes[0][1] <= 32
    assert all(abs(a[0] - b[0]) >= 128 or abs(a[1] - b[1]) >= 128 for a in boxes for b in boxes if a != b)
    panel = comparison_panel(
        hr, [("ESRT, shipped x4 weights", hr), ("ESRT, this demo's 100-step run", hr)], hr, 4
    )
    assert panel.width == 4 * 256 + 3 * 6 and panel.height > 3 * 256
    top, left = boxes[0]
    zoomed = np.kron(hr[top : top + 128, left : left + 128], np.ones((2, 2, 1), np.uint8))
    pixels = np.asarray(panel)
    assert any(np.array_equal(pixels[y : y + 256, :256], zoomed) for y in range(panel.height - 256))
    assert isinstance(font(14), ImageFont.FreeTypeFont)
    assert font(14).getlength("this demo") > font(14).getlength("thisdemo")  # spaces take room
