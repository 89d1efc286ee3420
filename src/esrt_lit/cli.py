"""The commands' runner: every ``python -m esrt_lit.<name>`` ends the same way.

Hydra commands (train, eval, upscale) run their task through :func:`run_task` after
:func:`hydra_argv`; the others (report, bench, demo, export, data.prepare, data.throughput) parse their
arguments, then run their work through :func:`run_command`. What the console shows is filtered here too (:class:`RankZeroFilter`,
:func:`quiet_library_noise`).

Every command ends a failure the same way: one line on stderr, ``error: <what, naming the file, key
or value, and what was expected>``, exit status 1, no traceback. ``ESRT_DEBUG=1`` (or Hydra's
``HYDRA_FULL_ERROR=1``) raises the exception instead, traceback included; a Hydra run also keeps the
traceback in its log file (``<run folder>/<task>.log``). In a Hydra sweep a failing job is recorded
(``<job folder>/FAILED``, one line) and the sweep goes on; :class:`~esrt_lit.runs.RunFolders`
reports the failed jobs at the end and exits non-zero. A run stopped by a signal (:class:`Interrupted`)
exits with ``128 + the signal's number`` (130 for SIGINT, 143 for SIGTERM); in a sweep it is recorded as
a failed job too, and the sweep stops there with its failed jobs listed.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from esrt_lit.errors import ConfigError, Interrupted, NonFiniteLossError
from esrt_lit.files import atomic_output
from esrt_lit.runs import FAILED_MARKER, report_failed_jobs

__all__ = [
    "RankZeroFilter",
    "describe_error",
    "exit_with_error",
    "extras",
    "finish_wandb",
    "hydra_argv",
    "objective",
    "process_rank",
    "quiet_library_noise",
    "quote_non_ascii",
    "report_error",
    "run_command",
    "run_task",
    "show_tracebacks",
]

log = logging.getLogger(__name__)

#: A quoted text of an override (Hydra reads any character there).
_QUOTED = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")
#: Characters of an override value that make it more than one plain text (lists, sweeps, escapes).
_STRUCTURE = re.compile(r"[\[\]{}(),'\"\\]|\$\{")

T = TypeVar("T")

#: Environment variables that make a failure raise with its traceback.
DEBUG_VARIABLES = ("ESRT_DEBUG", "HYDRA_FULL_ERROR")


def show_tracebacks() -> bool:
    """Whether failures raise with their traceback (``ESRT_DEBUG=1`` or ``HYDRA_FULL_ERROR=1``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in DEBUG_VARIABLES)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user as it is (they name the culprit)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return (
        ValueError,
        OSError,
        pickle.UnpicklingError,
        OmegaConfBaseException,
        MisconfigurationException,
        NonFiniteLossError,
        Interrupted,
    )


def _out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return (
        type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text
    )


def describe_error(err: BaseException) -> str:
    """One line for ``err``: its message for the errors meant for users, its type and message otherwise."""
    text = str(err) or type(err).__name__
    if isinstance(err, MemoryError) or _out_of_memory(err):
        first = text.strip().splitlines()[0] if text.strip() else "MemoryError"
        text = (
            f"out of memory ({first}); use a smaller batch (data.batch_size), LR patch (data.patch_size) "
            "or tile (tile=...)"
        )
    elif not isinstance(err, _user_errors()):
        text = f"{type(err).__name__}: {text} (unexpected; ESRT_DEBUG=1 shows the traceback)"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _log_traceback(err: BaseException) -> None:
    """Write the traceback to the log files the root logger writes to (Hydra's run log), not the console."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if not handlers:
        return
    record = logging.LogRecord(
        __name__,
        logging.ERROR,
        __file__,
        0,
        "failed with a traceback:\n%s",
        ("".join(traceback.format_exception(err)),),
        None,
    )
    for handler in handlers:
        handler.handle(record)


def report_error(err: BaseException) -> int:
    """Print ``error: <one line>`` on stderr and return the exit status: 1, or ``128 + signal`` for
    :class:`Interrupted` (re-raise when debugging)."""
    if show_tracebacks():
        raise err
    _log_traceback(err)
    print(f"error: {describe_error(err)}", file=sys.stderr)  # noqa: T201 - the CLI's error line
    return err.exit_status if isinstance(err, Interrupted) else 1


def exit_with_error(err: BaseException) -> NoReturn:
    """End the command with :func:`report_error`'s line and status."""
    raise SystemExit(report_error(err)) from None


def run_command(work: Callable[[], int | None], log_format: str | None = "%(message)s") -> int:
    """Run a command's ``work`` once its arguments are parsed; returns the exit status: ``work``'s (0 for
    None), or :func:`report_error`'s for any failure. ``log_format``: the console's INFO log lines (None
    leaves logging as it is)."""
    if log_format is not None:
        logging.basicConfig(level=logging.INFO, format=log_format)
    try:
        return work() or 0
    except Exception as err:  # every failure ends as one line
        return report_error(err)


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the active W&B run, if any, so its files are complete (offline) or uploaded (online)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.info("finishing the W&B run (%s)", wandb.run.dir)
        wandb.finish(exit_code=exit_code)


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T | None:
    """Run a Hydra task: ``task(cfg)``, W&B always finished, every failure one line.

    A failing single run exits with :func:`exit_with_error`. A failing sweep job writes its line to
    ``<job folder>/FAILED``, logs it and returns None, so that the sweep goes on (an Optuna sweep counts
    the trial as failed); an :class:`Interrupted` job writes it too, then ends the sweep with its failed
    jobs listed (:func:`esrt_lit.runs.report_failed_jobs`), since the signal was meant for the sweep.
    The libraries' noise the user cannot act on is silenced (:func:`esrt_lit.cli.quiet_library_noise`).
    """
    quiet_library_noise()
    extras(cfg)
    try:
        result = task(cfg)
    except Exception as err:
        finish_wandb(1)
        output_dir = cfg.get("paths", {}).get("output_dir")
        if not _in_sweep() or show_tracebacks():
            exit_with_error(err)
        _log_traceback(err)
        line = describe_error(err)
        if output_dir:
            with atomic_output(Path(output_dir, FAILED_MARKER)) as tmp:
                tmp.write_text(line + "\n")
        log.error("job failed: %s", line)
        if isinstance(err, Interrupted):
            from hydra.core.hydra_config import HydraConfig

            report_failed_jobs(Path(str(HydraConfig.get().sweep.dir)), interrupted=err)
        return None
    finish_wandb(0)
    return result


