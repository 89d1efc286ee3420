"""Signals and concurrency: SIGTERM/SIGINT end a run resumably (checkpoint, ``metrics.json``, one line,
non-zero exit), a sweep reports its interrupted job, a run folder in use is refused, and a run started
from another run's checkpoint tests its own best checkpoint, not the other run's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from esrt_lit.paths import PROJECT_ROOT
from esrt_lit.runs import LOCK_FILE, lock_folder
from train_helpers import assert_ok, cli_env, run_cli, run_command, tiny_overrides

TRAIN = "esrt_lit.train"


def _quick(data: dict[str, Path], epochs: int, steps: int) -> list[str]:
    """A deterministic tiny run without logger or test, writing ``last.ckpt`` every 2 steps."""
    return [
        *tiny_overrides(data, epochs=epochs, steps=steps),
        "trainer.deterministic=true",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "logger=none",
        "test=false",
    ]


def _step(path: Path) -> int | None:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None


def _signal_when_training(args: list[str], ckpt: Path, signum: int) -> subprocess.CompletedProcess:
    """Start ``python -m esrt_lit.train args``, send ``signum`` once ``ckpt`` holds a step, wait for the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", TRAIN, *args],
        cwd=PROJECT_ROOT,
        env=cli_env(HYDRA_FULL_ERROR="0"),  # the user's view: one line, no traceback
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if _step(ckpt):
            os.kill(proc.pid, signum)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_records_it_and_resumes_exactly(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM mid-training: exit 143, one line, last.ckpt at the step reached, metrics.json says so;
    resume_dir= continues from that step to the weights of an uninterrupted run, bit for bit."""
    args = _quick(tiny_data, epochs=2, steps=20)
    run = tmp_path / "run"
    result = _signal_when_training(
        [f"hydra.run.dir={run}", *args], run / "checkpoints" / "last.ckpt", signal.SIGTERM
    )
    assert result.returncode == 143, result.stderr[-3000:]
    line = _last_line(result)
    match = re.fullmatch(
        rf"error: interrupted by SIGTERM at step (\d+); resume with: python -m esrt_lit.train resume_dir={run}",
        line,
    )
    assert match, line
    step = int(match.group(1))
    assert 0 < step < 40, "the run ended before the signal"
    assert _step(run / "checkpoints" / "last.ckpt") == step
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] == f"SIGTERM at step {step}"
    assert metrics["global_step"] == step
    assert metrics["last_ckpt"] == str(run / "checkpoints" / "last.ckpt")
    assert "test_ckpt" not in metrics

    assert_ok(run_cli(TRAIN, f"resume_dir={run}", *args))
    resumed = json.loads((run / "metrics.json").read_text())
    assert "interrupted" not in resumed
    assert resumed["global_step"] == 40
    assert step + 1 <= resumed["speed/from_step"] < 40  # measured over the resumed steps only

    assert_ok(run_cli(TRAIN, f"hydra.run.dir={tmp_path / 'full'}", *args))
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == full["global_step"] == 40
    assert all(torch.equal(full["state_dict"][k], last["state_dict"][k]) for k in full["state_dict"])


@pytest.mark.slow
def test_sigint_in_a_sweep_fails_the_job_and_stops_the_sweep(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """Ctrl+C in job 0 of a two-job sweep: its FAILED file and metrics.json say so, job 1 does not run,
    the sweep lists the failed job and exits 130."""
    args = ["-m", f"hydra.sweep.dir={tmp_path}", "model.n_hpb=1,2", *_quick(tiny_data, epochs=1, steps=60)]
    job = tmp_path / "0"
    result = _signal_when_training(args, job / "checkpoints" / "last.ckpt", signal.SIGINT)
    assert result.returncode == 130, result.stderr[-3000:]
    failed = (job / "FAILED").read_text().strip()
    assert re.fullmatch(
        rf"interrupted by SIGINT at step \d+; resume with: python -m esrt_lit.train resume_dir={job}", failed
    ), failed
    assert f"error: {job}: {failed}" in result.stderr
    assert _last_line(result) == (
        f"error: 1 of 1 jobs of the sweep in {tmp_path} failed; the sweep was interrupted, its other jobs did not run"
    )
    assert json.loads((job / "metrics.json").read_text())["interrupted"].startswith("SIGINT at step ")
    assert not (tmp_path / "1").exists()


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (as a running run does) until it is killed."""
    code = (
        "import sys, time; from pathlib import Path; from esrt_lit.runs import lock_folder; "
        "held = lock_folder(Path(sys.argv[1]), 'x'); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_folder_in_use_is_refused_and_freed_when_its_run_dies(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """A second run into a folder a running run holds is refused before writing anything; once the holder
    is killed (no clean exit), the folder is free."""
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        code, output = run_command(TRAIN, [f"hydra.run.dir={run}", *_quick(tiny_data, 1, 2)])
        assert code == 1
        assert f"error: hydra.run.dir={run} is in use by another run (pid {holder.pid}); " in output
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    lock_folder(run, "free").close()  # the lock died with its process


def test_resume_dir_in_use_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with lock_folder(run, "test"):
        code, output = run_command(TRAIN, [f"resume_dir={run}"])
    assert code == 1
    assert f"error: resume_dir={run} is in use by another run (pid {os.getpid()}); " in output


def test_a_sweep_folder_in_use_is_refused(tmp_path: Path) -> None:
    with lock_folder(tmp_path, "test"):
        code, output = run_command(TRAIN, ["-m", f"hydra.sweep.dir={tmp_path}", "model.n_hpb=1,2"])
    assert code == 1
    assert f"error: hydra.sweep.dir={tmp_path} is in use by another run (pid {os.getpid()}); " in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]


def test_a_run_from_another_runs_checkpoint_tests_its_own_weights(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """ckpt_path=<finished run>/checkpoints/last.ckpt into a new folder: nothing left to train, so no best
    of its own; the test uses the current weights, never the other run's best.ckpt."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = [*tiny_overrides(tiny_data, epochs=1, steps=2), "logger=none"]
    code, output = run_command(TRAIN, [f"hydra.run.dir={first}", *args, "test=false"])
    assert code == 0, output
    assert (first / "checkpoints" / "best.ckpt").is_file()
    code, output = run_command(
        TRAIN, [f"hydra.run.dir={second}", *args, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"]
    )
    assert code == 0, output
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["test_ckpt"] is None
    assert metrics["best_ckpt"] is None
    assert f"({first / 'checkpoints' / 'best.ckpt'}, restored from ckpt_path, is another run's)" in output
