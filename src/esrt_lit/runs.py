"""Run folders: never reused by accident, resumed with their own configuration, sweeps that report
their failed jobs.

* :class:`RunFolders` is a Hydra callback (``conf/hydra/default.yaml``). Before a run starts it refuses a
  run folder that already holds a run (``hydra.run.dir=<old run>`` would replace its checkpoints,
  metrics and configuration record) unless the run resumes it (``resume_dir``), and a ``resume_dir``
  that is not a run folder with a checkpoint; nothing is created or written then. Before a sweep it
  refuses a sweep folder that already holds jobs; after it, it lists the jobs that failed (their
  ``FAILED`` files, see :func:`esrt_lit.cli.run_task`) and exits non-zero
  (:func:`report_failed_jobs`, also called when a signal stops the sweep).
* A run, resumed run, sweep or sweep job holds its folder's ``.lock`` (an exclusive ``flock``, taken
  before the folder is checked, so two runs started at once into one folder cannot both pass the check)
  until it ends; another run into that folder is refused, naming the holder's process id. The operating
  system drops the lock with the process, so a killed run leaves no stale lock behind.
* :func:`resume_arguments` makes ``resume_dir=<run>`` take the run's own overrides (its latest
  ``.hydra/**/overrides.yaml``), the command line's winning, and :func:`config_changes` says what then
  differs from the run's recorded configuration. A resumed run records its configuration in
  ``.hydra/resume_<time>/``, so the folder's original record is never rewritten.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from esrt_lit.errors import Interrupted

__all__ = [
    "LOCK_FILE",
    "RESUME_KEY",
    "RunFolders",
    "config_changes",
    "find_run_config",
    "lock_folder",
    "report_failed_jobs",
    "resume_arguments",
]

log = logging.getLogger(__name__)

#: File written into a sweep job's folder when the job failed (its one-line error).
FAILED_MARKER = "FAILED"

RESUME_KEY = "resume_dir"
#: What makes a folder a run: the configuration record Hydra writes, or what the commands write.
RUN_MARKERS = (".hydra/config.yaml", "checkpoints", "metrics.json", "results.json")
#: Overrides that belong to one invocation, not to the run's configuration.
_INVOCATION_KEYS = ("resume_dir", "ckpt_path")
#: The file a running run holds locked in its folder (it records the holder's process id).
LOCK_FILE = ".lock"


def _is_child_process() -> bool:
    """A DDP or SLURM rank other than the first: it runs in the folder its first rank made."""
    return any(
        int(os.environ.get(v, "0") or 0) > 0 for v in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID")
    )


def _run_markers(folder: Path) -> list[str]:
    return [m for m in RUN_MARKERS if (folder / m).exists()]


def _fail(message: str) -> None:
    raise SystemExit(f"error: {message}")


def _flock(folder: Path, name: str) -> IO[str]:
    """``folder/.lock`` opened and locked exclusively (created with the folder when missing).

    Raises:
        SystemExit: one line naming the folder (``name``: the key that gave it and its value) and the
        process holding it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        _fail(f"{name} is in use by another run (pid {holder}); wait for it to end, or choose another folder")
    return handle


def lock_folder(folder: Path, name: str) -> IO[str]:
    """Hold ``folder/.lock`` for this process: until the returned file is closed, or the process ends.

    Args:
        folder: the run or sweep folder (created when missing).
        name: how the error line names it, e.g. ``hydra.run.dir=<folder>``.

    Raises:
        SystemExit: the folder is in use by another run (one line naming it and the holder's pid).
    """
    handle = _flock(folder, name)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _refuse_if_in_use(folder: Path, name: str) -> None:
    """Fail when a run holds ``folder``'s lock; nothing is written (a folder without a lock file is free)."""
    if (folder / LOCK_FILE).is_file():
        _flock(folder, name).close()


def check_resume_dir(value: Any) -> Path:
    """The run folder ``resume_dir`` names, which must hold ``checkpoints/last.ckpt``.

    Raises:
        SystemExit: one line naming the value and what was expected.
    """
    folder = Path(str(value)).expanduser()
    if not folder.is_dir():
        _fail(f"resume_dir={value}: no such folder; expected the folder of a run of esrt_lit.train")
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        found = ", ".join(_run_markers(folder)) or "nothing of a run"
        _fail(
            f"resume_dir={value}: no checkpoints/last.ckpt to resume from (the folder holds {found}); "
            "expected the folder of a run of esrt_lit.train that wrote a checkpoint"
        )
    return folder


def _check_run_dir(run_dir: Path) -> None:
    if markers := _run_markers(run_dir):
        _fail(
            f"hydra.run.dir={run_dir} already holds a run ({', '.join(markers)}), which this run would "
            "overwrite; choose a new folder"
            + (f", or continue that run with resume_dir={run_dir}" if "checkpoints" in markers else "")
        )


def _check_sweep_dir(sweep_dir: Path) -> None:
    if jobs := sorted(p.parent.parent.name for p in sweep_dir.glob("*/.hydra/config.yaml")):
        _fail(
            f"hydra.sweep.dir={sweep_dir} already holds the jobs of a sweep ({', '.join(jobs)}), which "
            "this sweep would overwrite; choose a new folder"
        )


