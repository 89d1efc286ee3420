"""Run-level plumbing shared by the CLIs: one-line errors, the Hydra task runner, extras, the objective.

Every command ends a failure the same way: one line on stderr, ``error: <what, naming the file, key
or value, and what was expected>``, exit status 1, no traceback. ``ESRT_DEBUG=1`` (or Hydra's
``HYDRA_FULL_ERROR=1``) raises the exception instead, traceback included; a Hydra run also keeps the
traceback in its log file (``<run folder>/<task>.log``). In a Hydra sweep a failing job is recorded
(``<job folder>/FAILED``, one line) and the sweep goes on; :class:`~esrt_lit.utils.runs.RunFolders`
reports the failed jobs at the end and exits non-zero. A run stopped by a signal (:class:`Interrupted`)
exits with ``128 + the signal's number`` (130 for SIGINT, 143 for SIGTERM); in a sweep it is recorded as
a failed job too, and the sweep stops there with its failed jobs listed.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from esrt_lit.errors import ConfigError, Interrupted, NonFiniteLossError
from esrt_lit.files import atomic_output
from esrt_lit.utils.runs import FAILED_MARKER, report_failed_jobs

__all__ = [
    "describe_error",
    "exit_with_error",
    "extras",
    "finish_wandb",
    "network_spec",
    "objective",
    "report_error",
    "run_task",
    "show_tracebacks",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: File written into a sweep job's folder when the job failed (its one-line error).
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
    jobs listed (:func:`esrt_lit.utils.runs.report_failed_jobs`), since the signal was meant for the sweep.
    The libraries' noise the user cannot act on is silenced (:func:`esrt_lit.utils.console.quiet_library_noise`).
    """
    from esrt_lit.utils.console import quiet_library_noise

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


def network_spec(cfg: DictConfig, scale: int | None = None, shipped: bool = False) -> tuple[Any, int | None]:
    """What ``eval`` and ``upscale`` run: ``(network, its scale)`` for ``ckpt_path`` (any checkpoint the
    one loader reads, shipped weights included; its scale must be ``scale`` when given), or
    ``("bicubic", scale)`` for ``model=bicubic``. With neither, ``shipped`` takes the shipped weights of
    ``scale`` (4 by default).

    Raises:
        ConfigError: both given, neither (without ``shipped``), or a ``scale`` with no shipped weights.
        FileNotFoundError, ValueError: the loader's, naming the file.
    """
    from esrt_lit.models.bicubic import is_bicubic

    bicubic = is_bicubic(cfg.get("model"))
    ckpt = cfg.get("ckpt_path")
    if ckpt:
        if bicubic:
            raise ConfigError(f"ckpt_path={ckpt} and model=bicubic: give one of them")
        from esrt_lit.models.loading import load_network

        try:
            net = load_network(ckpt, scale=scale)
        except (FileNotFoundError, ValueError) as err:  # the loader names the file; this names the key too
            raise type(err)(f"ckpt_path={ckpt}: {str(err).removeprefix(f'{ckpt}: ')}") from None
        return net, int(net.scale)
    if bicubic:
        return "bicubic", scale
    if shipped:
        from esrt_lit.models.loading import load_network
        from esrt_lit.models.pretrained import PRETRAINED

        scale = scale or 4
        if f"x{scale}" not in PRETRAINED:
            raise ConfigError(
                f"scale={scale}: no weights ship for x{scale} (shipped: {', '.join(PRETRAINED)}); give "
                f"ckpt_path=<an x{scale} checkpoint> (train one: python -m esrt_lit.train "
                f"experiment=pretrained_x{scale}) or model=bicubic"
            )
        net = load_network(f"pretrained:x{scale}")
        return net, int(net.scale)
    raise ConfigError(
        "nothing to run: give ckpt_path=<checkpoint> (a .ckpt of esrt_lit.train, released ESRT weights or a "
        "state dict) or model=bicubic"
    )


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
