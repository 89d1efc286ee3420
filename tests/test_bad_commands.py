"""Bad input to ``esrt_lit.bench`` and ``esrt_lit.demo``: one ``error:`` line naming the culprit, exit
status non-zero, no traceback, nothing measured or trained for nothing.

The bench cases never run a real measurement: arguments are refused before any row, and the rows of
the exit-status cases come from a stand-in for :func:`esrt_lit.profiling.run_isolated`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from esrt_lit import demo
from esrt_lit.bench import cli as bench_cli
from esrt_lit.bench import measure as bench_measure
from train_helpers import run_command

TRACEBACK = "Traceback (most recent call last)"
BENCH = "esrt_lit.bench"


def _error_line(output: str) -> str:
    """The one ``error:`` line of a command's output (and no traceback)."""
    assert TRACEBACK not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.fixture
def no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any bench row would run."""

    def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("a bench row ran")

    monkeypatch.setattr(bench_cli, "run_bench", refuse)


@pytest.mark.parametrize("build", [None, "12.4"], ids=["built-without-cuda", "no-gpu"])
def test_bench_cuda_without_cuda(build: str | None, no_rows: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    code, output = run_command(BENCH, ["--device", "cuda", "--quick"])
    line = _error_line(output)
    assert code == 1
    assert line.startswith(
        f"error: --device cuda: CUDA is not available on this machine (torch {torch.__version__}, "
    )
    assert ("built without CUDA" if build is None else "CUDA 12.4 build, no GPU found") in line


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "checkpoint not found"),
        (b"not a checkpoint at all", "not a PyTorch checkpoint"),
    ],
    ids=["missing", "garbage"],
)
def test_bench_refuses_a_bad_ckpt_before_any_row(
    content: bytes | None, named: str, tmp_path: Path, no_rows: None
) -> None:
    ckpt = tmp_path / "x4.ckpt"
    if content is not None:
        ckpt.write_bytes(content)
    code, output = run_command(BENCH, ["--quick", "--device", "cpu", "--ckpt", str(ckpt)])
    line = _error_line(output)
    assert code == 1 and line.startswith(f"error: --ckpt {ckpt}: ") and named in line
    assert content is None or ckpt.read_bytes() == content


@pytest.mark.parametrize(
    "args",
    [
        ["--tile", "0"],
        ["--tile", "abc"],
        ["--overlap", "-1"],
        ["--tile", "32", "--overlap", "32"],
        ["--threads", "0"],
        ["--timeout", "nan"],
        ["--timeout", "-5"],
        ["--device", "tpu"],
    ],
    ids=[
        "tile-0",
        "tile-text",
        "overlap-negative",
        "overlap-tile",
        "threads-0",
        "timeout-nan",
        "timeout-neg",
        "tpu",
    ],
)
def test_bench_usage_errors(args: list[str], no_rows: None) -> None:
    code, output = run_command(BENCH, ["--quick", *args])
    assert code == 2 and TRACEBACK not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("python -m esrt_lit.bench: error: ")
    assert args[-2] in last and (args[-1] in last or "invalid choice" in last)


def _stand_in(ok: bool) -> Any:
    """A :func:`esrt_lit.profiling.run_isolated` that measures nothing: every row ``ok`` or failed."""

    def run_isolated(target: str, kwargs: dict[str, Any], **options: Any) -> dict[str, Any]:
        if not ok:
            return {"ok": False, "error": "RuntimeError: boom"}
        return {"ok": True, "seconds": 1.0, "peak_bytes": 1 << 20, "loss0": 0.5, "first_step_s": 2.0,
                "samples_per_s": 100.0}  # fmt: skip

    return run_isolated


@pytest.mark.parametrize("ok", [True, False], ids=["measured", "failed"])
def test_bench_exit_status_says_whether_every_row_was_measured(
    ok: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_measure, "run_isolated", _stand_in(ok))
    out = tmp_path / "bench.json"
    code, output = run_command(
        BENCH, ["--quick", "--device", "cpu", "--sections", "training", "--json", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]  # the figures are kept either way
    assert len(rows) == 3 and [r["failed"] for r in rows] == [not ok] * 3
    assert "| train step b16 p48 | default | 4 |" in output  # the table is printed either way
    if ok:
        assert code == 0 and "error:" not in output and "FAILED" not in output
        return
    line = _error_line(output)
    assert code == 1 and output.count("FAILED: RuntimeError: boom") == 3
    assert line == (
        "error: 3 of 3 rows failed (the table says why): train step b16 p48, default, x4; "
        "train step b16 p48, explicit, x4; data loader, num_workers=0, x4"
    )


def test_demo_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    assert demo.main([], out_root=blocker) == 1
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {blocker}/") and "cannot make the demo's output folder" in line
    assert blocker.read_text() == "user data"


def test_demo_failing_training_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The training sub-run refuses its argument: its error line becomes the demo's, and nothing else runs."""
    assert demo.main(["scale=5"], out_root=tmp_path / "demo") == 1
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("error: esrt_lit.train: scale=5 is not supported")
    (out,) = (tmp_path / "demo").iterdir()
    assert not list(out.glob("eval_*")) and not (out / "comparison.png").exists()