def _print_config(cfg: DictConfig) -> None:
    """The resolved config (rich YAML); in a sweep, whose jobs may run side by side, the job's overrides
    only (its full config is in ``<job folder>/.hydra/config.yaml``)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:  # DDP children stay quiet
        return
    if _in_sweep():
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        log.info("job %s: %s", hydra_cfg.job.num, " ".join(hydra_cfg.overrides.task) or "(no overrides)")
        return
    from omegaconf import OmegaConf
    from rich import print as rich_print
    from rich.syntax import Syntax

    rich_print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


def extras(cfg: DictConfig) -> None:
    """Optional conveniences of ``cfg.extras``: silence Python warnings, print the resolved config."""
    options = cfg.get("extras") or {}
    if options.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if options.get("print_config"):
        _print_config(cfg)


def objective(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of ``name`` (``optimized_metric``, what a sweeper maximises) in ``metrics``, or None.

    A run that logged no such value (it ended before its first validation, say) has no objective: it
    says so, and in an Optuna sweep its trial counts as failed.
    """
    if not name:
        return None
    if name not in metrics or metrics[name] is None:
        log.warning(
            "no objective: optimized_metric=%r was not logged (no validation ran?); logged: %s",
            name,
            ", ".join(sorted(k for k in metrics if k.startswith("val/"))) or "no validation score",
        )
        return None
    value = metrics[name]
    return float(value.item() if hasattr(value, "item") else value)


def quote_non_ascii(args: Sequence[str]) -> list[str]:
    """``args`` (a command line without the program) with each ``key=value`` whose value holds non-ASCII
    characters outside quotes quoted (``input=фото.png`` → ``input='фото.png'``), which Hydra's override
    parser reads only inside quotes; a value with structure (a list, a sweep, quotes, escapes) cannot be
    quoted as a whole: the command ends with one line saying how to quote it."""
    quoted = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if _QUOTED.sub("", arg).isascii() or arg.startswith("-"):
            quoted.append(arg)
        elif sep and key.isascii() and not _STRUCTURE.search(value):
            quoted.append(f"{key}='{value}'")
        else:
            exit_with_error(
                ConfigError(
                    f"{arg}: Hydra's override syntax reads non-ASCII characters only inside quotes and in "
                    "values, never in keys; quote each text that has them, e.g. 'input=\"фото.png\"' or "
                    "'data.train=[{kind:folder,path:\"/data/фото\"}]' (the outer quotes are for the shell)"
                )
            )
    return quoted


def hydra_argv(prepare: Callable[[list[str]], list[str]] | None = None) -> None:
    """Make ``sys.argv`` ready for ``hydra.main``: non-ASCII values quoted (:func:`quote_non_ascii`), then
    ``prepare`` (train's ``resume_dir``, :func:`esrt_lit.runs.resume_arguments`); a refused command line
    ends the command with one line."""
    try:
        argv = [sys.argv[0], *quote_non_ascii(sys.argv[1:])]
        sys.argv = prepare(argv) if prepare is not None else argv
    except ValueError as err:
        exit_with_error(err)


#: Lightning's info lines that say nothing about the run: a product tip, and the model summary callback
#: the config chose (``callbacks.model_summary``) reported as a skipped default.
LIGHTNING_NOISE = (
    "💡 Tip: For seamless cloud",
    "Trainer already configured with model summary callbacks",
)
#: The logger Lightning's ``rank_zero_info`` lines go through.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def process_rank() -> int:
    """This process's global rank: Lightning's ``rank_zero_only.rank`` once Lightning set it (DDP, spawned
    processes included), else the launcher's ``RANK``/``LOCAL_RANK`` variables, else 0."""
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    rank = getattr(getattr(module, "rank_zero_only", None), "rank", None)
    if rank is None:
        rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))
    return int(rank)


class RankZeroFilter(logging.Filter):
    """A console handler's filter: processes other than the first (DDP ranks > 0) show only warnings and
    errors, so that each info line appears once; their log file keeps everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` on rank 0, or when it is a warning or worse."""
        return record.levelno >= logging.WARNING or process_rank() == 0


class _DropMessages(logging.Filter):
    """Drop the records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_library_noise() -> None:
    """Silence, narrowly, what the libraries print on every run that the user cannot act on.

    * PyTorch's FutureWarning about ``LeafSpec``, raised by Lightning's own ``_pytree`` helper (its fix
      is Lightning's), only from that module;
    * Lightning's :data:`LIGHTNING_NOISE` info lines, by their first words;
    * under DDP, the info lines of processes other than the first on Lightning's own console handlers
      (:class:`RankZeroFilter`, as on Hydra's).

    Idempotent; W&B's ``anonymous`` warning is avoided at its source instead
    (:class:`esrt_lit.training.loggers.WandbLogger`).
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(_DropMessages(LIGHTNING_NOISE))
    for name in ("lightning.fabric", "lightning.pytorch"):  # their handlers exist once Lightning is imported
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RankZeroFilter) for f in handler.filters):
                handler.addFilter(RankZeroFilter())