def report_failed_jobs(sweep_dir: Path, interrupted: Interrupted | None = None) -> None:
    """End a sweep that had failed jobs: each one's ``error:`` line (its ``FAILED`` file), then a summary.

    Without failed jobs (and no ``interrupted``), nothing. A sweep stopped by a signal (``interrupted``,
    whose job is among the failed ones) exits with that signal's status, otherwise with 1.

    Raises:
        SystemExit: the summary line and the exit status.
    """
    failed = sorted(sweep_dir.rglob(FAILED_MARKER))
    if not failed and interrupted is None:
        return
    jobs = len(list(sweep_dir.rglob(".hydra/overrides.yaml")))
    lines = [f"{p.parent}: {p.read_text().strip()}" for p in failed]
    print("\n".join(f"error: {line}" for line in lines), file=sys.stderr)  # noqa: T201
    summary = f"{len(failed)} of {jobs} jobs of the sweep in {sweep_dir} failed"
    if interrupted is None:
        raise SystemExit(f"error: {summary}")
    print(f"error: {summary}; the sweep was interrupted, its other jobs did not run", file=sys.stderr)  # noqa: T201
    raise SystemExit(interrupted.exit_status)


class RunFolders(Callback):
    """Hydra callback guarding run and sweep folders (see the module docstring)."""

    def __init__(self) -> None:
        self._locks: dict[str, IO[str]] = {}  # "run", "sweep", "job": the lock files held

    def _release(self, what: str) -> None:
        if (handle := self._locks.pop(what, None)) is not None:
            handle.close()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_child_process():
            return
        resume = OmegaConf.select(config, RESUME_KEY, default=None)
        if resume is not None:
            _refuse_if_in_use(Path(str(resume)).expanduser(), f"{RESUME_KEY}={resume}")
            folder = check_resume_dir(resume)
            self._locks["run"] = lock_folder(folder, f"{RESUME_KEY}={resume}")
            return
        if OmegaConf.select(config, "ckpt_path", default=None) == "last":
            _fail("ckpt_path=last resumes a run in its own folder: give resume_dir=<run folder> instead")
        run_dir = Path(str(config.hydra.run.dir))
        if run_dir.exists() and not run_dir.is_dir():
            _fail(f"hydra.run.dir={run_dir} is a file; expected a folder for the run")
        if _run_markers(run_dir):  # refused without writing anything, unless a run is still using it
            _refuse_if_in_use(run_dir, f"hydra.run.dir={run_dir}")
            _check_run_dir(run_dir)
        self._locks["run"] = lock_folder(run_dir, f"hydra.run.dir={run_dir}")
        _check_run_dir(run_dir)  # again, under the lock: a run that ended since may have filled it

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release("run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            _refuse_if_in_use(sweep_dir, f"hydra.sweep.dir={sweep_dir}")
            _check_sweep_dir(sweep_dir)
        self._locks["sweep"] = lock_folder(sweep_dir, f"hydra.sweep.dir={sweep_dir}")
        _check_sweep_dir(sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # a job's folder, which resume_dir may name
            job_dir = Path(str(config.hydra.runtime.output_dir))
            self._locks["job"] = lock_folder(job_dir, f"the sweep's job folder {job_dir}")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self._release("job")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release("sweep")
        report_failed_jobs(Path(str(config.hydra.sweep.dir)))


def find_run_config(run_dir: Path, name: str, exclude: Path | None = None) -> Path | None:
    """The run's latest ``.hydra`` record ``name`` (a resume's ``.hydra/resume_<time>/`` over the original),
    other than the one in ``exclude`` (the running resume's own record)."""
    resumes = [
        p
        for p in sorted((run_dir / ".hydra").glob(f"resume_*/{name}"))
        if exclude is None or p.parent.resolve() != exclude.resolve()
    ]
    latest = resumes[-1] if resumes else run_dir / ".hydra" / name
    return latest if latest.is_file() else None


#: Keys that make Hydra import and call what they name; never taken from a recorded run.
_INSTANTIATION_KEYS = ("_target_", "_partial_", "_args_", "_call_", "_convert_", "_recursive_")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` with the resumed run's own overrides put before the command line's.

    With ``resume_dir=<run>`` among the arguments, the overrides recorded for that run (except
    ``hydra.*``, ``resume_dir`` and ``ckpt_path``) come first, so that the run continues with its own
    configuration; an override of the same key on the command line wins. Without it, ``argv`` as is.

    Raises:
        ValueError: a recorded override names a Hydra instantiation key (``_target_`` ...), naming the file.
    """
    args = list(argv)
    resume = next((a.split("=", 1)[1] for a in args[1:] if _key(a) == RESUME_KEY and "=" in a), None)
    if resume is None:
        return args
    record = find_run_config(Path(resume).expanduser(), "overrides.yaml")
    if record is None:
        return args  # not a run folder: RunFolders says so before anything starts
    given = {_key(a) for a in args[1:] if "=" in a and not a.startswith("-")}
    recorded = [str(o) for o in OmegaConf.load(record)]
    for override in recorded:  # a run folder's record is data: it selects configs and sets values only
        if any(word in override for word in _INSTANTIATION_KEYS):
            raise ValueError(
                f"{record}: the recorded override {override!r} names a Hydra instantiation key "
                f"({', '.join(_INSTANTIATION_KEYS)}), which a resume does not take from a file; give it on "
                "the command line if you mean it"
            )
    saved = [
        o
        for o in recorded
        if (key := _key(o)) not in given and key not in _INVOCATION_KEYS and not key.startswith("hydra.")
    ]
    return [args[0], *saved, *args[1:]]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every value of ``current`` that differs from the run's ``recorded`` one
    (paths and per-invocation keys aside)."""
    old, new = _flatten(recorded), _flatten(current)
    skip = ("paths.", "hydra.", *_INVOCATION_KEYS)
    return [
        f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
        for k in sorted(set(old) | set(new))
        if not k.startswith(skip) and old.get(k) != new.get(k)
    ]
